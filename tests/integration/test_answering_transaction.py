"""A store transaction whose calls answer while its block runs (``SqlStoreTransaction``).

``mark_message_processed``, ``lock_admission``, ``workflow_status``, ``count_running`` and
``buffered_ids`` (and ``acquire_claim``, in ``test_stage_claims``) begin the database transaction
at once, held until the block ends; everything else stays buffered until then. What this file
proves, on every dialect:

- a processed mark answers True once and False for every later delivery, and the engine's
  ``if not txn.mark_message_processed(...): raise DuplicateDeliveryError`` rolls the whole block
  back (stage writes, pushed messages, workflow status); ``mark_processed_at_commit`` stays
  buffered, without an answer;
- of N threads marking one message id together, exactly one is told True;
- the reads see the block's own earlier writes, and only RUNNING counts as running;
- ``lock_admission``: K threads each admitting one of K BUFFERED workflows with a limit of 1
  never admit more than one;
- an exception after an answering call, or a failed compare-and-set, leaves the database and
  the in-memory versions as they were, the mark included;
- ``set_config_version`` writes at commit and refuses a bad value by name, writing nothing;
- in a caller's Session, the answering calls run in its transaction (a SAVEPOINT) and commit or
  disappear with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.orm import Session

from stabilize.errors import ConcurrencyError, LockTimeoutError, TransientError, ValidationError
from stabilize.models import StageExecution, Workflow, WorkflowStatus
from stabilize.models.ids import new_id
from stabilize.persistence.sql.dialects.sqlite import is_memory
from stabilize.persistence.sql.engine import normalize_url
from stabilize.persistence.sql.rows import AdmissionLockRow, ProcessedMessageRow, WorkflowRow
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.persistence.store.interface import WorkflowNotFoundError
from stabilize.queue import SqlQueue, StartStage
from tests.integration.builders import chain, snapshot, stage_row_version, task_row_versions
from tests.integration.racing import RACING, race, racers, unexpected, warm

RACERS = 6
#: Races of admission, each on a config of its own: more chances for a broken lock to show.
ROUNDS = 3


class DuplicateDeliveryError(Exception):
    """What the engine raises in the block when a delivery's mark existed already."""


@dataclass
class Step:
    """A stored workflow, the first stage as a step would move it, and the step's message."""

    workflow: Workflow
    stage: StageExecution
    message_id: str

    def move(self) -> None:
        """Change the stage and its first task in memory, as a handler does."""
        self.stage.status = WorkflowStatus.RUNNING
        self.stage.context["moved"] = True
        self.stage.tasks[0].status = WorkflowStatus.RUNNING


@pytest.fixture
def step(store: SqlWorkflowStore) -> Step:
    workflow = chain(2, 2)
    store.store(workflow)
    return Step(store.retrieve(workflow.id), store.retrieve_stage(workflow.stages[0].id), new_id())


@pytest.fixture
def queue(url: str) -> SqlQueue:
    return SqlQueue(url)


@pytest.fixture
def stores(url: str) -> Iterator[list[SqlWorkflowStore]]:
    """A store each for the racing threads, as processes have (``racing.racers``)."""
    with racers(url, RACERS) as made:
        yield made


def mark_row(store: SqlWorkflowStore, message_id: str) -> tuple[str | None, str | None] | None:
    statement = select(ProcessedMessageRow.handler_type, ProcessedMessageRow.execution_id).where(
        ProcessedMessageRow.message_id == message_id
    )
    with store.engine.connect() as connection:
        row = connection.execute(statement).first()
    return None if row is None else (row[0], row[1])


def statuses(store: SqlWorkflowStore, config: str) -> dict[str, str]:
    statement = select(WorkflowRow.id, WorkflowRow.status).where(WorkflowRow.pipeline_config_id == config)
    with store.engine.connect() as connection:
        return {row[0]: row[1].name for row in connection.execute(statement)}


