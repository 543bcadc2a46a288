"""``SqlStoreTransaction``: an engine step's writes, committed together in one lock order."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, suppress
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import CTE, ColumnElement, Connection, Engine, Executable, event, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction

from stabilize.models.stage import StageExecution
from stabilize.models.status import WorkflowStatus
from stabilize.models.workflow import Workflow
from stabilize.persistence import committed_marks
from stabilize.persistence.errors import ValidationError
from stabilize.persistence.sql import claims, mapping, step
from stabilize.persistence.sql.dialects import GenericProfile, Unit
from stabilize.persistence.sql.dialects.base import RowLimit
from stabilize.persistence.sql.engine import same_database
from stabilize.persistence.sql.faults import translated
from stabilize.persistence.sql.images import TaskImages
from stabilize.persistence.sql.rows import WorkflowRow
from stabilize.persistence.sql.step import StepPart
from stabilize.persistence.sql.types import checker
from stabilize.persistence.sql.units import NeedsTransaction
from stabilize.persistence.sql.writes import (
    OnCommit,
    StageWrite,
    WorkflowInsert,
    WorkflowStateUpdate,
    WriteContext,
)
from stabilize.persistence.store.interface import WorkflowNotFoundError
from stabilize.persistence.store.transaction import StoreTransaction

if TYPE_CHECKING:
    from stabilize.queue.interface import Queue
    from stabilize.queue.messages import Message

# The one lock order of every write path: new workflows, then workflow rows, then stages by id,
# then the caller's own statements, queue messages and processed marks. Two steps of one workflow
# then never hold locks the other waits for in the opposite order, so they cannot deadlock.
NEW_WORKFLOW, WORKFLOW, STAGE, EFFECT, MESSAGE, MARK = range(6)


class Write(Protocol):
    """One write of a transaction, prepared (checked and encoded) when it was asked for."""

    @property
    def single(self) -> bool:
        """Whether it is one statement (a lone one may commit by itself: ``Unit.WRITE_ONE``)."""

    def apply(self, context: WriteContext) -> OnCommit | None:
        """Run its statements; return what the commit means for the objects in memory."""

    def step_part(self, profile: GenericProfile, images: TaskImages) -> StepPart | None:
        """The write as CTEs of a step statement (``step``), or None if it cannot be one."""


class PendingPush(Protocol):
    """A message checked and encoded by its queue, to be written in a store transaction."""

    def write(self, connection: Connection) -> None:
        """Insert the message's row on ``connection``, inside its transaction."""

    def step_part(self) -> StepPart:
        """The insert as CTEs of a step statement (``step``)."""

    def committed(self) -> None:
        """Record that the row committed."""


class Outbox(Protocol):
    """A queue whose table lives in the store's database (``stabilize.queue.SqlQueue``): a store
    transaction writes its messages on the transaction's own connection."""

    engine: Engine

    def pending_push(self, message: Message, delay: float = 0) -> PendingPush:
        """Check and encode ``message`` now; write it later with ``PendingPush.write``."""


#: Opens the transaction's database transaction for calls that need an answer while the block
#: runs (``units.Database.held``, or ``within`` a caller's Session).
OpenUnit = Callable[[], AbstractContextManager[Connection]]


@dataclass
class Plan:
    """How a transaction's writes run: the unit of work's kind, and its work."""

    unit: Unit
    run: Callable[[Connection], list[OnCommit]]


