"""``SqlStoreTransaction``: an engine step's writes, committed together in one lock order."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, Engine, Executable, event
from sqlalchemy.orm import Session, SessionTransaction

from stabilize.errors import ValidationError
from stabilize.models.stage import StageExecution
from stabilize.models.status import WorkflowStatus
from stabilize.models.workflow import Workflow
from stabilize.persistence.sql import mapping
from stabilize.persistence.sql.dialects import GenericProfile, Unit
from stabilize.persistence.sql.images import TaskImages
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

Apply = Callable[[WriteContext], OnCommit | None]

# The one lock order of every write path: new workflows, then workflow rows, then stages by id,
# then the caller's own statements, queue messages and processed marks. Two steps of one workflow
# then never hold locks the other waits for in the opposite order, so they cannot deadlock.
NEW_WORKFLOW, WORKFLOW, STAGE, EFFECT, MESSAGE, MARK = range(6)


class PendingPush(Protocol):
    """A message checked and encoded by its queue, to be written in a store transaction."""

    def write(self, connection: Connection) -> None:
        """Insert the message's row on ``connection``, inside its transaction."""

    def committed(self) -> None:
        """Record that the row committed."""


class Outbox(Protocol):
    """A queue whose table lives in the store's database (``stabilize.queue.SqlQueue``): a store
    transaction writes its messages on the transaction's own connection."""

    engine: Engine

    def pending_push(self, message: Message, delay: float = 0) -> PendingPush:
        """Check and encode ``message`` now; write it later with ``PendingPush.write``."""


class SqlStoreTransaction(StoreTransaction):
    """Everything of one step in one database transaction, queue messages included.

    Each call checks and encodes its values at once (bad input fails the call and nothing is
    written); the statements run when the ``with`` block ends, in lock order, and the whole
    transaction runs again if the database reports a deadlock or serialization failure. A failed
    compare-and-set raises ``ConcurrencyError`` from the end of the block and writes nothing.
    Versions of the stored objects move only once the transaction has committed.

    Messages go into ``queue_messages`` in the same transaction, so the new state never exists
    without the message that continues from it, nor the reverse. Given a queue that does not live
    in this database, messages are pushed to it after the commit and ``is_atomic`` is False.

    Args:
        engine: the store's engine.
        profile: its dialect profile.
        images: the store's task images (``images.TaskImages``).
        queue: where ``push_message`` sends messages, if anywhere.
    """

    def __init__(
        self, engine: Engine, profile: GenericProfile, images: TaskImages, queue: Queue | None
    ) -> None:
        self._engine = engine
        self._profile = profile
        self._images = images
        self._queue = queue
        self._writes: list[tuple[tuple[int, str, int], Apply]] = []
        #: Whether every write so far is one statement (then a lone one is ``Unit.WRITE_ONE``).
        self._singles: list[bool] = []
        self._deferred: list[tuple[Message, float]] = []

    @property
    def is_atomic(self) -> bool:
        """True: stage writes, workflow status, messages and marks commit together, unless the
        queue lives in another database (then its messages are pushed after the commit)."""
        return self._outbox() is not None or self._queue is None

    def _outbox(self) -> Outbox | None:
        queue: Any = self._queue
        if (
            queue is not None
            and getattr(queue, "engine", None) is self._engine
            and hasattr(queue, "pending_push")
        ):
            outbox: Outbox = queue
            return outbox
        return None

    def _add(self, rank: int, key: str, apply: Apply, single: bool = False) -> None:
        self._writes.append(((rank, key, len(self._writes)), apply))
        self._singles.append(single)

    # -- the step's writes ------------------------------------------------------------------

    def store_workflow(self, workflow: Workflow) -> None:
        """Insert a new workflow in this transaction, e.g. with the message that starts it.

        Raises:
            ValidationError: a value of the workflow cannot be stored (named by its path).
        """
        self._add(NEW_WORKFLOW, workflow.id, WorkflowInsert.prepare(workflow).apply)

    def update_workflow_status(self, workflow: Workflow) -> None:
        """Rewrite the workflow's status, times, cancellation and pause details.

        Raises:
            ValidationError: a value cannot be stored.
        """
        self._add(WORKFLOW, workflow.id, WorkflowStateUpdate.prepare(workflow).apply, single=True)

    def store_stage(self, stage: StageExecution, expected_phase: str | WorkflowStatus | None = None) -> None:
        """Compare-and-set the stage (on ``version``, and on status with ``expected_phase``) and
        write its changed tasks; insert it if it is not stored yet.

        Raises:
            ValidationError: a value cannot be stored, or ``expected_phase`` is not a status.
        """
        write = StageWrite.prepare(stage, expected_phase, self._images)
        self._add(STAGE, stage.id, write.apply, single=write.single)

    def execute(self, statement: Executable) -> None:
        """Run ``statement`` in this transaction: an effect that must commit with the step, or not
        at all (it runs after the step's stage writes, and again if the transaction is retried)."""
        self._add(EFFECT, "", lambda context: _execute(context, statement))

    def push_message(self, message: Message, delay: float = 0) -> None:
        """Queue ``message`` with this transaction (after ``delay`` seconds).

        Raises:
            ValidationError: the message cannot be stored.
            ValueError: the transaction has no queue.
        """
        outbox = self._outbox()
        if outbox is None:
            if self._queue is None:
                raise ValueError("queue: this transaction has no queue to push messages to")
            self._deferred.append((message, delay))
            return
        pending = outbox.pending_push(message, delay)
        self._add(MESSAGE, "", lambda context: _push(context, pending), single=True)

    def mark_message_processed(
        self, message_id: str, handler_type: str | None = None, execution_id: str | None = None
    ) -> None:
        """Record ``message_id`` as processed when this transaction commits (idempotent)."""
        values = mapping.processed_message_values(message_id, handler_type, execution_id)
        self._add(MARK, message_id, lambda context: _mark(context, values), single=True)

    # -- what the store calls ----------------------------------------------------------------

    @property
    def empty(self) -> bool:
        """Whether the block asked for nothing to be written."""
        return not self._writes and not self._deferred

    @property
    def unit(self) -> Unit:
        """``Unit.WRITE_ONE`` for a lone write of one statement (it may commit by itself), else
        ``Unit.WRITE``."""
        return Unit.WRITE_ONE if self._singles == [True] and not self._deferred else Unit.WRITE

    def apply(self, connection: Connection, single: bool = False) -> list[OnCommit]:
        """Run every write in lock order on ``connection``; return what to do once the commit
        succeeded. ``single``: the writes run as ``Unit.WRITE_ONE`` (see ``unit``)."""
        context = WriteContext(connection, self._profile, self._images, single=single)
        on_commit = []
        for _, apply in sorted(self._writes, key=lambda write: write[0]):
            after = apply(context)
            if after is not None:
                on_commit.append(after)
        queue, deferred = self._queue, list(self._deferred)
        if deferred and queue is not None:
            on_commit.append(lambda: _push_after(queue, deferred))
        return on_commit