def config_workflow(config: str, status: WorkflowStatus) -> Workflow:
    made = chain(1, 1)
    made.pipeline_config_id = config
    made.status = status
    return made


def assert_step_not_written(store: SqlWorkflowStore, queue: SqlQueue, step: Step) -> None:
    """Neither the stage write nor the message, and no version moved in memory."""
    assert stage_row_version(store.engine, step.stage.id) == 0
    assert set(task_row_versions(store.engine, step.stage.id).values()) == {0}
    assert store.retrieve_stage(step.stage.id).status == WorkflowStatus.NOT_STARTED
    assert queue.size() == 0
    assert step.stage.version == 0
    assert [t.version for t in step.stage.tasks] == [0, 0]


# -- mark_message_processed ------------------------------------------------------------------


def test_a_mark_answers_true_once_and_false_for_every_later_delivery(store: SqlWorkflowStore) -> None:
    message_id = new_id()
    with store.transaction() as txn:
        assert txn.mark_message_processed(message_id, "StartStage", "wf-1") is True
        # The block's own mark is there already: asked again, it existed.
        assert txn.mark_message_processed(message_id, "StartStage", "wf-1") is False
    assert store.is_message_processed(message_id)
    assert mark_row(store, message_id) == ("StartStage", "wf-1")

    with store.transaction() as txn:
        assert txn.mark_message_processed(message_id, "Other", "wf-2") is False
    assert mark_row(store, message_id) == ("StartStage", "wf-1")  # the first mark stays as it was
    # A mark made outside a transaction is one too.
    other = new_id()
    store.mark_message_processed(other)
    with store.transaction() as txn:
        assert txn.mark_message_processed(other) is False


def test_a_duplicate_delivery_rolls_back_the_whole_block(
    store: SqlWorkflowStore, queue: SqlQueue, step: Step
) -> None:
    store.mark_message_processed(step.message_id, "StartStage", step.workflow.id)
    before = snapshot(store.engine)

    with pytest.raises(DuplicateDeliveryError), store.transaction(queue) as txn:
        step.move()
        txn.store_stage(step.stage)
        txn.push_message(StartStage(execution_id=step.workflow.id, stage_id=step.stage.id))
        step.workflow.status = WorkflowStatus.RUNNING
        txn.update_workflow_status(step.workflow)
        if not txn.mark_message_processed(step.message_id, "StartStage", step.workflow.id):
            raise DuplicateDeliveryError(step.message_id)

    assert snapshot(store.engine) == before
    assert_step_not_written(store, queue, step)
    assert store.retrieve(step.workflow.id).status == WorkflowStatus.NOT_STARTED


def test_a_first_delivery_commits_the_block_with_its_mark(
    store: SqlWorkflowStore, queue: SqlQueue, step: Step
) -> None:
    with store.transaction(queue) as txn:
        if not txn.mark_message_processed(step.message_id, "StartStage", step.workflow.id):
            raise DuplicateDeliveryError(step.message_id)
        step.move()
        txn.store_stage(step.stage)
        txn.push_message(StartStage(execution_id=step.workflow.id, stage_id=step.stage.id))
        # Nothing moves in memory before the commit.
        assert step.stage.version == 0

    assert step.stage.version == 1
    assert stage_row_version(store.engine, step.stage.id) == 1
    assert store.retrieve_stage(step.stage.id).context["moved"] is True
    assert mark_row(store, step.message_id) == ("StartStage", step.workflow.id)
    message = queue.poll_one()
    assert isinstance(message, StartStage) and message.stage_id == step.stage.id


def test_mark_processed_at_commit_is_buffered_and_gives_no_answer(
    store: SqlWorkflowStore, dialect: str
) -> None:
    message_id, existing = new_id(), new_id()
    store.mark_message_processed(existing, "First", "wf-1")
    with store.transaction() as txn:
        assert txn.mark_processed_at_commit(message_id, "StartStage", "wf-1") is None  # type: ignore[func-returns-value]
        txn.mark_processed_at_commit(existing, "Second", "wf-2")  # exists already: left as it is
        # Buffered: nothing ran yet, so every connection (the shared in-memory one too) sees nothing.
        assert not txn.open
        assert not store.is_message_processed(message_id)
    assert mark_row(store, message_id) == ("StartStage", "wf-1")
    assert mark_row(store, existing) == ("First", "wf-1")


