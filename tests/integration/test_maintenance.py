"""Retention and purge, on every dialect: processed ids, stage claims, completed workflows and the
processed-message sweep as the Stabilize 0.33 engine and its maintenance commands call them."""

from __future__ import annotations

import math
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from stabilize.models import Workflow, WorkflowStatus
from stabilize.models.ids import new_id, now_ms
from stabilize.persistence.errors import ValidationError
from stabilize.persistence.sql.rows import ProcessedMessageRow, StageClaimRow, WorkflowSignalRow
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.messages import StartStage
from stabilize.queue.sql import SqlQueue
from tests.integration.builders import (
    count_statements,
    set_processed_at,
    snapshot,
    stage,
    workflow,
    workflow_rows,
)

HOUR_MS = 3_600_000
CUTOFF = 1_000_000


def marks(store: SqlWorkflowStore) -> set[str]:
    with store.engine.connect() as connection:
        return set(connection.execute(select(ProcessedMessageRow.message_id)).scalars())


def old_marks(store: SqlWorkflowStore, count: int, hours: int = 48, prefix: str = "old") -> list[str]:
    """``count`` marks ``hours`` old and more, each a minute older than the next: oldest first."""
    start = now_ms() - hours * HOUR_MS - count * 60_000
    ids = [f"{prefix}-{i:04d}" for i in range(count)]
    rows = [
        {
            "message_id": message_id,
            "handler_type": None,
            "execution_id": None,
            "processed_at": start + i * 60_000,
        }
        for i, message_id in enumerate(ids)
    ]
    with store.engine.begin() as connection:
        connection.execute(insert(ProcessedMessageRow), rows)
    return ids


# -- get_processed_message_ids ----------------------------------------------------------------------


def test_processed_ids_come_newest_first_up_to_the_limit(store: SqlWorkflowStore) -> None:
    for n, message_id in enumerate(["m-c", "m-a", "m-e", "m-b", "m-d"]):
        store.mark_message_processed(message_id)
        set_processed_at(store.engine, message_id, 1_000 + n)

    assert store.get_processed_message_ids() == ["m-d", "m-b", "m-e", "m-a", "m-c"]
    assert store.get_processed_message_ids(2) == ["m-d", "m-b"]
    assert store.get_processed_message_ids(limit=0) == []
    assert store.get_processed_message_ids(limit=99) == ["m-d", "m-b", "m-e", "m-a", "m-c"]