class SqlStoreTransaction(StoreTransaction):
    """Everything of one step in one database transaction, queue messages included.

    Each call checks and encodes its values at once (bad input fails the call and nothing is
    written); the statements run when the ``with`` block ends, in lock order, and the whole
    transaction runs again if the database reports a deadlock or serialization failure. A failed
    compare-and-set raises ``ConcurrencyError`` from the end of the block and writes nothing.
    Versions of the stored objects move only once the transaction has committed.

    How the writes run is chosen when the block ends (``plan``): a lone write of one statement as
    that statement (committing by itself where the dialect allows), several (up to
    ``step.MAX_PARTS``) as one statement of data-modifying CTEs where the dialect has them
    (``step``), else a statement per write in one transaction.

    Messages go into ``queue_messages`` in the same transaction, so the new state never exists
    without the message that continues from it, nor the reverse. Given a queue that does not live
    in this database, messages are pushed to it after the commit and ``is_atomic`` is False.

    **Calls that answer** (``mark_message_processed``, ``acquire_claim``, ``lock_admission``,
    ``workflow_status``, ``count_running``, ``buffered_ids``) need the database while the block
    runs: the first of them begins the transaction (on SQLite with its write lock), and it stays
    open until the block ends. The ones that read first write what the block asked for so far,
    so they see it. Such a transaction commits when the block ends and is not run again by the
    store: the block acted on its answers, so a lost race raises ``TransientError`` for the
    caller to retry the block (the engine does).

    Args:
        engine: the store's engine.
        profile: its dialect profile.
        images: the store's task images (``images.TaskImages``).
        queue: where ``push_message`` sends messages, if anywhere.
        limit: the bytes one row may hold on the store's database (``mapping.check_size``).
        open_unit: begins the database transaction for the calls that answer.
    """

    def __init__(
        self,
        engine: Engine,
        profile: GenericProfile,
        images: TaskImages,
        queue: Queue | None,
        limit: RowLimit | None = None,
        open_unit: OpenUnit | None = None,
    ) -> None:
        """Nothing is written yet: each write call records a prepared write, applied when the block
        ends; the calls that answer open the transaction earlier (``open_unit``).
        """
        self._engine = engine
        self._profile = profile
        self._images = images
        self._queue = queue
        self._limit = limit
        self._writes: list[tuple[tuple[int, str, int], Write]] = []
        self._deferred: list[tuple[Message, float]] = []
        self._open_unit = open_unit
        self._unit = ExitStack()
        self._connection: Connection | None = None
        #: What the commit means for objects in memory, of writes already applied.
        self._applied: list[OnCommit] = []
        #: Stage id -> the version its row holds after the writes applied so far in the open
        #: transaction: a stage written again later in the block compares on it.
        self._versions: dict[str, int] = {}

    @property
    def is_atomic(self) -> bool:
        """True: stage writes, workflow status, messages and marks commit together, unless the
        queue lives in another database (then its messages are pushed after the commit)."""
        return self._outbox() is not None or self._queue is None

    def _outbox(self) -> Outbox | None:
        queue: Any = self._queue
        if (
            queue is not None
            and isinstance(getattr(queue, "engine", None), Engine)
            and same_database(queue.engine, self._engine)
            and hasattr(queue, "pending_push")
        ):
            outbox: Outbox = queue
            return outbox
        return None

    def _add(self, rank: int, key: str, write: Write) -> None:
        self._writes.append(((rank, key, len(self._writes)), write))

    # -- the step's writes ------------------------------------------------------------------

    def store_workflow(self, workflow: Workflow) -> None:
        """Insert a new workflow in this transaction, e.g. with the message that starts it.

        Raises:
            ValidationError: a value of the workflow cannot be stored (named by its path).
        """
        self._add(NEW_WORKFLOW, workflow.id, WorkflowInsert.prepare(workflow, self._limit))

    def update_workflow_status(self, workflow: Workflow) -> None:
        """Rewrite the workflow's status, times, cancellation and pause details.

        Raises:
            ValidationError: a value cannot be stored.
        """
        self._add(WORKFLOW, workflow.id, WorkflowStateUpdate.prepare(workflow, self._limit))

    def store_stage(self, stage: StageExecution, expected_phase: str | WorkflowStatus | None = None) -> None:
        """Compare-and-set the stage (on ``version``, and on status with ``expected_phase``) and
        write its changed tasks; insert it if it is not stored yet.

        Raises:
            ValidationError: a value cannot be stored, or ``expected_phase`` is not a status.
        """
        self._add(STAGE, stage.id, StageWrite.prepare(stage, expected_phase, self._images, self._limit))

    def execute(self, statement: Executable) -> None:
        """Run ``statement`` in this transaction: an effect that must commit with the step, or not
        at all (it runs after the step's stage writes, and again if the transaction is retried)."""
        self._add(EFFECT, "", _Effect(statement))

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
        self._add(MESSAGE, "", _Push(outbox.pending_push(message, delay)))

    def mark_processed_at_commit(
        self, message_id: str, handler_type: str | None = None, execution_id: str | None = None
    ) -> None:
        """Record ``message_id`` as processed with this transaction's writes, without an answer
        (idempotent): for a caller that checked ``is_message_processed`` already, and whose step
        then stays one statement where the dialect allows.

        Raises:
            ValidationError: a value cannot be stored.
        """
        values = mapping.processed_message_values(message_id, handler_type, execution_id)
        self._add(MARK, message_id, _Mark(values))

    def set_config_version(self, workflow_id: str, config_version: str | None) -> None:
        """Record the engine configuration's fingerprint the workflow runs under.

        Raises:
            ValidationError: the id or the version cannot be stored.
        """
        values = {
            "id": checker(WorkflowRow.__table__.c.id)(workflow_id, "workflow.id"),
            "config_version": checker(WorkflowRow.__table__.c.config_version)(
                config_version, "workflow.config_version"
            ),
        }
        self._add(WORKFLOW, workflow_id, _ConfigVersion(values))

    # -- calls that answer while the block runs ----------------------------------------------

    def mark_message_processed(
        self, message_id: str, handler_type: str | None = None, execution_id: str | None = None
    ) -> bool:
        """Mark ``message_id`` processed in this transaction, now.

        Returns:
            True when this call made the mark, False when it existed already (committed by
            another delivery, which this one waited for if it was still in flight): the engine
            then rolls its step back as a duplicate delivery.

        Raises:
            ValidationError: a value cannot be stored.
        """
        values = mapping.processed_message_values(message_id, handler_type, execution_id)
        connection = self._now(see_writes=False)
        with translated(self._engine):
            inserted = self._profile.insert_ignore(
                connection, mapping.PROCESSED_TABLE, [values], ("message_id",)
            )
        if inserted != 1:
            return False
        self._applied.append(_recorder(values["message_id"]))
        return True

    def acquire_claim(
        self, execution_id: str, claim_key: str, stage_id: str, steal_if_owner_terminal: bool = False
    ) -> bool:
        """Take the named claim of workflow ``execution_id`` for ``stage_id`` (the engine's
        mutex ``mutex:<key>`` and deferred choice ``choice:<group>``); see ``claims.acquire``.

        Returns:
            True when ``stage_id`` holds the claim: it was free, or already this stage's, or
            (with ``steal_if_owner_terminal``) its holder stage is gone or complete. False when
            another stage holds it: the engine then raises in the block, rolling it back.

        Raises:
            ValidationError: a value cannot be stored.
            WorkflowNotFoundError: no workflow has this id (the transaction can only be rolled
                back now: leave the block with the error).
        """
        claim = claims.claim_values(execution_id, claim_key, stage_id)
        connection = self._now()
        try:
            with translated(self._engine):
                return claims.acquire(connection, self._profile, claim, steal_if_owner_terminal)
        except IntegrityError:  # every value was checked: only the workflow's foreign key fails
            raise WorkflowNotFoundError(execution_id) from None

    def lock_admission(self, key: str) -> None:
        """Hold the admission lock of ``key`` (a pipeline config id) until this transaction
        ends: admissions of one key decide one at a time, each on what the one before
        committed. Call it first in the block, before reading the counts it protects."""
        connection = self._now()
        with translated(self._engine):
            claims.lock_admission(connection, self._profile, key)

    def workflow_status(self, workflow_id: str) -> tuple[str | None, bool]:
        """The workflow's status name and ``is_canceled`` as this transaction sees them;
        ``(None, False)`` when no workflow has this id."""
        statement = select(WorkflowRow.status, WorkflowRow.is_canceled).where(WorkflowRow.id == workflow_id)
        with translated(self._engine):
            row = self._now().execute(statement).first()
        return (None, False) if row is None else (row[0].name, bool(row[1]))

    def count_running(self, pipeline_config_id: str) -> int:
        """How many workflows of the pipeline config are RUNNING."""
        statement = select(func.count()).where(
            WorkflowRow.pipeline_config_id == pipeline_config_id, WorkflowRow.status == WorkflowStatus.RUNNING
        )
        with translated(self._engine):
            return int(self._now().execute(statement).scalar_one())

    def buffered_ids(self, pipeline_config_id: str) -> list[str]:
        """The ids of the pipeline config's BUFFERED workflows, ascending (oldest first: ids
        are ULIDs)."""
        statement = (
            select(WorkflowRow.id)
            .where(
                WorkflowRow.pipeline_config_id == pipeline_config_id,
                WorkflowRow.status == WorkflowStatus.BUFFERED,
            )
            .order_by(WorkflowRow.id)
        )
        with translated(self._engine):
            return list(self._now().execute(statement).scalars())

    def _now(self, see_writes: bool = True) -> Connection:
        """The open transaction's connection, begun on first use; with ``see_writes``, the
        block's writes so far are applied first (in lock order), so what follows reads them."""
        if self._connection is None:
            if self._open_unit is None:
                raise RuntimeError("this transaction cannot answer while its block runs")
            self._connection = self._unit.enter_context(self._open_unit())
        if see_writes and self._writes:
            with translated(self._engine):
                self._applied.extend(self._run_writes(self._connection, versions=self._versions))
            self._writes.clear()
        return self._connection

    # -- what the store calls ----------------------------------------------------------------

    @property
    def empty(self) -> bool:
        """Whether the block asked for nothing to be written."""
        return not self._writes and not self._deferred

    @property
    def open(self) -> bool:
        """Whether a call that answers began the database transaction (``finish`` ends it)."""
        return self._connection is not None

    def finish(self) -> list[OnCommit]:
        """Write the rest of the block's writes in the open transaction, commit it, and return
        what to do now that it committed (in a caller's Session: once that commits)."""
        connection = self._connection
        assert connection is not None
        with self._unit:
            on_commit = self._applied
            # A stage written before a read moved its row's version already: a step statement
            # would compare on the version in memory, so such writes run one by one. A refused
            # guard of two leaves the other's update written, and this transaction cannot be
            # rolled back and run again: one guard at most, or a statement per write.
            again = any(rank == STAGE and key in self._versions for (rank, key, _), _ in self._writes)
            parts = None if again else self._step_parts()
            if parts is not None and step.guards(parts) > 1:
                parts = None
            with translated(self._engine):
                written = None
                if parts is not None:
                    with suppress(NeedsTransaction):  # refused, having written nothing
                        written = step.run(connection, parts)
                if written is None:
                    written = self._run_writes(connection, versions=self._versions)
            on_commit.extend(written)
        return self._after(on_commit)

    def abandon(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        """Roll the open transaction back: the block raised ``error``."""
        self._unit.__exit__(kind, error, trace)

    def _ordered(self) -> list[Write]:
        return [write for _, write in sorted(self._writes, key=lambda entry: entry[0])]

    def plan(self) -> Plan:
        """How the writes run (see the class docstring). A plan whose unit is ``Unit.WRITE_ONE``
        may raise ``NeedsTransaction``, having written nothing: then run ``apply`` as a
        ``Unit.WRITE``."""
        writes = self._ordered()
        if len(writes) == 1 and writes[0].single:
            return Plan(Unit.WRITE_ONE, lambda connection: self.apply(connection, single=True))
        parts = self._step_parts()
        if parts is not None:
            unit = Unit.WRITE_ONE if step.guards(parts) <= 1 else Unit.WRITE
            return Plan(unit, lambda connection: self._after(step.run(connection, parts)))
        return Plan(Unit.WRITE, self.apply)

    def _step_parts(self) -> list[StepPart] | None:
        """The writes as parts of one step statement, or None where they cannot be one."""
        if self._profile.step_insert is None or not self._writes or len(self._writes) > step.MAX_PARTS:
            return None
        # A row written twice in one statement takes one of the writes only (PostgreSQL docs,
        # "Data-Modifying Statements in WITH"): a step that writes a row twice runs write by write.
        keyed = [(rank, key) for (rank, key, _), _ in self._writes if rank in (WORKFLOW, STAGE, MARK)]
        if len(keyed) != len(set(keyed)):
            return None
        parts = [write.step_part(self._profile, self._images) for write in self._ordered()]
        known = [part for part in parts if part is not None]
        return known if len(known) == len(parts) else None

    def apply(self, connection: Connection, single: bool = False) -> list[OnCommit]:
        """Run every write in lock order on ``connection``, a statement or a few each; return what
        to do once the commit succeeded. ``single``: the writes run as ``Unit.WRITE_ONE``."""
        return self._after(self._run_writes(connection, single))

    def _run_writes(
        self, connection: Connection, single: bool = False, versions: dict[str, int] | None = None
    ) -> list[OnCommit]:
        """Apply the writes in lock order. ``versions``: the open transaction's stage versions
        (kept across its runs); a unit that may run again starts afresh each attempt."""
        context = WriteContext(connection, self._profile, self._images, single=single)
        if versions is not None:
            context.versions = versions
        on_commit = []
        for write in self._ordered():
            after = write.apply(context)
            if after is not None:
                on_commit.append(after)
        return on_commit

    def _after(self, on_commit: list[OnCommit]) -> list[OnCommit]:
        queue, deferred = self._queue, list(self._deferred)
        if deferred and queue is not None:
            on_commit.append(lambda: _push_after(queue, deferred))
        return on_commit


@dataclass
class _Effect:
    """A caller's statement (``execute``): any number of rows, never part of a step statement."""

    statement: Executable
    single = False

    def apply(self, context: WriteContext) -> OnCommit | None:
        context.connection.execute(self.statement)
        return None

    def step_part(self, profile: GenericProfile, images: TaskImages) -> StepPart | None:
        return None


@dataclass
class _ConfigVersion:
    """``set_config_version``: one workflow's fingerprint, by a statement of its own."""

    values: dict[str, Any]
    single = True

    def apply(self, context: WriteContext) -> OnCommit | None:
        context.connection.execute(
            update(WorkflowRow)
            .where(WorkflowRow.id == self.values["id"])
            .values(config_version=self.values["config_version"])
        )
        return None

    def step_part(self, profile: GenericProfile, images: TaskImages) -> StepPart | None:
        return None


@dataclass
class _Push:
    """A message for the queue's table, written by the queue's own statements."""

    pending: PendingPush
    single = True

    def apply(self, context: WriteContext) -> OnCommit | None:
        self.pending.write(context.connection)
        return self.pending.committed

    def step_part(self, profile: GenericProfile, images: TaskImages) -> StepPart | None:
        return self.pending.step_part()


@dataclass
class _Mark:
    """A processed mark: inserted unless the message id is marked already."""

    values: dict[str, Any]
    single = True

    def apply(self, context: WriteContext) -> OnCommit | None:
        context.profile.insert_ignore(
            context.connection, mapping.PROCESSED_TABLE, [self.values], ("message_id",)
        )
        return _recorder(self.values["message_id"])

    def step_part(self, profile: GenericProfile, images: TaskImages) -> StepPart | None:
        recorder = _recorder(self.values["message_id"])
        return StepPart(_MarkCtes(profile.step_insert), self.values, lambda counts, connection: recorder)


def _recorder(message_id: str) -> OnCommit:
    """Once the transaction has committed, the mark is durable: tell the engine's processor on
    this thread (``committed_marks``), so it does not write the mark again."""
    return lambda: committed_marks.record_committed((message_id,))


@dataclass(frozen=True)
class _MarkCtes:
    """A processed mark as a CTE: ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``."""

    insert: Any

    guarded = False

    def guard(self, prefix: str) -> CTE | None:
        return None

    def dependents(self, prefix: str, ready: ColumnElement[bool]) -> list[CTE]:
        table = mapping.PROCESSED_TABLE
        columns = [c.key for c in table.columns]
        values = select(*(step.bind(prefix, table.c[c]) for c in columns)).where(ready)
        statement = (
            self.insert(table)
            .from_select(columns, values)
            .on_conflict_do_nothing(index_elements=["message_id"])
            .returning(table.c.message_id)
        )
        return [statement.cte(f"{prefix}mark")]


def _push_after(queue: Queue, messages: list[tuple[Message, float]]) -> None:
    for message, delay in messages:
        queue.push(message, delay)


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
    """Refuse a Session that is not on the store's engine (its pool): its writes and ours would be
    two transactions, maybe on two databases (two engines on ``sqlite:///:memory:`` are two), and
    atomicity a promise nobody keeps."""
    if not isinstance(session, Session):
        raise ValidationError("session", f"must be a SQLAlchemy Session, got {type(session).__name__}")
    bind = session.get_bind()
    bound = bind.engine if isinstance(bind, Connection) else bind
    if getattr(bound, "pool", None) is not engine.pool:
        problem = "is bound to another database (engine) than the store's: bind it to store.engine"
        raise ValidationError("session", problem)