def test_a_mark_rolls_back_with_its_block(store: SqlWorkflowStore) -> None:
    message_id = new_id()
    with pytest.raises(RuntimeError, match="handler failed"), store.transaction() as txn:
        assert txn.mark_message_processed(message_id)
        raise RuntimeError("handler failed")
    assert not store.is_message_processed(message_id)
    # The next delivery is the first again.
    with store.transaction() as txn:
        assert txn.mark_message_processed(message_id) is True
    assert store.is_message_processed(message_id)


@pytest.mark.parametrize(
    ("args", "path"),
    [
        (("m" * 300, None, None), "message.message_id"),
        ((42, None, None), "message.message_id"),
        (("ok", "h" * 300, None), "message.handler_type"),
        (("ok", None, "e" * 300), "message.execution_id"),
    ],
)
def test_a_bad_mark_is_refused_by_name_before_anything_runs(
    store: SqlWorkflowStore, args: tuple[object, object, object], path: str
) -> None:
    before = snapshot(store.engine)
    with store.transaction() as txn:
        with pytest.raises(ValidationError, match=rf"^{path}: ") as refused:
            txn.mark_message_processed(*args)  # type: ignore[arg-type]
        assert refused.value.path == path
        assert not txn.open  # refused before the transaction began
    assert snapshot(store.engine) == before


@RACING
def test_of_racing_deliveries_of_one_message_exactly_one_makes_the_mark(
    url: str, dialect: str, stores: list[SqlWorkflowStore]
) -> None:
    message_id = new_id()

    def deliver(index: int, barrier: threading.Barrier) -> bool:
        with stores[index].transaction() as txn:
            warm(txn, dialect)
            barrier.wait()
            return txn.mark_message_processed(message_id, f"handler-{index}", f"wf-{index}")

    outcomes = race(RACERS, deliver)
    assert unexpected(outcomes) == []
    winners = [i for i, o in enumerate(outcomes) if o.error is None and o.value is True]
    assert len(winners) == 1, [(o.value, o.error) for o in outcomes]
    assert mark_row(SqlWorkflowStore(url), message_id) == (f"handler-{winners[0]}", f"wf-{winners[0]}")
    with SqlWorkflowStore(url).engine.connect() as connection:
        marks = connection.execute(select(func.count()).select_from(ProcessedMessageRow)).scalar_one()
    assert marks == 1


def test_a_held_transaction_is_invisible_to_other_threads_until_it_ends(url: str) -> None:
    """While one thread's block holds its transaction, another thread's calls neither see its
    mark nor end its transaction: the block's rollback still takes the mark away.

    Reads never wait for a writer on a file or a server (WAL on SQLite files), so the other
    thread's read runs while the block is open, in the order the Events give. An in-memory SQLite
    database has one connection for every thread: there the read waits for the block to end."""
    holder, reader = SqlWorkflowStore(url), SqlWorkflowStore(url)
    message_id = new_id()
    opened, looked = threading.Event(), threading.Event()
    seen: list[bool] = []

    def look() -> None:
        assert opened.wait(60)
        try:
            seen.append(reader.is_message_processed(message_id))
        finally:
            looked.set()

    other = threading.Thread(target=look, daemon=True)
    other.start()
    with pytest.raises(RuntimeError, match="handler failed"), holder.transaction() as txn:
        assert txn.mark_message_processed(message_id)
        opened.set()
        if not is_memory(normalize_url(url)):
            assert looked.wait(60)
        raise RuntimeError("handler failed")
    other.join(60)
    # No dirty read of the open transaction, and its rollback took the mark away.
    assert (seen, holder.is_message_processed(message_id)) == ([False], False)


