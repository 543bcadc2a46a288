"""``txn.acquire_claim``: the engine's mutexes and deferred choices, as rows of ``stage_claims``.

What this file proves, on every dialect:

- the first claimant wins, its stage asking again wins again, another stage loses;
- with ``steal_if_owner_terminal`` the claim passes to the claimant exactly when its holder
  stage is complete (``WorkflowStatus.is_complete``) or gone, and never without it; the holder's
  status written earlier in the same block counts;
- of N stages racing for one free claim, and of N stealers of one complete holder's claim,
  exactly one wins, and the row names it;
- a claim commits or rolls back with its block (and with a caller's Session), and deleting the
  workflow deletes its claims;
- a value that cannot be stored is refused by its name before anything runs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stabilize.errors import TransientError, ValidationError
from stabilize.models import StageExecution, Workflow, WorkflowStatus
from stabilize.models.ids import new_id
from stabilize.persistence.sql.rows import StageClaimRow
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.persistence.store.interface import WorkflowNotFoundError
from tests.integration.builders import chain, snapshot
from tests.integration.racing import RACING, race, racers, unexpected, warm

RACERS = 6
KEY = "mutex:deploy"


class ClaimTaken(Exception):
    """What the engine raises in the block when another stage holds the claim."""


@pytest.fixture
def stored(store: SqlWorkflowStore) -> Workflow:
    """A workflow of RACERS + 1 stages: a holder and as many rivals."""
    workflow = chain(RACERS + 1, 1)
    store.store(workflow)
    return store.retrieve(workflow.id)


@pytest.fixture
def stores(url: str) -> Iterator[list[SqlWorkflowStore]]:
    """A store each for the racing threads, as processes have (``racing.racers``)."""
    with racers(url, RACERS) as made:
        yield made


def holder_of(store: SqlWorkflowStore, workflow_id: str, key: str = KEY) -> str | None:
    statement = select(StageClaimRow.stage_id).where(
        StageClaimRow.workflow_id == workflow_id, StageClaimRow.claim_key == key
    )
    with store.engine.connect() as connection:
        return connection.execute(statement).scalar()


def claims_of(store: SqlWorkflowStore, workflow_id: str) -> int:
    statement = (
        select(func.count()).select_from(StageClaimRow).where(StageClaimRow.workflow_id == workflow_id)
    )
    with store.engine.connect() as connection:
        return int(connection.execute(statement).scalar_one())


def claim(
    store: SqlWorkflowStore, workflow_id: str, stage_id: str, steal: bool = False, key: str = KEY
) -> bool:
    with store.transaction() as txn:
        return txn.acquire_claim(workflow_id, key, stage_id, steal_if_owner_terminal=steal)


def set_status(store: SqlWorkflowStore, stage: StageExecution, status: WorkflowStatus) -> None:
    stage.status = status
    store.store_stage(stage)


def test_the_first_claimant_wins_and_keeps_it(store: SqlWorkflowStore, stored: Workflow) -> None:
    first, second = stored.stages[0].id, stored.stages[1].id
    assert claim(store, stored.id, first) is True
    assert claim(store, stored.id, first) is True  # the holder again: re-entrant
    assert claim(store, stored.id, second) is False
    assert claim(store, stored.id, second, steal=True) is False  # its holder is not complete
    assert holder_of(store, stored.id) == first
    # Another key of the same workflow is another claim.
    assert claim(store, stored.id, second, key="choice:group") is True
    assert holder_of(store, stored.id, "choice:group") == second
    assert claims_of(store, stored.id) == 2


def test_one_block_sees_its_own_claim(store: SqlWorkflowStore, stored: Workflow) -> None:
    first, second = stored.stages[0].id, stored.stages[1].id
    with store.transaction() as txn:
        assert txn.acquire_claim(stored.id, KEY, first) is True
        assert txn.acquire_claim(stored.id, KEY, first) is True
        assert txn.acquire_claim(stored.id, KEY, second) is False
    assert holder_of(store, stored.id) == first


def test_a_steal_takes_the_claim_exactly_when_the_holder_is_complete(
    store: SqlWorkflowStore, stored: Workflow
) -> None:
    holder, thief = stored.stages[0], stored.stages[1]
    for status in WorkflowStatus:
        key = f"mutex:{status.name}"
        assert claim(store, stored.id, holder.id, key=key) is True
        set_status(store, holder, status)
        assert claim(store, stored.id, thief.id, key=key) is False, status  # never without steal
        assert holder_of(store, stored.id, key) == holder.id
        assert claim(store, stored.id, thief.id, steal=True, key=key) is status.is_complete, status
        assert holder_of(store, stored.id, key) == (thief.id if status.is_complete else holder.id)
        # The holder asking with steal keeps what it holds.
        assert claim(store, stored.id, holder.id, steal=True, key=key) is not status.is_complete, status


def test_a_steal_takes_a_claim_whose_holder_stage_is_gone(store: SqlWorkflowStore, stored: Workflow) -> None:
    thief = stored.stages[1].id
    assert claim(store, stored.id, "a-stage-that-is-not-stored") is True
    assert claim(store, stored.id, thief) is False
    assert holder_of(store, stored.id) == "a-stage-that-is-not-stored"
    assert claim(store, stored.id, thief, steal=True) is True
    assert holder_of(store, stored.id) == thief


def test_a_steal_sees_the_holders_status_written_earlier_in_the_block(
    store: SqlWorkflowStore, stored: Workflow
) -> None:
    holder, thief = stored.stages[0], stored.stages[1]
    assert claim(store, stored.id, holder.id) is True
    with store.transaction() as txn:
        holder.status = WorkflowStatus.SUCCEEDED
        txn.store_stage(holder)
        assert txn.acquire_claim(stored.id, KEY, thief.id, steal_if_owner_terminal=True) is True
    assert holder_of(store, stored.id) == thief.id
    assert holder.version == 1
    assert store.retrieve_stage(holder.id).status == WorkflowStatus.SUCCEEDED


def test_a_claim_rolls_back_with_its_block(store: SqlWorkflowStore, stored: Workflow) -> None:
    first, second = stored.stages[0], stored.stages[1]
    before = snapshot(store.engine)
    with pytest.raises(RuntimeError, match="step failed"), store.transaction() as txn:
        first.status = WorkflowStatus.RUNNING
        txn.store_stage(first)
        assert txn.acquire_claim(stored.id, KEY, first.id)
        raise RuntimeError("step failed")
    assert snapshot(store.engine) == before
    assert first.version == 0
    # Free again: the next claimant wins.
    assert claim(store, stored.id, second.id) is True
    assert holder_of(store, stored.id) == second.id


def test_a_lost_claim_rolls_back_the_whole_step(store: SqlWorkflowStore, stored: Workflow) -> None:
    """The engine's ``if not txn.acquire_claim(...): raise`` leaves nothing of the step."""
    first, second = stored.stages[0], stored.stages[1]
    assert claim(store, stored.id, first.id)
    before = snapshot(store.engine)
    with pytest.raises(ClaimTaken), store.transaction() as txn:
        second.status = WorkflowStatus.RUNNING
        txn.store_stage(second)
        stored.status = WorkflowStatus.RUNNING
        txn.update_workflow_status(stored)
        if not txn.acquire_claim(stored.id, KEY, second.id):
            raise ClaimTaken(KEY)
    assert snapshot(store.engine) == before
    assert second.version == 0


