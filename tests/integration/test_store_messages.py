"""Processed-message marks and the store's atomic transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select

from stabilize.errors import ConcurrencyError, ValidationError
from stabilize.models import StageExecution, Workflow, WorkflowStatus
from stabilize.models.ids import new_id, now_ms
from stabilize.persistence import create_queue
from stabilize.persistence.sql.rows import ProcessedMessageRow
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.persistence.store import WorkflowNotFoundError
from stabilize.queue.messages import StartWorkflow
from tests.integration.builders import (
    set_processed_at,
    snapshot,
    stage,
    stage_row_version,
    task,
    task_row_versions,
    workflow,
)

HOUR_MS = 3_600_000

# -- processed messages -------------------------------------------------------------------------


def processed_count(store: SqlWorkflowStore) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(ProcessedMessageRow)).scalar_one())


def test_mark_message_processed_is_idempotent(store: SqlWorkflowStore) -> None:
    execution_id = new_id()

    assert store.is_message_processed("m-1") is False
    store.mark_message_processed("m-1", "StartStageHandler", execution_id)
    store.mark_message_processed("m-1", "StartStageHandler", execution_id)
    store.mark_message_processed("m-1")
    store.mark_message_processed("m-2")

    assert store.is_message_processed("m-1") is True
    assert store.is_message_processed("m-2") is True
    assert store.is_message_processed("m-3") is False
    assert processed_count(store) == 2
    with store.engine.connect() as connection:
        row = connection.execute(
            select(ProcessedMessageRow.handler_type, ProcessedMessageRow.execution_id).where(
                ProcessedMessageRow.message_id == "m-1"
            )
        ).one()
    assert tuple(row) == ("StartStageHandler", execution_id)  # the first mark stays


def test_cleanup_deletes_only_old_marks_and_counts_them(store: SqlWorkflowStore) -> None:
    now = now_ms()
    for message_id in ("old-1", "old-2", "fresh", "recent"):
        store.mark_message_processed(message_id)
    set_processed_at(store.engine, "old-1", now - 48 * HOUR_MS)
    set_processed_at(store.engine, "old-2", now - 25 * HOUR_MS)
    set_processed_at(store.engine, "recent", now - 2 * HOUR_MS)

    assert store.cleanup_old_processed_messages() == 2  # default: 24 hours
    assert store.is_message_processed("old-1") is False
    assert store.is_message_processed("old-2") is False
    assert store.is_message_processed("fresh") is True
    assert store.cleanup_old_processed_messages(24) == 0
    assert store.cleanup_old_processed_messages(3) == 0
    assert store.cleanup_old_processed_messages(1.5) == 1
    assert store.is_message_processed("recent") is False
    assert store.is_message_processed("fresh") is True
    assert processed_count(store) == 1


def test_cleanup_handles_more_marks_than_one_batch(store: SqlWorkflowStore) -> None:
    old = now_ms() - 100 * HOUR_MS
    rows = [
        {"message_id": f"bulk-{i:05d}", "handler_type": "H", "execution_id": None, "processed_at": old}
        for i in range(2_345)
    ]
    with store.engine.begin() as connection:
        connection.execute(insert(ProcessedMessageRow), rows)
    store.mark_message_processed("keep")

    assert store.cleanup_old_processed_messages(24) == 2_345
    assert processed_count(store) == 1
    assert store.is_message_processed("keep") is True


# -- transaction() ------------------------------------------------------------------------------


def stored(store: SqlWorkflowStore) -> tuple[Workflow, StageExecution, StageExecution]:
    wf = workflow(stage("a", tasks=2), stage("b", {"a"}, tasks=1))
    store.store(wf)
    loaded = store.retrieve(wf.id)
    a, b = loaded.stages
    return loaded, a, b


def test_transaction_commits_stages_status_and_marks_together(store: SqlWorkflowStore) -> None:
    wf, a, b = stored(store)

    with store.transaction() as txn:
        assert txn.is_atomic is True
        a.status = WorkflowStatus.SUCCEEDED
        a.tasks[0].status = WorkflowStatus.SUCCEEDED
        txn.store_stage(a)
        b.status = WorkflowStatus.RUNNING
        txn.store_stage(b, expected_phase="NOT_STARTED")
        wf.status = WorkflowStatus.RUNNING
        wf.start_time = 1_234
        txn.update_workflow_status(wf)
        txn.mark_message_processed("step-1", "CompleteStageHandler", wf.id)

    loaded = store.retrieve(wf.id)
    assert loaded.status is WorkflowStatus.RUNNING
    assert loaded.start_time == 1_234
    assert [s.status for s in loaded.stages] == [WorkflowStatus.SUCCEEDED, WorkflowStatus.RUNNING]
    assert loaded.stages[0].tasks[0].status is WorkflowStatus.SUCCEEDED
    assert (a.version, b.version) == (1, 1)
    assert [s.version for s in loaded.stages] == [1, 1]
    assert store.is_message_processed("step-1") is True


def test_exception_rolls_back_everything_and_restores_versions(store: SqlWorkflowStore) -> None:
    wf, a, b = stored(store)
    before = snapshot(store.engine)

    with pytest.raises(RuntimeError, match="crash"), store.transaction() as txn:
        a.status = WorkflowStatus.SUCCEEDED
        txn.store_stage(a)
        txn.store_stage(a)  # twice: the second write expects the first one's version
        b.add_task(task("added-in-txn"))
        txn.store_stage(b)
        wf.status = WorkflowStatus.TERMINAL
        txn.update_workflow_status(wf)
        txn.mark_message_processed("step-1")
        assert a.version == 0  # versions move only once the transaction has committed
        raise RuntimeError("crash")

    assert snapshot(store.engine) == before
    assert (a.version, b.version) == (0, 0)
    assert [t.version for t in a.tasks + b.tasks] == [0, 0, 0, 0]
    assert store.is_message_processed("step-1") is False
    assert stage_row_version(store.engine, a.id) == 0
    assert set(task_row_versions(store.engine, a.id).values()) == {0}

    # The restored objects are usable: the next write succeeds from the original versions.
    store.store_stage(a)
    assert a.version == 1


def test_concurrency_error_inside_rolls_back_and_restores_versions(store: SqlWorkflowStore) -> None:
    wf, a, b = stored(store)
    stale_b = store.retrieve(wf.id).stages[1]
    store.store_stage(b)  # stale_b is now one version behind
    before = snapshot(store.engine)

    with pytest.raises(ConcurrencyError), store.transaction() as txn:
        txn.store_stage(a)
        txn.mark_message_processed("step-2")
        wf.status = WorkflowStatus.RUNNING
        txn.update_workflow_status(wf)
        txn.store_stage(stale_b)

    assert snapshot(store.engine) == before
    assert a.version == 0
    assert [t.version for t in a.tasks] == [0, 0]
    assert stale_b.version == 0
    assert b.version == 1
    assert store.is_message_processed("step-2") is False
    assert store.retrieve_execution_summary(wf.id).status is WorkflowStatus.NOT_STARTED


def test_unknown_workflow_inside_rolls_back(store: SqlWorkflowStore) -> None:
    _, a, _ = stored(store)
    before = snapshot(store.engine)

    with pytest.raises(WorkflowNotFoundError), store.transaction() as txn:
        txn.store_stage(a)
        txn.update_workflow_status(workflow(id=new_id()))

    assert snapshot(store.engine) == before
    assert a.version == 0


def test_bad_value_inside_rolls_back(store: SqlWorkflowStore) -> None:
    _, a, b = stored(store)
    before = snapshot(store.engine)
    b.context = {"when": float("nan")}

    with pytest.raises(ValidationError, match=r"stage\.context\['when'\]"), store.transaction() as txn:
        txn.store_stage(a)
        txn.mark_message_processed("step-3")
        txn.store_stage(b)

    assert snapshot(store.engine) == before
    assert (a.version, b.version) == (0, 0)


def test_empty_transaction_commits_nothing(store: SqlWorkflowStore) -> None:
    stored(store)
    before = snapshot(store.engine)

    with store.transaction() as txn:
        assert txn.is_atomic is True

    assert snapshot(store.engine) == before


def test_transaction_can_add_a_new_stage(store: SqlWorkflowStore) -> None:
    wf, a, _ = stored(store)
    added = stage("c", {"b"}, tasks=1)
    wf.add_stage(added)

    with store.transaction() as txn:
        txn.store_stage(added)
        txn.store_stage(a)

    assert [s.ref_id for s in store.retrieve(wf.id).stages] == ["a", "b", "c"]
    assert a.version == 1
    assert added.version == 0


# -- messages pushed inside the transaction (the queue lives in the same database) -------------


def test_pushed_messages_commit_with_the_step(store: SqlWorkflowStore, url: str) -> None:
    queue = create_queue(url)
    wf, a, _ = stored(store)

    with store.transaction(queue) as txn:
        assert txn.is_atomic is True
        txn.store_stage(a)
        txn.push_message(StartWorkflow(execution_id=wf.id))
        txn.push_message(StartWorkflow(execution_id=wf.id), 60)
        txn.mark_message_processed("step-4")

    assert queue.size() == 2
    assert a.version == 1
    assert store.is_message_processed("step-4") is True


def test_pushed_messages_roll_back_with_the_step(store: SqlWorkflowStore, url: str) -> None:
    queue = create_queue(url)
    wf, a, _ = stored(store)
    before = snapshot(store.engine)

    with pytest.raises(RuntimeError), store.transaction(queue) as txn:
        txn.store_stage(a)
        txn.push_message(StartWorkflow(execution_id=wf.id))
        txn.mark_message_processed("step-5")
        raise RuntimeError("crash after the push")

    assert snapshot(store.engine) == before
    assert queue.size() == 0
    assert a.version == 0