# -- reads that see the block's own writes -----------------------------------------------------


def test_workflow_status_sees_the_blocks_own_earlier_writes(store: SqlWorkflowStore, step: Step) -> None:
    new = chain(1, 1)
    with store.transaction() as txn:
        assert txn.workflow_status(step.workflow.id) == ("NOT_STARTED", False)
        assert txn.workflow_status("no-such-workflow") == (None, False)
        step.workflow.status = WorkflowStatus.RUNNING
        step.workflow.is_canceled = True
        txn.update_workflow_status(step.workflow)
        assert txn.workflow_status(step.workflow.id) == ("RUNNING", True)
        txn.store_workflow(new)
        assert txn.workflow_status(new.id) == ("NOT_STARTED", False)
    assert store.retrieve(step.workflow.id).status == WorkflowStatus.RUNNING
    assert store.retrieve(step.workflow.id).is_canceled
    assert store.exists(new.id)


def test_a_canceled_workflow_reads_as_canceled(store: SqlWorkflowStore, step: Step) -> None:
    store.cancel(step.workflow.id, "bob", "late")
    with store.transaction() as txn:
        assert txn.workflow_status(step.workflow.id) == ("NOT_STARTED", True)


def test_count_running_counts_running_only_and_sees_the_blocks_writes(store: SqlWorkflowStore) -> None:
    config = f"cfg-{new_id()}"
    for status in WorkflowStatus:
        store.store(config_workflow(config, status))
    store.store(config_workflow("another-config", WorkflowStatus.RUNNING))
    waiting = config_workflow(config, WorkflowStatus.BUFFERED)
    store.store(waiting)

    with store.transaction() as txn:
        assert txn.count_running(config) == 1
        assert txn.count_running("no-such-config") == 0
        waiting.status = WorkflowStatus.RUNNING
        txn.update_workflow_status(waiting)
        assert txn.count_running(config) == 2
        txn.store_workflow(config_workflow(config, WorkflowStatus.RUNNING))
        txn.store_workflow(config_workflow(config, WorkflowStatus.PAUSED))
        assert txn.count_running(config) == 3
    with store.transaction() as txn:
        assert txn.count_running(config) == 3
        assert txn.count_running("another-config") == 1


def test_buffered_ids_are_ascending_and_see_the_blocks_writes(store: SqlWorkflowStore) -> None:
    config = f"cfg-{new_id()}"
    buffered = [config_workflow(config, WorkflowStatus.BUFFERED) for _ in range(3)]
    # Stored out of id order: the answer is by id, not by insertion.
    for made in reversed(buffered):
        store.store(made)
    for status in (WorkflowStatus.RUNNING, WorkflowStatus.NOT_STARTED, WorkflowStatus.SUCCEEDED):
        store.store(config_workflow(config, status))
    store.store(config_workflow("another-config", WorkflowStatus.BUFFERED))
    ids = sorted(made.id for made in buffered)

    with store.transaction() as txn:
        assert txn.buffered_ids(config) == ids
        assert txn.buffered_ids("no-such-config") == []
        first = next(made for made in buffered if made.id == ids[0])
        first.status = WorkflowStatus.RUNNING
        txn.update_workflow_status(first)
        later = config_workflow(config, WorkflowStatus.BUFFERED)
        txn.store_workflow(later)
        assert txn.buffered_ids(config) == [*ids[1:], later.id]
        assert txn.count_running(config) == 2
    with store.transaction() as txn:
        assert txn.buffered_ids(config) == [*ids[1:], later.id]


def test_a_read_of_a_missing_workflows_update_fails_the_block(store: SqlWorkflowStore) -> None:
    """A buffered write that fails when a read applies it raises from that read; nothing stays."""
    ghost = chain(1, 1)  # never stored
    message_id = new_id()
    before = snapshot(store.engine)
    with pytest.raises(WorkflowNotFoundError), store.transaction() as txn:
        assert txn.mark_message_processed(message_id)
        txn.update_workflow_status(ghost)
        txn.workflow_status(ghost.id)
    assert snapshot(store.engine) == before