def test_a_claim_of_an_unknown_workflow_is_workflow_not_found_and_writes_nothing(
    store: SqlWorkflowStore, stored: Workflow
) -> None:
    before = snapshot(store.engine)
    with pytest.raises(WorkflowNotFoundError), store.transaction() as txn:
        txn.acquire_claim(new_id(), KEY, stored.stages[0].id)
    assert snapshot(store.engine) == before


def test_deleting_the_workflow_deletes_its_claims(store: SqlWorkflowStore, stored: Workflow) -> None:
    other = chain(1, 1)
    store.store(other)
    assert claim(store, stored.id, stored.stages[0].id)
    assert claim(store, stored.id, stored.stages[1].id, key="choice:a")
    assert claim(store, other.id, other.stages[0].id)
    store.delete(stored.id)
    assert claims_of(store, stored.id) == 0
    assert claims_of(store, other.id) == 1
    assert holder_of(store, other.id) == other.stages[0].id


def test_claims_in_a_callers_session_commit_or_roll_back_with_it(
    store: SqlWorkflowStore, stored: Workflow
) -> None:
    first, second = stored.stages[0].id, stored.stages[1].id
    with pytest.raises(RuntimeError), Session(store.engine) as session, session.begin():
        with store.transaction(session=session) as txn:
            assert txn.acquire_claim(stored.id, KEY, first)
        raise RuntimeError("application failed")
    assert claims_of(store, stored.id) == 0

    with Session(store.engine) as session, session.begin():
        with store.transaction(session=session) as txn:
            assert txn.acquire_claim(stored.id, KEY, second)
        with store.transaction(session=session) as txn:  # the caller's transaction sees it
            assert txn.acquire_claim(stored.id, KEY, first) is False
    assert holder_of(store, stored.id) == second


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("claim_key", "k" * 300, "claim.claim_key"),
        ("claim_key", 7, "claim.claim_key"),
        ("stage_id", "s" * 300, "claim.stage_id"),
        ("stage_id", None, "claim.stage_id"),
        ("workflow_id", "w" * 300, "claim.workflow_id"),
    ],
)
def test_a_bad_claim_is_refused_by_name_before_anything_runs(
    store: SqlWorkflowStore, stored: Workflow, field: str, value: object, path: str
) -> None:
    args: dict[str, object] = {"execution_id": stored.id, "claim_key": KEY, "stage_id": stored.stages[0].id}
    args["execution_id" if field == "workflow_id" else field] = value
    before = snapshot(store.engine)
    with store.transaction() as txn:
        with pytest.raises(ValidationError, match=rf"^{path}: ") as refused:
            txn.acquire_claim(**args)  # type: ignore[arg-type]
        assert refused.value.path == path
        assert not txn.open  # refused before the transaction began
    assert snapshot(store.engine) == before


