"""``SqlStoreTransaction``: an engine step's writes, committed together in one lock order."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Executable

from stabilize.models.stage import StageExecution
from stabilize.models.workflow import Workflow
from stabilize.persistence.sql import mapping
from stabilize.persistence.sql.rows import ProcessedMessageRow, table_of
from stabilize.persistence.sql.writes import (
    OnCommit,
    StageWrite,
    WorkflowInsert,
    WorkflowStateUpdate,
    WriteContext,
)
from stabilize.persistence.store.transaction import StoreTransaction

if TYPE_CHECKING:
    from stabilize.queue.interface import Queue
    from stabilize.queue.messages import Message
    from stabilize.queue.sql import PendingPush

Apply = Callable[[WriteContext], OnCommit | None]

# The one lock order of every write path: new workflows, then workflow rows, then stages by id,
# then the caller's own statements, queue messages and processed marks. Two steps of one workflow
# then never hold locks the other waits for in the opposite order, so they cannot deadlock.
NEW_WORKFLOW, WORKFLOW, STAGE, EFFECT, MESSAGE, MARK = range(6)


class SqlStoreTransaction(StoreTransaction):
    """Everything of one step in one database transaction, queue messages included.

    Each call validates and converts its values at once (bad input fails the call and nothing is
    written); the statements run when the ``with`` block ends, in lock order, and the whole
    transaction runs again if the database reports a deadlock or serialization failure. A failed
    compare-and-set raises ``ConcurrencyError`` from the end of the block and writes nothing.
    Versions of the stored objects move only once the transaction has committed.

    Messages go into ``queue_messages`` in the same transaction, so the new state never exists
    without the message that continues from it, nor the reverse. Given a queue that does not live
    in this database, messages are pushed to it after the commit and ``is_atomic`` is False.
    """

    def __init__(self, engine_id: object, queue: Queue | None) -> None:
        self._engine_id = engine_id
        self._queue = queue
        self._writes: list[tuple[tuple[int, str, int], Apply]] = []
        self._deferred: list[tuple[Message, float]] = []
        #: Whether the caller handed in statements of its own (``execute``): they need a Core
        #: connection, where the store's own writes run on the driver's cursor.
        self.has_effects = False

    @property
    def is_atomic(self) -> bool:
        return self._foreign_queue() is None

    def _foreign_queue(self) -> Queue | None:
        queue = self._queue
        if queue is None or getattr(queue, "engine", None) is self._engine_id:
            return None
        return queue

    def _add(self, rank: int, key: str, apply: Apply) -> None:
        self._writes.append(((rank, key, len(self._writes)), apply))

    # -- the step's writes ------------------------------------------------------------------

    def store_workflow(self, workflow: Workflow) -> None:
        """Insert a new workflow in this transaction, e.g. with the message that starts it."""
        self._add(NEW_WORKFLOW, workflow.id, WorkflowInsert.prepare(workflow).apply)

    def update_workflow_status(self, workflow: Workflow) -> None:
        self._add(WORKFLOW, workflow.id, WorkflowStateUpdate.prepare(workflow).apply)

    def store_stage(self, stage: StageExecution, expected_phase: str | None = None) -> None:
        self._add(STAGE, stage.id, StageWrite.prepare(stage, expected_phase).apply)

    def execute(self, statement: Executable) -> None:
        """Run ``statement`` in this transaction: an effect that must commit with the step, or not
        at all (it runs after the step's stage writes, and again if the transaction is retried)."""
        self.has_effects = True
        self._add(EFFECT, "", lambda context: _execute(context, statement))

    def push_message(self, message: Message, delay: float = 0) -> None:
        if self._foreign_queue() is not None:
            self._deferred.append((message, delay))
            return
        # Imported here: stabilize.queue.sql itself imports this package (engine, rows).
        from stabilize.queue.sql import prepare_push

        pending = prepare_push(message, delay)
        self._add(MESSAGE, "", lambda context: _push(context, pending))

    def mark_message_processed(
        self, message_id: str, handler_type: str | None = None, execution_id: str | None = None
    ) -> None:
        values = mapping.processed_message_values(message_id, handler_type, execution_id)
        self._add(MARK, message_id, lambda context: _mark(context, values))

    # -- what the store calls ----------------------------------------------------------------

    def apply(self, context: WriteContext) -> list[OnCommit]:
        """Run every write in lock order; return what to do once the commit succeeded."""
        on_commit = []
        for _, apply in sorted(self._writes, key=lambda write: write[0]):
            after = apply(context)
            if after is not None:
                on_commit.append(after)
        return on_commit

    def after_commit(self) -> None:
        queue = self._foreign_queue()
        if queue is not None:
            for message, delay in self._deferred:
                queue.push(message, delay)


def _execute(context: WriteContext, statement: Executable) -> None:
    assert context.connection is not None, "a transaction with effects runs on a Core connection"
    context.connection.execute(statement)


def _push(context: WriteContext, pending: PendingPush) -> OnCommit:
    pending.apply(context.cursor)
    return pending.committed


def _mark(context: WriteContext, values: dict[str, Any]) -> None:
    context.profile.insert_ignore(context.cursor, table_of(ProcessedMessageRow), [values], ("message_id",))