# -- lock_admission ----------------------------------------------------------------------------


LIMIT = 1


def admit(store: SqlWorkflowStore, workflow: Workflow, barrier: threading.Barrier, dialect: str) -> bool:
    """The engine's admission of one BUFFERED workflow under its config's limit: True when it
    set it RUNNING. A block that lost a race (``TransientError``) runs again, as the engine's."""
    config = workflow.pipeline_config_id
    assert config is not None
    for attempt in range(20):
        try:
            with store.transaction() as txn:
                if attempt == 0:
                    warm(txn, dialect)
                    barrier.wait()
                txn.lock_admission(config)
                if txn.count_running(config) >= LIMIT:
                    return False
                workflow.status = WorkflowStatus.RUNNING
                txn.update_workflow_status(workflow)
                return True
        except TransientError:
            continue
    raise AssertionError("an admission kept losing races")


def admitting(
    stores: list[SqlWorkflowStore], workflows: list[Workflow], dialect: str
) -> Callable[[int, threading.Barrier], bool]:
    return lambda index, barrier: admit(stores[index], workflows[index], barrier, dialect)


@RACING
def test_racing_admissions_never_admit_beyond_the_limit(
    url: str, dialect: str, stores: list[SqlWorkflowStore]
) -> None:
    """K threads (a store each) each try to admit one of K BUFFERED workflows of one config."""
    setup = SqlWorkflowStore(url)
    for round_ in range(ROUNDS):
        config = f"cfg-{round_}-{new_id()}"
        waiting = [config_workflow(config, WorkflowStatus.BUFFERED) for _ in range(RACERS)]
        for made in waiting:
            setup.store(made)
        mine = [store.retrieve(made.id) for store, made in zip(stores, waiting, strict=True)]

        outcomes = race(RACERS, admitting(stores, mine, dialect))
        assert unexpected(outcomes) == []
        assert [o.error for o in outcomes] == [None] * RACERS
        admitted = [i for i, o in enumerate(outcomes) if o.value]
        now = statuses(setup, config)
        assert list(now.values()).count("RUNNING") == LIMIT, now
        assert len(admitted) == LIMIT
        assert now[waiting[admitted[0]].id] == "RUNNING"


#: The bound of a call that must wait on a lock this test holds, and so fail: short, but no
#: less than MariaDB's one-second innodb_lock_wait_timeout (a wait of an attempt is half of it).
WAITING_TIMEOUT = 2.0


@RACING
def test_an_admission_lock_holds_until_the_block_ends(store: SqlWorkflowStore, url: str) -> None:
    """Another client's admission of the key waits for the holder's block: while the block is
    open it fails at its bound with a ``LockTimeoutError`` (transient: the engine runs it again), and once
    the block ended it goes through.

    The lock wait is the first bound of an attempt to end on every dialect (SQLite's busy
    timeout on the write lock; the servers' lock timeouts are shorter than their statement and
    network bounds), so the wait is reported as what it was: ``LockTimeoutError``."""
    other = SqlWorkflowStore(url, operation_timeout=WAITING_TIMEOUT)  # an engine of its own
    try:
        with store.transaction() as txn:
            txn.lock_admission("cfg")
            refused = pytest.raises(LockTimeoutError, match="not released in time")
            with refused, other.transaction() as waiting:
                waiting.lock_admission("cfg")
            assert txn.count_running("cfg") == 0  # the holder's transaction is still usable
        with other.transaction() as after:
            after.lock_admission("cfg")
    finally:
        other.engine.dispose()