@pytest.mark.parametrize("limit", [-1, "3", True, 2.0])
def test_processed_ids_refuse_a_bad_limit(store: SqlWorkflowStore, limit: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        store.get_processed_message_ids(limit)
    assert refused.value.path == "limit"


# -- cleanup_completed_stage_claims -----------------------------------------------------------------


def claimed(store: SqlWorkflowStore, status: WorkflowStatus, *keys: str) -> Workflow:
    made = workflow(stage("a"), stage("b"), status=status)
    store.store(made)
    with store.transaction() as txn:
        for key in keys:
            assert txn.acquire_claim(made.id, key, made.stages[0].id)
    return made


def claims(store: SqlWorkflowStore) -> set[tuple[str, str]]:
    with store.engine.connect() as connection:
        rows = connection.execute(select(StageClaimRow.workflow_id, StageClaimRow.claim_key))
        return {(workflow_id, key) for workflow_id, key in rows}


def test_claims_go_only_for_complete_workflows(store: SqlWorkflowStore) -> None:
    done = claimed(store, WorkflowStatus.SUCCEEDED, "mutex:db", "choice:g")
    stopped = claimed(store, WorkflowStatus.CANCELED, "mutex:db")
    running = claimed(store, WorkflowStatus.RUNNING, "mutex:db", "choice:g")
    paused = claimed(store, WorkflowStatus.PAUSED, "mutex:q")
    assert len(claims(store)) == 6

    assert store.cleanup_completed_stage_claims() == 3
    assert claims(store) == {(running.id, "mutex:db"), (running.id, "choice:g"), (paused.id, "mutex:q")}
    assert store.cleanup_completed_stage_claims() == 0
    assert {done.id, stopped.id}.isdisjoint(w for w, _ in claims(store))


# -- completed_workflow_ids, purge_completed_workflows ------------------------------------------------


def finished(
    store: SqlWorkflowStore, status: WorkflowStatus, end_time: int | None, application: str = "app"
) -> Workflow:
    """A stored workflow with two stages, a task, a processed mark, a claim and a signal."""
    made = workflow(stage("a", tasks=1), stage("b", {"a"}), status=status, application=application)
    made.end_time = end_time
    store.store(made)
    store.mark_message_processed(f"mark-{made.id}", "H", made.id)
    with store.transaction() as txn:
        txn.acquire_claim(made.id, "mutex:k", made.stages[0].id)
    store.buffer_signal(made.id, "b", "go")
    return made


def owned_rows(store: SqlWorkflowStore, workflow_id: str) -> dict[str, int]:
    counts = workflow_rows(store.engine, workflow_id)
    tables = {
        "marks": ProcessedMessageRow.execution_id,
        "claims": StageClaimRow.workflow_id,
        "signals": WorkflowSignalRow.workflow_id,
    }
    with store.engine.connect() as connection:
        for name, column in tables.items():
            counts[name] = int(
                connection.execute(select(func.count()).where(column == workflow_id)).scalar_one()
            )
    return counts


@pytest.fixture
def mixed(store: SqlWorkflowStore) -> dict[str, Workflow]:
    return {
        "succeeded": finished(store, WorkflowStatus.SUCCEEDED, 300),
        "terminal": finished(store, WorkflowStatus.TERMINAL, 100),
        "canceled_b": finished(store, WorkflowStatus.CANCELED, 200, application="b"),
        "skipped": finished(store, WorkflowStatus.SKIPPED, 400),
        "no_end": finished(store, WorkflowStatus.SUCCEEDED, None),
        "late": finished(store, WorkflowStatus.STOPPED, CUTOFF),
        "running": finished(store, WorkflowStatus.RUNNING, 50),
        "paused": finished(store, WorkflowStatus.PAUSED, 60),
    }


def test_completed_ids_are_complete_ended_before_the_cutoff_oldest_end_first(
    store: SqlWorkflowStore, mixed: dict[str, Workflow]
) -> None:
    order = [mixed[k].id for k in ("terminal", "canceled_b", "succeeded", "skipped")]

    assert store.completed_workflow_ids(CUTOFF, 100) == order
    assert store.completed_workflow_ids(CUTOFF, 2) == order[:2]
    assert store.completed_workflow_ids(CUTOFF, 0) == []
    assert store.completed_workflow_ids(CUTOFF, 100, "b") == [mixed["canceled_b"].id]
    assert store.completed_workflow_ids(CUTOFF, 100, application="nobody") == []
    assert store.completed_workflow_ids(CUTOFF + 1, 100)[-1] == mixed["late"].id
    assert store.completed_workflow_ids(101, 10**9) == [mixed["terminal"].id]


def test_purge_removes_the_completed_workflows_with_every_row_they_own(
    store: SqlWorkflowStore, mixed: dict[str, Workflow]
) -> None:
    gone = {"terminal", "canceled_b", "succeeded", "skipped"}
    owned = owned_rows(store, mixed["succeeded"].id)
    assert owned == {
        "workflows": 1,
        "stages": 2,
        "stage_edges": 1,
        "tasks": 1,
        "marks": 1,
        "claims": 1,
        "signals": 1,
    }

    assert store.purge_completed_workflows(CUTOFF) == 4

    assert {k: sum(owned_rows(store, mixed[k].id).values()) for k in gone} == dict.fromkeys(gone, 0)
    assert {k: owned_rows(store, w.id) for k, w in mixed.items() if k not in gone} == {
        k: owned for k in mixed if k not in gone
    }
    assert store.purge_completed_workflows(CUTOFF) == 0


def test_purge_goes_in_batches_up_to_max_workflows_and_by_application(store: SqlWorkflowStore) -> None:
    made = [
        finished(store, WorkflowStatus.SUCCEEDED, 10 + n, application="a" if n % 3 else "b") for n in range(9)
    ]
    in_a = [w.id for w in made if w.application == "a"]

    with count_statements(store.engine) as seen:
        assert store.purge_completed_workflows(CUTOFF, batch_size=2, max_workflows=5, application="a") == 5
    assert sum(1 for sql in seen if sql.lstrip().upper().startswith("DELETE FROM WORKFLOWS")) == 3  # 2, 2, 1
    assert store.completed_workflow_ids(CUTOFF, 100, "a") == in_a[5:]  # the oldest went first

    with count_statements(store.engine) as seen:
        assert store.purge_completed_workflows(CUTOFF, batch_size=2) == 4
    assert sum(1 for sql in seen if sql.lstrip().upper().startswith("DELETE FROM WORKFLOWS")) == 2
    assert store.completed_workflow_ids(CUTOFF, 100) == []
    assert store.purge_completed_workflows(CUTOFF, max_workflows=0) == 0


def test_purge_leaves_queued_messages_unless_given_the_queue(store: SqlWorkflowStore, url: str) -> None:
    queue = SqlQueue(url)
    first, second = (
        finished(store, WorkflowStatus.SUCCEEDED, 10),
        finished(store, WorkflowStatus.SUCCEEDED, 20),
    )
    kept = finished(store, WorkflowStatus.RUNNING, None)
    for wf in (first, second, kept):
        queue.push(StartStage(execution_id=wf.id, stage_id=wf.stages[0].id))

    assert store.purge_completed_workflows(CUTOFF, max_workflows=1) == 1
    assert queue.has_pending_message_for_execution(first.id)  # the queue's rows are the queue's

    assert store.purge_completed_workflows(CUTOFF, queue=queue) == 1
    assert not queue.has_pending_message_for_execution(second.id)
    assert queue.has_pending_message_for_execution(kept.id)
    assert queue.size() == 2


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"completed_before_ms": "yesterday"}, "completed_before_ms"),
        ({"completed_before_ms": None}, "completed_before_ms"),
        ({"completed_before_ms": 2**64}, "completed_before_ms"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": None}, "batch_size"),
        ({"max_workflows": -1}, "max_workflows"),
        ({"max_workflows": 1.5}, "max_workflows"),
        ({"application": 7}, "application"),
    ],
)
def test_purge_refuses_bad_arguments_by_name_and_deletes_nothing(
    store: SqlWorkflowStore, mixed: dict[str, Workflow], arguments: dict[str, Any], field: str
) -> None:
    before = snapshot(store.engine)

    with pytest.raises(ValidationError) as refused:
        store.purge_completed_workflows(**{"completed_before_ms": CUTOFF, **arguments})

    assert refused.value.path == field
    assert snapshot(store.engine) == before


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"completed_before_ms": 1.5}, "completed_before_ms"),
        ({"limit": -1}, "limit"),
        ({"limit": None}, "limit"),
        ({"application": "x" * 256}, "application"),
    ],
)
def test_completed_ids_refuse_bad_arguments_by_name(
    store: SqlWorkflowStore, arguments: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        store.completed_workflow_ids(**{"completed_before_ms": CUTOFF, "limit": 10, **arguments})
    assert refused.value.path == field


# -- cleanup_old_processed_messages: the engine's keywords ------------------------------------------------


def test_live_marks_stay_whether_live_is_a_collection_or_a_function(store: SqlWorkflowStore) -> None:
    ids = old_marks(store, 6)
    store.mark_message_processed("fresh")
    asked: list[list[str]] = []

    def live(keys: list[str]) -> set[str]:
        asked.append(list(keys))
        return {ids[1]} & set(keys)

    assert store.cleanup_old_processed_messages(24, live={ids[0], ids[4], "fresh"}) == 4
    assert marks(store) == {ids[0], ids[4], "fresh"}
    assert store.cleanup_old_processed_messages(24, live=live) == 2
    assert asked == [[ids[0], ids[4]]]  # only old marks are asked about, oldest first
    assert marks(store) == {"fresh"}
    assert store.cleanup_old_processed_messages(24, live=lambda keys: set()) == 0


def test_a_queue_tells_which_marks_are_live(store: SqlWorkflowStore, url: str) -> None:
    queue = SqlQueue(url)
    queued = StartStage(execution_id=new_id(), stage_id=new_id())
    queue.push(queued)
    store.mark_message_processed(queued.message_id)
    set_processed_at(store.engine, queued.message_id, now_ms() - 30 * HOUR_MS)
    delivered = old_marks(store, 2)

    removed = store.cleanup_old_processed_messages(
        max_age_hours=24,
        batch_size=10,
        max_rows=None,
        table_name="queue_messages",
        live=queue.live_delivery_keys,
    )

    assert removed == 2
    assert marks(store) == {queued.message_id}
    assert not set(delivered) & marks(store)


def test_live_is_asked_batch_by_batch_and_each_old_mark_once(store: SqlWorkflowStore) -> None:
    ids = old_marks(store, 8)
    keep = {ids[0], ids[1], ids[2], ids[6]}
    asked: list[list[str]] = []

    def live(keys: list[str]) -> set[str]:
        asked.append(list(keys))
        return keep & set(keys)

    assert store.cleanup_old_processed_messages(24, batch_size=3, live=live) == 4
    assert asked == [ids[0:3], ids[3:6], ids[6:8]]  # a batch of kept marks does not end the sweep
    assert marks(store) == keep


def test_max_rows_bounds_a_sweep_and_the_oldest_go_first(store: SqlWorkflowStore) -> None:
    ids = old_marks(store, 10)

    assert store.cleanup_old_processed_messages(24, max_rows=4) == 4
    assert marks(store) == set(ids[4:])
    assert store.cleanup_old_processed_messages(24, max_rows=0) == 0
    assert store.cleanup_old_processed_messages(24, batch_size=2, max_rows=3, live={ids[4]}) == 3
    assert marks(store) == {ids[4], *ids[8:]}
    assert store.cleanup_old_processed_messages(24, max_rows=100, live=set()) == 3
    assert marks(store) == set()


def test_batch_size_is_marks_per_transaction(store: SqlWorkflowStore) -> None:
    old_marks(store, 7)
    store.mark_message_processed("fresh")

    with count_statements(store.engine) as seen:
        assert store.cleanup_old_processed_messages(24, batch_size=3) == 7
    deletes = [sql for sql in seen if sql.lstrip().upper().startswith("DELETE FROM PROCESSED_MESSAGES")]
    assert len(deletes) == 3  # 3, 3 and 1
    assert marks(store) == {"fresh"}


def test_young_marks_stay_whatever_live_says(store: SqlWorkflowStore) -> None:
    old_marks(store, 3, hours=2)

    assert store.cleanup_old_processed_messages(24, live=set()) == 0
    assert store.cleanup_old_processed_messages(3, live=lambda keys: set()) == 0
    assert store.cleanup_old_processed_messages(1, table_name=None, live=lambda keys: set()) == 3


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"max_age_hours": -1}, "max_age_hours"),
        ({"max_age_hours": math.nan}, "max_age_hours"),
        ({"max_age_hours": math.inf}, "max_age_hours"),
        ({"max_age_hours": "24"}, "max_age_hours"),
        ({"max_age_hours": True}, "max_age_hours"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"max_rows": -1}, "max_rows"),
        ({"max_rows": "10"}, "max_rows"),
        ({"table_name": "other_queue"}, "table_name"),
        ({"live": "not-a-set"}, "live"),
        ({"live": 5}, "live"),
    ],
)
def test_the_sweep_refuses_bad_arguments_by_name_and_deletes_nothing(
    store: SqlWorkflowStore, arguments: dict[str, Any], field: str
) -> None:
    old_marks(store, 3)
    before = snapshot(store.engine)

    with pytest.raises(ValidationError) as refused:
        store.cleanup_old_processed_messages(**arguments)

    assert refused.value.path == field
    assert snapshot(store.engine) == before


def test_a_huge_age_deletes_nothing(store: SqlWorkflowStore) -> None:
    old_marks(store, 2)
    assert store.cleanup_old_processed_messages(1e300) == 0
    assert store.cleanup_old_processed_messages(0) == 2
