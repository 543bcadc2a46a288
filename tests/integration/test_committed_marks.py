"""A processed mark committed by a store transaction is recorded for the engine's processor
(``stabilize.persistence.committed_marks``), on every dialect.

Stabilize 0.33's queue processor clears the record before a handler, then asks
``consume_committed(message_id)`` and writes its own mark only when that says False. So the
record must say True exactly when the transaction that marked the message committed: after the
commit (never inside the block), not after a rollback, not for a mark that answered False (the
engine rolls such a step back as a duplicate), only on the thread that ran the transaction, and,
in a caller's Session, only once that Session commits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from stabilize.models import WorkflowStatus
from stabilize.models.ids import new_id
from stabilize.persistence.committed_marks import clear_committed, consume_committed
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue import SqlQueue, StartStage
from tests.integration.builders import chain


@pytest.fixture(autouse=True)
def cleared() -> Iterator[None]:
    """Each test starts, as each of the processor's messages does, with nothing recorded."""
    clear_committed()
    yield
    clear_committed()


def test_an_answering_mark_is_recorded_once_its_transaction_commits(store: SqlWorkflowStore) -> None:
    message_id = new_id()
    with store.transaction() as txn:
        assert txn.mark_message_processed(message_id, "StartStage", "wf-1") is True
        assert consume_committed(message_id) is False  # not committed yet
    assert consume_committed(message_id) is True
    assert consume_committed(message_id) is False  # consumed: asked again, it is gone
    assert store.is_message_processed(message_id)


def test_a_step_with_a_mark_records_it_with_the_stage_write_and_message(
    store: SqlWorkflowStore, url: str
) -> None:
    """The engine's step: the mark first (it answers), then the stage and the next message,
    all in one transaction that commits at the end of the block."""
    queue = SqlQueue(url)
    workflow = chain(2, 1)
    store.store(workflow)
    stage = store.retrieve_stage(workflow.stages[0].id)
    message_id = new_id()
    with store.transaction(queue) as txn:
        assert txn.mark_message_processed(message_id, "StartStage", workflow.id)
        stage.status = WorkflowStatus.RUNNING
        txn.store_stage(stage)
        txn.push_message(StartStage(execution_id=workflow.id, stage_id=stage.id))
    assert consume_committed(message_id) is True
    assert store.retrieve_stage(stage.id).status == WorkflowStatus.RUNNING


def test_a_mark_of_a_block_that_raised_is_not_recorded(store: SqlWorkflowStore) -> None:
    message_id = new_id()
    with pytest.raises(RuntimeError, match="handler failed"), store.transaction() as txn:
        assert txn.mark_message_processed(message_id)
        raise RuntimeError("handler failed")
    assert consume_committed(message_id) is False
    assert not store.is_message_processed(message_id)


def test_a_mark_that_existed_already_is_not_recorded(store: SqlWorkflowStore) -> None:
    message_id = new_id()
    store.mark_message_processed(message_id)
    with store.transaction() as txn:
        assert txn.mark_message_processed(message_id) is False
    assert consume_committed(message_id) is False
    # A mark outside a transaction is the processor's own: nothing to record for it either.
    other = new_id()
    store.mark_message_processed(other)
    assert consume_committed(other) is False


def test_a_mark_at_commit_is_recorded_whichever_way_the_step_runs(store: SqlWorkflowStore, url: str) -> None:
    """Alone (one statement), with a stage write (a step statement where the dialect has one,
    a transaction otherwise), and when the mark existed already (it is durable either way)."""
    alone, with_stage, existing = new_id(), new_id(), new_id()
    with store.transaction() as txn:
        txn.mark_processed_at_commit(alone, "StartStage")
        assert consume_committed(alone) is False
    workflow = chain(1, 1)
    store.store(workflow)
    stage = store.retrieve_stage(workflow.stages[0].id)
    stage.status = WorkflowStatus.RUNNING
    with store.transaction(SqlQueue(url)) as txn:
        txn.store_stage(stage)
        txn.push_message(StartStage(execution_id=workflow.id, stage_id=stage.id))
        txn.mark_processed_at_commit(with_stage, "StartStage", workflow.id)
    store.mark_message_processed(existing)
    with store.transaction() as txn:
        txn.mark_processed_at_commit(existing)
    assert [consume_committed(m) for m in (alone, with_stage, existing)] == [True, True, True]
    assert all(store.is_message_processed(m) for m in (alone, with_stage, existing))


def test_a_mark_is_recorded_on_the_thread_that_committed_it(store: SqlWorkflowStore) -> None:
    message_id = new_id()
    seen: list[bool] = []

    def other_thread() -> None:
        with store.transaction() as txn:
            txn.mark_message_processed(message_id)
        seen.append(consume_committed(message_id))

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert seen == [True]
    assert consume_committed(message_id) is False


def test_in_a_callers_session_a_mark_is_recorded_when_the_session_commits(store: SqlWorkflowStore) -> None:
    committed, rolled_back = new_id(), new_id()
    with Session(store.engine) as session, session.begin():
        with store.transaction(session=session) as txn:
            assert txn.mark_message_processed(committed)
        assert consume_committed(committed) is False  # the caller has not committed yet
    assert consume_committed(committed) is True

    with (
        pytest.raises(RuntimeError, match="application failed"),
        Session(store.engine) as session,
        session.begin(),
    ):
        with store.transaction(session=session) as txn:
            assert txn.mark_message_processed(rolled_back)
        raise RuntimeError("application failed")
    assert consume_committed(rolled_back) is False
    assert not store.is_message_processed(rolled_back)