def test_an_admission_lock_is_a_row_that_commits_or_rolls_back_with_its_block(
    store: SqlWorkflowStore,
) -> None:
    def locks() -> list[str]:
        with store.engine.connect() as connection:
            return list(connection.execute(select(AdmissionLockRow.lock_key)).scalars())

    with pytest.raises(RuntimeError), store.transaction() as txn:
        txn.lock_admission("cfg-a")
        assert txn.open
        raise RuntimeError("admission failed")
    assert locks() == []
    # Taken again and again, by one transaction after the other: the lock ends with each.
    for _ in range(2):
        with store.transaction() as txn:
            txn.lock_admission("cfg-a")
            txn.lock_admission("cfg-a")  # held already: re-entrant
    assert locks() == ["cfg-a"]
    with pytest.raises(ValidationError, match=r"^admission\.key: "), store.transaction() as txn:
        txn.lock_admission("k" * 300)
    assert locks() == ["cfg-a"]


# -- rollback and versions -----------------------------------------------------------------------


def test_an_exception_after_an_answering_call_leaves_everything_as_it_was(
    store: SqlWorkflowStore, queue: SqlQueue, step: Step
) -> None:
    before = snapshot(store.engine)
    with pytest.raises(RuntimeError, match="handler failed"), store.transaction(queue) as txn:
        step.move()
        txn.store_stage(step.stage)
        step.workflow.status = WorkflowStatus.RUNNING
        txn.update_workflow_status(step.workflow)
        txn.push_message(StartStage(execution_id=step.workflow.id, stage_id=step.stage.id))
        # The read applies the writes so far, in the open transaction.
        assert txn.workflow_status(step.workflow.id) == ("RUNNING", False)
        assert txn.mark_message_processed(step.message_id)
        txn.set_config_version(step.workflow.id, "v2")
        raise RuntimeError("handler failed")
    assert snapshot(store.engine) == before
    assert_step_not_written(store, queue, step)
    assert not store.is_message_processed(step.message_id)


def test_a_failed_compare_and_set_rolls_the_mark_back(
    store: SqlWorkflowStore, url: str, queue: SqlQueue, step: Step
) -> None:
    rival = SqlWorkflowStore(url).retrieve_stage(step.stage.id)
    rival.context["rival"] = True
    SqlWorkflowStore(url).store_stage(rival)  # the row moves to version 1: ours is stale
    before = snapshot(store.engine)

    with pytest.raises(ConcurrencyError), store.transaction(queue) as txn:
        assert txn.mark_message_processed(step.message_id)
        step.move()
        txn.store_stage(step.stage)
        txn.push_message(StartStage(execution_id=step.workflow.id, stage_id=step.stage.id))
    assert snapshot(store.engine) == before
    assert not store.is_message_processed(step.message_id)
    assert queue.size() == 0
    assert step.stage.version == 0


def test_a_failed_compare_and_set_applied_by_a_read_rolls_the_mark_back(
    store: SqlWorkflowStore, url: str, step: Step
) -> None:
    rival = SqlWorkflowStore(url).retrieve_stage(step.stage.id)
    SqlWorkflowStore(url).store_stage(rival)
    before = snapshot(store.engine)

    with pytest.raises(ConcurrencyError), store.transaction() as txn:
        assert txn.mark_message_processed(step.message_id)
        step.move()
        txn.store_stage(step.stage)
        txn.count_running("cfg")  # applies the stale compare-and-set: it fails here
    assert snapshot(store.engine) == before
    assert step.stage.version == 0


def test_versions_move_only_once_a_held_transaction_commits(
    store: SqlWorkflowStore, dialect: str, step: Step
) -> None:
    with store.transaction() as txn:
        step.move()
        txn.store_stage(step.stage)
        assert txn.workflow_status(step.workflow.id) == ("NOT_STARTED", False)  # applies the write
        assert step.stage.version == 0
        assert [t.version for t in step.stage.tasks] == [0, 0]
        if dialect != "sqlite_memory":  # one shared connection there: no "other" connection
            assert stage_row_version(store.engine, step.stage.id) == 0
    assert step.stage.version == 1
    assert [t.version for t in step.stage.tasks] == [1, 0]
    assert stage_row_version(store.engine, step.stage.id) == 1
    assert task_row_versions(store.engine, step.stage.id)[step.stage.tasks[0].id] == 1
    # The in-memory stage is current: the next step goes on from it.
    step.stage.context["next"] = 1
    store.store_stage(step.stage)
    assert stage_row_version(store.engine, step.stage.id) == 2