def _execute(context: WriteContext, statement: Executable) -> None:
    context.connection.execute(statement)


def _push(context: WriteContext, pending: PendingPush) -> OnCommit:
    pending.write(context.connection)
    return pending.committed


def _push_after(queue: Queue, messages: list[tuple[Message, float]]) -> None:
    for message, delay in messages:
        queue.push(message, delay)


def _mark(context: WriteContext, values: dict[str, Any]) -> None:
    context.profile.insert_ignore(context.connection, mapping.PROCESSED_TABLE, [values], ("message_id",))


# -- a caller's Session ---------------------------------------------------------------------------

_PENDING = "stabilize_on_commit"


def after_caller_commits(session: Session, actions: list[OnCommit]) -> None:
    """Run ``actions`` once the caller's ``session`` commits its transaction; drop them if that
    transaction rolls back or is closed instead (SQLAlchemy session events, attached once per
    Session)."""
    if not actions:
        return
    if _PENDING not in session.info:
        session.info[_PENDING] = []
        event.listen(session, "after_commit", _run_pending)
        event.listen(session, "after_transaction_end", _drop_pending)
    session.info[_PENDING].extend(actions)


def _run_pending(session: Session) -> None:
    actions, session.info[_PENDING] = session.info[_PENDING], []
    for action in actions:
        action()


def _drop_pending(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info[_PENDING] = []


def check_joinable(session: Session, engine: Engine) -> None:
    """Refuse a Session that is not on the store's database: its writes and ours would be two
    transactions, and atomicity a promise nobody keeps."""
    if not isinstance(session, Session):
        raise ValidationError("session", f"must be a SQLAlchemy Session, got {type(session).__name__}")
    bind = session.get_bind()
    bound = bind.engine if isinstance(bind, Connection) else bind
    if bound is not engine and getattr(bound, "url", None) != engine.url:
        raise ValidationError("session", "is bound to another database than the store's")
