"""A step whose transaction was opened by a call that answers (``txn.mark_message_processed``,
``acquire_claim``, ...) writes the rest of its block when it ends, in that same transaction.

That transaction cannot be rolled back and run again, so the end of the block must never leave
half a step written. The case found by upstream's engine (a synthetic stage added while its
parent is updated, on PostgreSQL): one step statement with two compare-and-set guards, one of
them a stage not stored yet, would write the parent's update and refuse the new stage; the block
then wrote the parent a second time and lost the new stage. Proven here on every dialect.
"""

from __future__ import annotations

from stabilize.models import StageExecution, SyntheticStageOwner, WorkflowStatus
from stabilize.models.ids import new_id
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue import SqlQueue, StartStage
from tests.integration.builders import chain


def test_an_update_and_a_new_stage_after_an_answer_are_both_written(
    store: SqlWorkflowStore, url: str
) -> None:
    queue = SqlQueue(url)
    queue.clear()
    workflow = chain(2, 1)
    store.store(workflow)
    loaded = store.retrieve(workflow.id)
    parent = loaded.stages[1]
    parent.status = WorkflowStatus.RUNNING
    before = StageExecution.create_synthetic("prepare", "Prepare", parent, SyntheticStageOwner.STAGE_BEFORE)
    loaded.add_stage(before)
    with store.transaction(queue) as txn:
        assert txn.mark_message_processed(new_id(), "StartStage", workflow.id) is True
        txn.store_stage(parent)
        txn.store_stage(before)
        txn.push_message(StartStage(execution_id=workflow.id, stage_id=before.id))

    again = store.retrieve(workflow.id)
    assert [s.ref_id for s in again.stages] == ["s0", "s1", before.ref_id]
    assert again.stages[1].status is WorkflowStatus.RUNNING and again.stages[1].version == 1
    assert again.stages[2].parent_stage_id == parent.id
    assert parent.version == 1 and before.version == 0  # in memory, as committed
    assert queue.size() == 1


def test_two_updates_after_an_answer_commit_together(store: SqlWorkflowStore) -> None:
    workflow = chain(3, 2)
    store.store(workflow)
    loaded = store.retrieve(workflow.id)
    first, second = loaded.stages[0], loaded.stages[1]
    first.status, second.status = WorkflowStatus.SUCCEEDED, WorkflowStatus.RUNNING
    first.tasks[0].status = WorkflowStatus.SUCCEEDED
    with store.transaction() as txn:
        assert txn.workflow_status(workflow.id) == ("NOT_STARTED", False)
        txn.store_stage(first)
        txn.store_stage(second)
    again = store.retrieve(workflow.id)
    assert [s.status for s in again.stages[:2]] == [WorkflowStatus.SUCCEEDED, WorkflowStatus.RUNNING]
    assert again.stages[0].tasks[0].status is WorkflowStatus.SUCCEEDED
    assert [s.version for s in again.stages] == [1, 1, 0]