def test_a_stage_written_before_and_after_an_answering_read_commits_both(
    store: SqlWorkflowStore, step: Step
) -> None:
    """As in a buffered block, a stage written twice moves twice: the second compare-and-set is
    on the version the first one wrote, even when a read applied the first in between."""
    with store.transaction() as txn:
        txn.store_stage(step.stage)
        txn.count_running("cfg")  # applies the first write
        step.move()
        txn.store_stage(step.stage)
    assert stage_row_version(store.engine, step.stage.id) == 2
    assert step.stage.version == 2
    assert task_row_versions(store.engine, step.stage.id)[step.stage.tasks[0].id] == 1
    assert [t.version for t in step.stage.tasks] == [1, 0]
    stored = store.retrieve_stage(step.stage.id)
    assert stored.status == WorkflowStatus.RUNNING and stored.context["moved"] is True


def test_stages_written_on_either_side_of_an_answering_read_both_commit(
    store: SqlWorkflowStore, step: Step
) -> None:
    """The write after the read is of another stage: on PostgreSQL it may be a step statement."""
    second = store.retrieve_stage(step.workflow.stages[1].id)
    with store.transaction() as txn:
        step.move()
        txn.store_stage(step.stage)
        assert txn.mark_message_processed(step.message_id)
        assert txn.count_running("cfg") == 0
        second.status = WorkflowStatus.RUNNING
        txn.store_stage(second)
        txn.mark_processed_at_commit(new_id())
    assert (step.stage.version, second.version) == (1, 1)
    assert stage_row_version(store.engine, step.stage.id) == 1
    assert stage_row_version(store.engine, second.id) == 1
    assert store.retrieve_stage(second.id).status == WorkflowStatus.RUNNING


def test_a_stage_written_twice_in_a_buffered_block_commits_both(store: SqlWorkflowStore, step: Step) -> None:
    """The buffered counterpart of the test above."""
    with store.transaction() as txn:
        txn.store_stage(step.stage)
        step.move()
        txn.store_stage(step.stage)
    assert stage_row_version(store.engine, step.stage.id) == 2
    assert step.stage.version == 2


# -- set_config_version ------------------------------------------------------------------------


def test_set_config_version_writes_at_commit(store: SqlWorkflowStore, step: Step) -> None:
    with store.transaction() as txn:
        txn.set_config_version(step.workflow.id, "v" * 255)
        assert not txn.open  # buffered
        assert store.retrieve(step.workflow.id).config_version is None
    assert store.retrieve(step.workflow.id).config_version == "v" * 255
    with store.transaction() as txn:
        assert txn.mark_message_processed(new_id())
        txn.set_config_version(step.workflow.id, None)
    assert store.retrieve(step.workflow.id).config_version is None


@pytest.mark.parametrize(
    ("workflow_id", "version", "path"),
    [
        (None, 7, "workflow.config_version"),
        (None, "v" * 256, "workflow.config_version"),
        (None, b"v1", "workflow.config_version"),
        ("w" * 300, "v1", "workflow.id"),
        (42, "v1", "workflow.id"),
    ],
)
def test_a_bad_config_version_is_refused_by_name_and_nothing_is_written(
    store: SqlWorkflowStore, step: Step, workflow_id: object, version: object, path: str
) -> None:
    target = step.workflow.id if workflow_id is None else workflow_id
    before = snapshot(store.engine)
    with pytest.raises(ValidationError, match=rf"^{path}: ") as refused, store.transaction() as txn:
        step.workflow.status = WorkflowStatus.RUNNING
        txn.update_workflow_status(step.workflow)
        txn.set_config_version(target, version)  # type: ignore[arg-type]
    assert refused.value.path == path
    assert snapshot(store.engine) == before


# -- a caller's Session ------------------------------------------------------------------------