# -- races ---------------------------------------------------------------------------------------


def won(outcomes: list[tuple[bool | None, BaseException | None]]) -> list[int]:
    return [i for i, (value, error) in enumerate(outcomes) if error is None and value is True]


@RACING
def test_of_stages_racing_for_a_free_claim_exactly_one_wins(
    dialect: str, stored: Workflow, stores: list[SqlWorkflowStore]
) -> None:
    """A lost race (``TransientError``, a deadlock) counts as not winning."""
    rivals = [stage.id for stage in stored.stages[:RACERS]]

    def take(index: int, barrier: threading.Barrier) -> bool:
        with stores[index].transaction() as txn:
            warm(txn, dialect)
            barrier.wait()
            return txn.acquire_claim(stored.id, KEY, rivals[index])

    outcomes = race(RACERS, take)
    assert unexpected(outcomes) == []
    winners = won([(o.value, o.error) for o in outcomes])
    assert len(winners) == 1, [(o.value, o.error) for o in outcomes]
    assert all(o.value is False for i, o in enumerate(outcomes) if i not in winners and o.error is None)
    assert holder_of(stores[0], stored.id) == rivals[winners[0]]
    assert claims_of(stores[0], stored.id) == 1


@RACING
def test_of_stealers_of_a_complete_holders_claim_exactly_one_wins(
    url: str, dialect: str, stored: Workflow, stores: list[SqlWorkflowStore]
) -> None:
    """The stealers' own stages are RUNNING: once one holds the claim, the others find a live
    holder and lose."""
    setup = SqlWorkflowStore(url)
    holder, stealers = stored.stages[0], stored.stages[1:]
    for stage in stealers:
        set_status(setup, stage, WorkflowStatus.RUNNING)
    assert claim(setup, stored.id, holder.id)
    set_status(setup, holder, WorkflowStatus.SUCCEEDED)

    def steal(index: int, barrier: threading.Barrier) -> bool:
        with stores[index].transaction() as txn:
            warm(txn, dialect)
            barrier.wait()
            return txn.acquire_claim(stored.id, KEY, stealers[index].id, steal_if_owner_terminal=True)

    outcomes = race(RACERS, steal)
    assert unexpected(outcomes) == []
    winners = won([(o.value, o.error) for o in outcomes])
    assert len(winners) == 1, [(o.value, o.error) for o in outcomes]
    assert holder_of(setup, stored.id) == stealers[winners[0]].id


@RACING
def test_racing_claimants_that_lose_a_race_may_run_their_block_again(
    dialect: str, stored: Workflow, stores: list[SqlWorkflowStore]
) -> None:
    """As the engine does on ``TransientError``: in the end exactly one stage holds the claim,
    and every other one was told so."""
    rivals = [stage.id for stage in stored.stages[:RACERS]]

    def take(index: int, barrier: threading.Barrier) -> bool:
        for attempt in range(20):
            try:
                with stores[index].transaction() as txn:
                    if attempt == 0:
                        warm(txn, dialect)
                        barrier.wait()
                    return txn.acquire_claim(stored.id, KEY, rivals[index])
            except TransientError:
                continue
        raise AssertionError("a claimant kept losing races")

    outcomes = race(RACERS, take)
    assert [o.error for o in outcomes] == [None] * RACERS
    assert sorted(o.value for o in outcomes if o.value is not None) == [False] * (RACERS - 1) + [True]
    winner = next(i for i, o in enumerate(outcomes) if o.value)
    assert holder_of(stores[0], stored.id) == rivals[winner]
