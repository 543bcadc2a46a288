"""The transactional outbox: store writes, pushed messages and processed marks commit together.

Also the consumer side of exactly-once: a consumer marks a message processed in the transaction
that applies its effect, so a redelivery (after a crash before the ack) is recognised and skipped.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from datetime import timedelta
from typing import Literal

import pytest
from sqlalchemy import func, select

from stabilize.errors import ConcurrencyError
from stabilize.models import StageExecution, Workflow
from stabilize.models.ids import now_ms
from stabilize.models.status import WorkflowStatus
from stabilize.persistence.sql.rows import ProcessedMessageRow
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue import CompleteStage, Message, SqlQueue, StartStage
from tests.conftest import FILE_OR_SERVER_DIALECTS
from tests.integration.builders import snapshot

LOCK = timedelta(seconds=30)
LOCK_MS = 30_000


def stored_stage(store: SqlWorkflowStore) -> tuple[Workflow, StageExecution]:
    stage = StageExecution.create("test", "Stage", "a", context={"applied": 0})
    workflow = Workflow.create("app", "outbox", [stage])
    store.store(workflow)
    return workflow, stage


def marks(store: SqlWorkflowStore) -> int:
    with store.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(ProcessedMessageRow)).scalar_one()


# -- atomic transactions --------------------------------------------------------------------------


def test_stage_status_message_and_mark_commit_together(store: SqlWorkflowStore, url: str) -> None:
    workflow, stage = stored_stage(store)
    queue = SqlQueue(url)
    with store.transaction(queue) as txn:
        assert txn.is_atomic
        stage.context["applied"] = 1
        txn.store_stage(stage)
        workflow.status = WorkflowStatus.RUNNING
        txn.update_workflow_status(workflow)
        txn.push_message(StartStage(execution_id=workflow.id, stage_id=stage.id), 0)
        txn.mark_message_processed("incoming-1", "StartWorkflow", workflow.id)
    assert store.retrieve_stage(stage.id).version == 1
    assert store.retrieve(workflow.id).status == WorkflowStatus.RUNNING
    assert store.is_message_processed("incoming-1")
    message = queue.poll_one()
    assert isinstance(message, StartStage) and message.stage_id == stage.id


def test_a_transaction_without_a_queue_refuses_a_push_and_writes_nothing(store: SqlWorkflowStore) -> None:
    """The queue a message goes to is the caller's to name, as upstream's transactions ask."""
    workflow, stage = stored_stage(store)
    before = snapshot(store.engine)
    with pytest.raises(ValueError, match="no queue"), store.transaction() as txn:
        txn.store_stage(stage)
        txn.push_message(StartStage(execution_id=workflow.id, stage_id=stage.id))
    assert snapshot(store.engine) == before


def test_a_delayed_push_in_a_transaction_is_delayed(store: SqlWorkflowStore, url: str) -> None:
    workflow, stage = stored_stage(store)
    queue = SqlQueue(url)
    with store.transaction(queue) as txn:
        txn.push_message(StartStage(execution_id=workflow.id, stage_id=stage.id), 60)
    assert queue.poll_one() is None
    later = SqlQueue(url, clock=lambda: now_ms() + 60_001)
    assert later.poll_one() is not None


@pytest.mark.parametrize("failure", ["exception", "concurrency"])
def test_an_exception_rolls_everything_back(
    store: SqlWorkflowStore, url: str, failure: Literal["exception", "concurrency"]
) -> None:
    workflow, stage = stored_stage(store)
    queue = SqlQueue(url)
    stale = store.retrieve_stage(stage.id)
    store.store_stage(store.retrieve_stage(stage.id))  # someone else moves the row to version 1
    expected = ConcurrencyError if failure == "concurrency" else RuntimeError
    with pytest.raises(expected), store.transaction(queue) as txn:
        txn.push_message(StartStage(execution_id=workflow.id, stage_id=stage.id))
        txn.mark_message_processed("incoming-1")
        workflow.status = WorkflowStatus.TERMINAL
        txn.update_workflow_status(workflow)
        if failure == "concurrency":
            txn.store_stage(stale)  # version 0 against the row's 1: compare-and-set fails
        else:
            raise RuntimeError("handler failed")
    assert queue.size() == 0
    assert not store.is_message_processed("incoming-1")
    assert store.retrieve(workflow.id).status == WorkflowStatus.NOT_STARTED
    assert store.retrieve_stage(stage.id).version == 1
    assert stale.version == 0


# -- exactly-once effects -------------------------------------------------------------------------

Crash = Literal["none", "before_commit", "after_commit"]


def consume(store: SqlWorkflowStore, queue: SqlQueue, crash: Crash = "none") -> Message | None:
    """The engine's consumer step: skip what was processed, else apply the effect, mark it
    processed in the same transaction, then ack. ``crash`` kills the process at a chosen point."""
    message = queue.poll_one()
    if message is None:
        return None
    if store.is_message_processed(message.message_id):
        queue.ack(message)
        return message
    stage_id = message.stage_id  # type: ignore[attr-defined]
    stage = store.retrieve_stage(stage_id)
    with store.transaction(queue) as txn:
        stage.context["applied"] += 1
        txn.store_stage(stage)
        txn.mark_message_processed(message.message_id, type(message).__name__)
        if crash == "before_commit":
            os.kill(os.getpid(), signal.SIGKILL)
    if crash == "after_commit":
        os.kill(os.getpid(), signal.SIGKILL)
    queue.ack(message)
    return message


def test_a_redelivered_processed_message_is_skipped(store: SqlWorkflowStore, url: str) -> None:
    workflow, stage = stored_stage(store)
    clock = [now_ms()]
    queue = SqlQueue(url, lock_duration=LOCK, clock=lambda: clock[0])
    queue.push(CompleteStage(execution_id=workflow.id, stage_id=stage.id))
    delivered = queue.poll_one()
    assert delivered is not None
    with store.transaction(queue) as txn:  # effect and mark commit, then the consumer "dies"
        stage.context["applied"] += 1
        txn.store_stage(stage)
        txn.mark_message_processed(delivered.message_id)
    clock[0] += LOCK_MS
    redelivered = consume(store, queue)
    assert redelivered is not None and redelivered.message_id == delivered.message_id
    assert redelivered.attempts == 2
    assert store.retrieve_stage(stage.id).context["applied"] == 1
    assert queue.size() == 0


def _die_while_consuming(url: str, crash: Crash) -> None:
    store = SqlWorkflowStore(url)
    consume(store, SqlQueue(url, lock_duration=LOCK), crash)


@pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS, indirect=True)
@pytest.mark.parametrize("crash", ["before_commit", "after_commit"])
def test_a_consumer_that_dies_holding_a_message(store: SqlWorkflowStore, url: str, crash: Crash) -> None:
    """SIGKILL before the commit: the effect is lost with the process and applied on redelivery.
    SIGKILL after the commit but before the ack: the mark makes the redelivery a no-op."""
    workflow, stage = stored_stage(store)
    queue = SqlQueue(url, lock_duration=LOCK)
    queue.push(CompleteStage(execution_id=workflow.id, stage_id=stage.id))

    child = multiprocessing.get_context("spawn").Process(target=_die_while_consuming, args=(url, crash))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL

    assert queue.size() == 1
    assert queue.poll_one() is None  # still locked by the dead consumer
    assert store.retrieve_stage(stage.id).context["applied"] == (1 if crash == "after_commit" else 0)
    after_lapse = SqlQueue(url, lock_duration=LOCK, clock=lambda: now_ms() + LOCK_MS)
    redelivered = consume(store, after_lapse)
    assert redelivered is not None and redelivered.attempts == 2
    assert store.retrieve_stage(stage.id).context["applied"] == 1
    assert marks(store) == 1
    assert queue.size() == 0