@pytest.fixture
def notes(store: SqlWorkflowStore) -> Iterator[Table]:
    """The application's own table, dropped after the test."""
    table = Table(
        f"app_notes_{new_id()[-8:].lower()}",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("note", String(64), nullable=False),
    )
    table.create(store.engine)
    yield table
    table.drop(store.engine)


def note_rows(store: SqlWorkflowStore, table: Table) -> list[int]:
    with store.engine.connect() as connection:
        return list(connection.execute(select(table.c.id).order_by(table.c.id)).scalars())


def joined_step(store: SqlWorkflowStore, queue: SqlQueue, step: Step, session: Session) -> None:
    """An engine step in the caller's Session, with every kind of answering call."""
    with store.transaction(queue, session=session) as txn:
        txn.lock_admission("cfg")
        if not txn.mark_message_processed(step.message_id, "StartStage", step.workflow.id):
            raise DuplicateDeliveryError(step.message_id)
        step.move()
        txn.store_stage(step.stage)
        step.workflow.status = WorkflowStatus.RUNNING
        txn.update_workflow_status(step.workflow)
        assert txn.workflow_status(step.workflow.id) == ("RUNNING", False)
        txn.push_message(StartStage(execution_id=step.workflow.id, stage_id=step.stage.id))
        txn.set_config_version(step.workflow.id, "v2")


def test_answering_calls_in_a_callers_session_commit_with_it(
    store: SqlWorkflowStore, queue: SqlQueue, dialect: str, notes: Table, step: Step
) -> None:
    with Session(store.engine) as session, session.begin():
        session.execute(insert(notes).values(id=1, note="paid"))
        joined_step(store, queue, step, session)
        assert session.in_transaction()
        assert step.stage.version == 0
        if dialect != "sqlite_memory":  # one shared connection there: no "other" connection
            assert not store.is_message_processed(step.message_id)
            assert note_rows(store, notes) == []
    assert note_rows(store, notes) == [1]
    assert step.stage.version == 1
    assert stage_row_version(store.engine, step.stage.id) == 1
    assert mark_row(store, step.message_id) == ("StartStage", step.workflow.id)
    stored = store.retrieve(step.workflow.id)
    assert stored.status == WorkflowStatus.RUNNING and stored.config_version == "v2"
    assert queue.size() == 1


def test_answering_calls_in_a_callers_session_disappear_with_its_rollback(
    store: SqlWorkflowStore, queue: SqlQueue, notes: Table, step: Step
) -> None:
    before = snapshot(store.engine)
    with (
        pytest.raises(RuntimeError, match="application failed"),
        Session(store.engine) as session,
        session.begin(),
    ):
        session.execute(insert(notes).values(id=1, note="paid"))
        joined_step(store, queue, step, session)
        raise RuntimeError("application failed")
    assert snapshot(store.engine) == before
    assert note_rows(store, notes) == []
    assert_step_not_written(store, queue, step)
    assert not store.is_message_processed(step.message_id)
    # The mark went with the rollback: the next delivery is the first.
    with store.transaction() as txn:
        assert txn.mark_message_processed(step.message_id) is True


def test_a_duplicate_in_a_callers_session_rolls_back_the_step_only(
    store: SqlWorkflowStore, queue: SqlQueue, notes: Table, step: Step
) -> None:
    """The SAVEPOINT goes; the application's own row, written before, commits if it carries on."""
    store.mark_message_processed(step.message_id)
    before = snapshot(store.engine)
    with Session(store.engine) as session, session.begin():
        session.execute(insert(notes).values(id=1, note="paid"))
        with pytest.raises(DuplicateDeliveryError):
            joined_step(store, queue, step, session)
        assert session.in_transaction()
    assert note_rows(store, notes) == [1]
    assert snapshot(store.engine) == before  # the store's tables: the application's is not in it
    assert_step_not_written(store, queue, step)
    assert store.retrieve(step.workflow.id).status == WorkflowStatus.NOT_STARTED
