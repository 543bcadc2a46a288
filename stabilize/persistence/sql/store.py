"""The one store, for every dialect: each public call is one unit of work (``units.Database``)."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    URL,
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stabilize.models.stage import StageExecution
from stabilize.models.status import COMPLETED_STATUSES, WorkflowStatus
from stabilize.models.workflow import Workflow
from stabilize.persistence.errors import DatabaseUnavailableError, DuplicateError, ValidationError
from stabilize.persistence.ids import now_ms
from stabilize.persistence.sql import maintenance, mapping, queries, signals
from stabilize.persistence.sql.dialects import Unit
from stabilize.persistence.sql.dialects.base import rowcount
from stabilize.persistence.sql.engine import get_engine, mask
from stabilize.persistence.sql.faults import RetryPolicy, translated
from stabilize.persistence.sql.health import HealthReport, check_health, database_is_healthy
from stabilize.persistence.sql.images import TaskImages, image_of_row
from stabilize.persistence.sql.lineage import merge_outputs, topological_order
from stabilize.persistence.sql.maintenance import Live
from stabilize.persistence.sql.migrate import ensure_current, upgrade
from stabilize.persistence.sql.queries import StageSelection
from stabilize.persistence.sql.rows import QueueMessageRow, StageRow, WorkflowRow
from stabilize.persistence.sql.transaction import (
    OpenUnit,
    SqlStoreTransaction,
    after_caller_commits,
    check_joinable,
)
from stabilize.persistence.sql.types import checker
from stabilize.persistence.sql.units import Database, NeedsTransaction
from stabilize.persistence.store.interface import WorkflowCriteria, WorkflowNotFoundError, WorkflowStore

if TYPE_CHECKING:
    from stabilize.queue.interface import Queue

#: The one queue table whose messages' processed marks this store keeps.
_QUEUE_TABLE = QueueMessageRow.__tablename__
#: Stage rows per transaction of ``cleanup_buffered_signals``.
_BATCH = 500
#: Seconds ``is_healthy`` waits by default: a probe must answer fast, up or down.
HEALTH_TIMEOUT = 2.0
_WORKFLOWS = mapping.WORKFLOWS.table
_PROCESSED = mapping.PROCESSED_TABLE
_IS_PROCESSED = select(_PROCESSED.c.message_id).where(_PROCESSED.c.message_id == bindparam("message_id"))
_ANCESTOR_OUTPUTS = {lateral: queries.ancestor_outputs_and_edges(lateral) for lateral in (False, True)}
_COUNT_BY_APPLICATION = (
    select(func.count()).select_from(_WORKFLOWS).where(_WORKFLOWS.c.application == bindparam("application"))
)


class SqlWorkflowStore(WorkflowStore):
    """Workflow persistence on any SQLAlchemy database: SQLite, PostgreSQL, MySQL/MariaDB.

    Every public method is one unit of work in a SQLAlchemy ``Session`` (see ``units``): one
    transaction, every statement a SQLAlchemy expression on the Session's connection, errors
    translated and races retried in one place.

    Args:
        connection: a URL (any SQLAlchemy URL, ``postgres://...``, or a bare SQLite file path)
            or an existing ``Engine``.
        create_tables: upgrade the schema to the newest migration first.
        engine_options: extra ``create_engine`` keyword arguments (pool size, ``connect_args``
            merged into the profile's).
        retry_policy: how often a transaction that lost a deadlock or serialization race runs
            again within the call's deadline (a failed compare-and-set never does).
        operation_timeout: the deadline of every call, in seconds (default 10): connecting,
            network reads, lock waits and reruns together. A call past it raises
            ``DatabaseUnavailableError`` (``OperationTimeoutError``) or ``LockTimeoutError`` and
            writes nothing. Stores and queues of one URL share an engine per timeout.

    Raises:
        SchemaError: the database is behind this code's migrations and ``create_tables`` is False.
    """

    def __init__(
        self,
        connection: str | URL | Engine,
        create_tables: bool = False,
        *,
        engine_options: dict[str, Any] | None = None,
        retry_policy: RetryPolicy | None = None,
        operation_timeout: float | None = None,
    ) -> None:
        """Open (or reuse) the engine of ``connection`` and check the schema, or upgrade it when
        ``create_tables``; see the class for the arguments.
        """
        self.engine = get_engine(connection, operation_timeout=operation_timeout, **(engine_options or {}))
        self._db = Database(self.engine, retry_policy, owns_engine=not isinstance(connection, Engine))
        self.profile = self._db.profile
        #: What each task's row held when this store last read or wrote it (``images``).
        self._images = TaskImages()
        if create_tables:
            # A server that cannot be reached is DatabaseUnavailableError, as from any call.
            with translated(self.engine):
                upgrade(self.engine)
        else:
            # Unreachable for now: is_healthy() reports it and the first call fails clearly.
            with suppress(DatabaseUnavailableError), translated(self.engine):
                ensure_current(self.engine)

    @property
    def retry_policy(self) -> RetryPolicy:
        """How often a unit of work that lost a race runs again."""
        return self._db.retry_policy

    def __repr__(self) -> str:
        """The class name and the URL, its password masked."""
        return f"{type(self).__name__}({mask(self.engine.url)!r})"

    def close(self) -> None:
        """Stop using the database (idempotent). Stores and queues of one URL share an engine:
        the last of them to close releases its connections. Calls after ``close`` raise
        ``RuntimeError``. An engine passed in by the caller stays the caller's to dispose."""
        self._db.close()

    # -- workflows --------------------------------------------------------------------------

    def store(self, execution: Workflow) -> None:
        """Insert a new workflow with every stage, edge and task, in one transaction.

        Raises:
            ValidationError: a value cannot be stored (named by its path); nothing is written.
            DuplicateError: the workflow id, or one of its stage or task ids, is already stored.
        """
        try:
            with self.transaction() as txn:
                txn.store_workflow(execution)
        except IntegrityError as exc:
            if self.exists(execution.id):
                raise DuplicateError(f"workflow.id: {execution.id!r} is already stored") from None
            raise DuplicateError(f"workflow {execution.id!r}: a stage or task id is already stored") from exc

    def retrieve(self, execution_id: str) -> Workflow:
        """The whole workflow: stages in the order they were added, each with its tasks, in four
        statements whatever its size, from one snapshot.

        Raises:
            WorkflowNotFoundError: no workflow has this id.
        """

        def read(connection: Connection) -> Workflow:
            params = {"workflow_id": execution_id}
            row = connection.execute(queries.WORKFLOW_BY_ID, params).first()
            if row is None:
                raise WorkflowNotFoundError(execution_id)
            workflow = mapping.WORKFLOWS.build(row)
            for _, stage in self._load(connection, queries.WHOLE_WORKFLOW, params):
                workflow.add_stage(stage)
            return workflow

        return self._db.run(read, Unit.SNAPSHOT)

    def retrieve_execution_summary(self, execution_id: str) -> Workflow:
        """The workflow without its stages (``stages == []``), in one statement.

        Raises:
            WorkflowNotFoundError: no workflow has this id.
        """

        def read(connection: Connection) -> Workflow:
            row = connection.execute(queries.WORKFLOW_BY_ID, {"workflow_id": execution_id}).first()
            if row is None:
                raise WorkflowNotFoundError(execution_id)
            return mapping.WORKFLOWS.build(row)

        return self._db.run(read, Unit.READ)

    def exists(self, execution_id: str) -> bool:
        """Whether a workflow has this id (a database error propagates)."""
        params = {"workflow_id": execution_id}
        return self._db.run(
            lambda c: c.execute(queries.WORKFLOW_EXISTS, params).first() is not None, Unit.READ
        )

    def delete(self, execution_id: str) -> None:
        """Remove the workflow with its stages, tasks and edges (``ON DELETE CASCADE``)."""
        statement = delete(WorkflowRow).where(WorkflowRow.id == execution_id)
        self._db.run(lambda c: c.execute(statement), Unit.WRITE_ONE)

    def update_status(self, execution: Workflow) -> None:
        """Rewrite the workflow's status, times, cancellation and pause details.

        Raises:
            WorkflowNotFoundError: the workflow is not stored.
        """
        with self.transaction() as txn:
            txn.update_workflow_status(execution)

    def pause(self, execution_id: str, paused_by: str) -> None:
        """Set status PAUSED and the pause details.

        Raises:
            WorkflowNotFoundError: no workflow has this id.
        """
        paused = {"paused_by": paused_by, "pause_time": now_ms(), "resume_time": None, "paused_ms": 0}
        self._set_workflow(execution_id, status=WorkflowStatus.PAUSED, paused=paused)

    def resume(self, execution_id: str) -> None:
        """Record the resume time and the paused duration, and set status RUNNING.

        Raises:
            WorkflowNotFoundError: no workflow has this id.
        """

        def write(connection: Connection) -> None:
            paused = connection.execute(
                select(WorkflowRow.paused).where(WorkflowRow.id == execution_id).with_for_update()
            ).first()
            if paused is None:
                raise WorkflowNotFoundError(execution_id)
            details = dict(paused[0] or {})
            if details.get("pause_time") is not None:
                details["resume_time"] = now_ms()
                details["paused_ms"] = details["resume_time"] - details["pause_time"]
            connection.execute(
                update(WorkflowRow)
                .where(WorkflowRow.id == execution_id)
                .values(status=WorkflowStatus.RUNNING, paused=details or None)
            )

        self._db.run(write, Unit.WRITE)

    def cancel(self, execution_id: str, canceled_by: str, reason: str) -> None:
        """Set ``is_canceled``, ``canceled_by`` and ``cancellation_reason``.

        Raises:
            WorkflowNotFoundError: no workflow has this id.
        """
        self._set_workflow(
            execution_id, is_canceled=True, canceled_by=canceled_by, cancellation_reason=reason
        )

    def _set_workflow(self, execution_id: str, **values: Any) -> None:
        columns = WorkflowRow.__table__.c
        checked = {key: checker(columns[key])(value, f"workflow.{key}") for key, value in values.items()}
        statement = update(WorkflowRow).where(WorkflowRow.id == execution_id).values(checked)

        def write(connection: Connection) -> None:
            if rowcount(connection.execute(statement)) == 0:
                raise WorkflowNotFoundError(execution_id)

        self._db.run(write, Unit.WRITE_ONE)

    # -- stages -----------------------------------------------------------------------------

    def store_stage(self, stage: StageExecution, expected_phase: str | WorkflowStatus | None = None) -> None:
        """Compare-and-set on ``version`` (and status), then write the tasks whose rows change;
        or insert a stage not stored yet.

        Raises:
            ConcurrencyError: the row's version (or status) is not the one ``stage`` was read at.
            ValidationError: a value cannot be stored, or ``expected_phase`` is not a status.
        """
        with self.transaction() as txn:
            txn.store_stage(stage, expected_phase)

    def add_stage(self, stage: StageExecution) -> None:
        """Insert a stage into its (stored) workflow; ``store_stage`` of a new stage."""
        self.store_stage(stage)

    def remove_stage(self, execution: Workflow, stage_id: str) -> None:
        """Delete a stage with its tasks and edges."""
        statement = delete(StageRow).where(StageRow.id == stage_id)
        self._db.run(lambda c: c.execute(statement), Unit.WRITE_ONE)

    def retrieve_stage(self, stage_id: str) -> StageExecution:
        """The stage with a partial workflow: itself, its requisites and its synthetic children,
        each with its tasks; four statements from one snapshot.

        Raises:
            ValueError: no stage has this id.
        """

        def read(connection: Connection) -> StageExecution:
            params = {"stage_id": stage_id}
            row = connection.execute(queries.WORKFLOW_OF_STAGE, params).first()
            if row is None:
                raise ValueError(f"stage {stage_id!r} not found")
            workflow = mapping.WORKFLOWS.build(row)
            stages = [stage for _, stage in self._load(connection, queries.AROUND_STAGE, params)]
            for stage in stages:
                workflow.stages.append(stage)
                stage.set_execution_strong(workflow)
            return next(s for s in stages if s.id == stage_id)

        return self._db.run(read, Unit.SNAPSHOT)

    def get_upstream_stages(self, execution_id: str, stage_ref_id: str) -> list[StageExecution]:
        """The direct requisites of ``stage_ref_id``, with their tasks."""
        return self._stages(queries.UPSTREAM, {"workflow_id": execution_id, "ref_id": stage_ref_id})

    def get_downstream_stages(self, execution_id: str, stage_ref_id: str) -> list[StageExecution]:
        """The stages that wait for ``stage_ref_id``, with their tasks."""
        return self._stages(queries.DOWNSTREAM, {"workflow_id": execution_id, "ref_id": stage_ref_id})

    def get_synthetic_stages(self, execution_id: str, parent_stage_id: str) -> list[StageExecution]:
        """The synthetic stages of ``parent_stage_id``, with their tasks."""
        params = {"workflow_id": execution_id, "parent_stage_id": parent_stage_id}
        return self._stages(queries.SYNTHETIC, params)

    def _stages(self, selection: StageSelection, params: dict[str, Any]) -> list[StageExecution]:
        return self._db.run(
            lambda connection: [stage for _, stage in self._load(connection, selection, params)],
            Unit.SNAPSHOT,
        )

    def _load(
        self, connection: Connection, selection: StageSelection, params: dict[str, Any]
    ) -> list[tuple[str, StageExecution]]:
        """(workflow id, stage) for the selected stages, with requisites and tasks, in three
        statements whatever their number; the tasks' images are remembered."""
        stage_rows = connection.execute(selection.stages, params).all()
        if not stage_rows:
            return []
        loaded = mapping.stages_from_rows(
            stage_rows,
            connection.execute(selection.edges, params).all(),
            connection.execute(selection.tasks, params).all(),
        )
        images = self._images
        for task, row in loaded.tasks:
            images.remember(task, image_of_row(row))
        return loaded.stages

    def get_merged_ancestor_outputs(self, execution_id: str, stage_ref_id: str) -> dict[str, Any]:
        """The outputs of every transitive requisite of ``stage_ref_id``, merged in the engine's
        order (see ``lineage``); the ancestors come from a recursive CTE, in one statement."""
        params = {"workflow_id": execution_id, "ref_id": stage_ref_id}
        statement = _ANCESTOR_OUTPUTS[self.profile.lateral_recursion]
        rows = self._db.run(lambda c: c.execute(statement, params).all(), Unit.READ)
        outputs: dict[str, dict[str, Any]] = {}
        edges: list[tuple[str, str]] = []
        for ref, document, requisite in rows:
            if requisite is None:
                outputs[ref] = document
            else:
                edges.append((ref, requisite))
        if not outputs:
            return {}
        return merge_outputs(topological_order(outputs, edges), outputs)

    # -- listings ---------------------------------------------------------------------------

    def retrieve_by_application(
        self, application: str, criteria: WorkflowCriteria | None = None
    ) -> Iterator[Workflow]:
        """A page of the application's workflows, newest first (see ``WorkflowCriteria``)."""
        return iter(self._page(WorkflowRow.application, application, criteria or WorkflowCriteria()))

    def retrieve_by_pipeline_config_id(
        self, pipeline_config_id: str, criteria: WorkflowCriteria | None = None
    ) -> Iterator[Workflow]:
        """A page of the pipeline config's workflows, newest first (see ``WorkflowCriteria``)."""
        return iter(
            self._page(WorkflowRow.pipeline_config_id, pipeline_config_id, criteria or WorkflowCriteria())
        )

    def get_all_pending_workflows(self, criteria: WorkflowCriteria | None = None) -> list[Workflow]:
        """A page of every application's workflows, newest first, filtered by ``criteria`` (the
        engine's recovery asks for the unfinished ones by their ``statuses``); whole workflows, in
        four statements however many the page holds."""
        return self._page(None, None, criteria or WorkflowCriteria())

    def _page(self, column: Any, value: str | None, criteria: WorkflowCriteria) -> list[Workflow]:
        """A page of whole workflows in four statements, however many it holds, from one snapshot."""
        if criteria.page_size is not None and criteria.page_size < 0:
            raise ValidationError("criteria.page_size", f"must be >= 0 or None, got {criteria.page_size}")
        statement, params = queries.workflow_page(column, value, criteria)

        def read(connection: Connection) -> list[Workflow]:
            workflows = [mapping.WORKFLOWS.build(r) for r in connection.execute(statement, params)]
            if workflows:
                by_id = {w.id: w for w in workflows}
                for workflow_id, stage in self._load(connection, queries.PAGE, {"workflow_ids": list(by_id)}):
                    by_id[workflow_id].add_stage(stage)
            return workflows

        return self._db.run(read, Unit.SNAPSHOT)

    def count_by_application(self, application: str) -> int:
        """How many workflows the application has."""
        params = {"application": application}
        return self._db.run(lambda c: int(c.execute(_COUNT_BY_APPLICATION, params).scalar_one()), Unit.READ)

    def purge_finished(
        self,
        older_than_ms: int,
        statuses: set[WorkflowStatus] | None = None,
        *,
        batch_size: int = 500,
        dry_run: bool = False,
    ) -> int:
        """Delete finished workflows that ended before ``older_than_ms`` (epoch ms), with their
        stages, tasks, edges and processed marks; return how many.

        Only complete statuses are ever purged, whatever ``statuses`` asks for. Each batch of at
        most ``batch_size`` workflows is its own short transaction, so a large purge never holds
        locks for long and can be interrupted safely.

        Raises:
            ValidationError: ``batch_size`` is below 1.
        """
        if batch_size < 1:
            raise ValidationError("batch_size", f"must be at least 1, got {batch_size}")
        allowed = sorted(s.name for s in (statuses or COMPLETED_STATUSES) if s in COMPLETED_STATUSES)
        if not allowed:
            return 0
        ended = func.coalesce(WorkflowRow.end_time, WorkflowRow.created_at)
        candidates = select(WorkflowRow.id).where(WorkflowRow.status.in_(allowed), ended < older_than_ms)
        if dry_run:
            counted = select(func.count()).select_from(candidates.subquery())
            return self._db.run(lambda c: int(c.execute(counted).scalar_one()), Unit.READ)
        ordered = candidates.order_by(WorkflowRow.id)
        return maintenance.purge(self._db.run, lambda limit: ordered.limit(limit), batch_size, None)

    def completed_workflow_ids(
        self, completed_before_ms: int, limit: int, application: str | None = None
    ) -> list[str]:
        """Ids of complete workflows that ended before ``completed_before_ms`` (epoch ms), oldest
        end first, at most ``limit``, of ``application`` when given. A workflow without an end
        time, or not in a complete status, is never listed.

        Raises:
            ValidationError: an argument is out of its range (named).
        """
        statement = maintenance.completed_workflows(
            maintenance.epoch_ms(completed_before_ms, "completed_before_ms"),
            maintenance.whole(limit, "limit", 0),
            maintenance.application_of(application),
        )
        return self._db.run(lambda c: list(c.execute(statement).scalars()), Unit.READ)

    def purge_completed_workflows(
        self,
        completed_before_ms: int,
        batch_size: int = 500,
        max_workflows: int | None = None,
        application: str | None = None,
        *,
        queue: Queue | None = None,
    ) -> int:
        """Delete the workflows ``completed_workflow_ids`` lists, with every row the store keeps
        for them (stages, tasks, edges, processed marks, stage claims, buffered signals); return
        how many went.

        Each batch of at most ``batch_size`` workflows is one short transaction (the rows locked,
        then deleted), oldest end first, until none is left or ``max_workflows`` are gone.
        Queued and dead-lettered messages belong to the queue, not the store, and stay, as with
        the engine's own store: pass ``queue`` to have its ``purge_workflow`` drop them for each
        purged workflow once its batch has committed.

        Raises:
            ValidationError: an argument is out of its range (named); nothing is deleted.
        """
        cutoff = maintenance.epoch_ms(completed_before_ms, "completed_before_ms")
        batch = maintenance.whole(batch_size, "batch_size", 1)
        most = maintenance.optional_whole(max_workflows, "max_workflows", 0)
        chosen = maintenance.application_of(application)
        select_batch = partial(maintenance.completed_workflows, cutoff, application=chosen)
        purged = None if queue is None else partial(_purge_messages, queue)
        return maintenance.purge(self._db.run, select_batch, batch, most, purged)

    def cleanup_completed_stage_claims(self) -> int:
        """Delete the stage claims (mutex, deferred choice) of workflows in a complete status, in
        one statement; return how many. Claims of unfinished workflows always stay: dropping one
        would let two stages hold what only one may."""
        return self._db.run(lambda c: rowcount(c.execute(maintenance.COMPLETED_CLAIMS)), Unit.WRITE_ONE)

    # -- signals ----------------------------------------------------------------------------

    def supports_signal_storage(self) -> bool:
        """True: signals for a stage not ready for them are kept in ``workflow_signals`` rows
        (``buffer_signal``), not in the stage's context."""
        return True

    def buffer_signal(
        self,
        execution_id: str,
        stage_ref_id: str,
        signal_name: str,
        signal_data: dict[str, Any] | None = None,
    ) -> int:
        """Keep a signal for stage ``stage_ref_id`` of the workflow until the stage consumes it, in
        one statement; ``signal_data`` None is stored as ``{}``.

        Returns:
            The new signal's id (always > 0: the engine reads 0 as "not stored").

        Raises:
            WorkflowNotFoundError: no workflow has this id; nothing is written.
            ValidationError: a value cannot be stored (named, e.g. ``signal_data['when']``).
        """
        limit = self._db.row_limit
        values = signals.signal_values(execution_id, stage_ref_id, signal_name, signal_data, limit)

        def write(connection: Connection) -> int:
            try:
                return signals.insert(connection, values)
            except IntegrityError:  # every value is checked: only the workflow's foreign key fails
                raise WorkflowNotFoundError(execution_id) from None

        return self._db.run(write, Unit.WRITE_ONE)

    def consume_signal(
        self, execution_id: str, stage_ref_id: str, signal_name: str | None = None
    ) -> dict[str, Any] | None:
        """Take the oldest unconsumed signal of the stage (by order of buffering), of
        ``signal_name`` when given (None or ``""``: any name), and mark it consumed, in one
        transaction. Concurrent consumers never take the same signal (see ``signals.consume``).

        Returns:
            ``{"signal_name": ..., "signal_data": ...}``, or None when none is waiting.

        Raises:
            ValidationError: an argument is not a string (named).
        """
        waiting = self._waiting(execution_id, stage_ref_id)
        if signal_name is not None and signals.lookup_text(signal_name, "signal_name"):
            waiting = and_(waiting, signals.SIGNALS.c.signal_name == signal_name)
        return self._db.run(lambda c: signals.consume(c, self.profile, waiting), Unit.WRITE)

    def pending_signal_count(self, execution_id: str, stage_ref_id: str) -> int:
        """How many signals wait, unconsumed, for the stage.

        Raises:
            ValidationError: an argument is not a string (named).
        """
        statement = signals.pending_count(self._waiting(execution_id, stage_ref_id))
        return self._db.run(lambda c: int(c.execute(statement).scalar_one()), Unit.READ)

    def discard_signals(self, execution_id: str, stage_ref_id: str) -> int:
        """Delete the stage's unconsumed signals (it ended: none can reach it any more); consumed
        ones stay until their workflow goes. Returns how many went.

        Raises:
            ValidationError: an argument is not a string (named).
        """
        waiting = self._waiting(execution_id, stage_ref_id)
        return self._db.run(lambda c: signals.discard(c, waiting), Unit.WRITE_ONE)

    @staticmethod
    def _waiting(execution_id: str, stage_ref_id: str) -> ColumnElement[bool]:
        workflow_id = signals.lookup_text(execution_id, "execution_id")
        return signals.of_stage(workflow_id, signals.lookup_text(stage_ref_id, "stage_ref_id"))

    def count_buffered_signal_stages(
        self, only_complete: bool = True, statuses: Collection[str | WorkflowStatus] | None = None
    ) -> int:
        """How many stage rows still carry the engine's older in-context signal buffer (the key
        ``_buffered_signals`` in their context, whatever its value), in one statement.

        Args:
            only_complete: count only stages in a complete status (their buffer can never be
                consumed); False counts every stage.
            statuses: status names (or ``WorkflowStatus`` members) to count instead; when given
                and not empty, ``only_complete`` is not looked at.

        Raises:
            ValidationError: ``statuses`` names an unknown status, or an argument has the wrong type.
        """
        scope = signals.status_scope(only_complete, statuses)
        return self._db.run(lambda c: signals.count_buffered(c, self.profile, scope), Unit.READ)

    def cleanup_buffered_signals(
        self, only_complete: bool = True, statuses: Collection[str | WorkflowStatus] | None = None
    ) -> int:
        """Remove ``_buffered_signals`` from the context of the stages ``count_buffered_signal_stages``
        counts (same arguments); return how many rows changed.

        The candidates are found in SQL by the dialect's JSON key test (on a dialect the store has
        no test for, by reading each candidate's context), read under a row lock in batches of
        500, one transaction each, and written back without the key by the store's own JSON
        encoder, so every other value stays exactly as it was. Each changed stage's
        ``version`` goes up by one, as with every other write of a stage (the engine's store does
        not move it): an engine holding the stage as it was read before gets a ``ConcurrencyError``
        on its next ``store_stage`` and reads it again, instead of silently writing the removed
        buffer back.

        Raises:
            ValidationError: ``statuses`` names an unknown status, or an argument has the wrong
                type; nothing is changed.
        """
        scope = signals.status_scope(only_complete, statuses)
        changed, after = 0, None
        while True:
            work = partial(
                signals.strip_buffered, profile=self.profile, statuses=scope, after=after, batch=_BATCH
            )
            stripped, after = self._db.run(work, Unit.WRITE)
            changed += stripped
            if after is None:
                return changed

    # -- messages ---------------------------------------------------------------------------

    def is_message_processed(self, message_id: str) -> bool:
        """Whether a transaction that marked ``message_id`` processed has committed."""
        params = {"message_id": message_id}
        return self._db.run(lambda c: c.execute(_IS_PROCESSED, params).first() is not None, Unit.READ)

    def mark_message_processed(
        self, message_id: str, handler_type: str | None = None, execution_id: str | None = None
    ) -> bool:
        """Mark ``message_id`` processed, in one statement.

        Returns:
            True when this call made the mark, False when it already existed.
        """
        values = mapping.processed_message_values(message_id, handler_type, execution_id)
        return self._db.run(
            lambda c: self.profile.insert_ignore(c, _PROCESSED, [values], ("message_id",)) == 1,
            Unit.WRITE_ONE,
        )

    def get_processed_message_ids(self, limit: int | None = None) -> list[str]:
        """Processed message ids, newest mark first, at most ``limit`` (None: all); what the engine
        loads into its in-memory dedup filter when a processor starts.

        Raises:
            ValidationError: ``limit`` is not None or an integer >= 0.
        """
        statement = maintenance.processed_ids(maintenance.optional_whole(limit, "limit", 0))
        return self._db.run(lambda c: list(c.execute(statement).scalars()), Unit.READ)

    def cleanup_old_processed_messages(
        self,
        max_age_hours: float = 24.0,
        batch_size: int | None = None,
        max_rows: int | None = None,
        table_name: str | None = None,
        live: Live | Collection[str] | None = None,
    ) -> int:
        """Delete processed marks older than ``max_age_hours``, oldest first, in batches of one
        short transaction each; return how many went.

        Args:
            max_age_hours: marks older than this many hours go (a finite number >= 0).
            batch_size: marks per transaction (None: 1000).
            max_rows: stop once this many went (None: no bound); the engine's retention sweep
                bounds each sweep so.
            table_name: the queue table whose messages' marks are swept, as the engine names it;
                this store's one queue table is ``queue_messages`` (None means it too).
            live: marks of messages still queued are kept: a queue's ``live_delivery_keys`` (given
                a batch's message ids, it answers the ones still in the queue; asked between the
                store's transactions) or a collection of such ids. None: every old mark goes.

        Raises:
            ValidationError: an argument is out of its range (named); nothing is deleted.
        """
        cutoff = maintenance.cutoff_of(max_age_hours)
        batch = maintenance.optional_whole(batch_size, "batch_size", 1) or maintenance.PROCESSED_BATCH
        most = maintenance.optional_whole(max_rows, "max_rows", 0)
        if table_name is not None and table_name != _QUEUE_TABLE:
            problem = f"this store keeps the marks of {_QUEUE_TABLE!r} only, got {table_name!r}"
            raise ValidationError("table_name", problem)
        return maintenance.sweep_processed(self._db.run, cutoff, batch, most, maintenance.live_of(live))

    # -- health and transactions ------------------------------------------------------------

    def is_healthy(self, timeout: float | None = None) -> bool:
        """True when the database answers and its schema is one this code can use (at head, or
        ahead during a rolling deploy); False, never an exception, otherwise.

        Args:
            timeout: seconds to wait for the answer (default: 2, or the operation timeout if
                shorter); a database that has not answered by then is unhealthy. The check goes
                on in the background until its own bounds end it.
        """
        bound = min(HEALTH_TIMEOUT, self._db.bounds.operation) if timeout is None else timeout
        answer: list[bool] = []
        probe = threading.Thread(target=lambda: answer.append(database_is_healthy(self._db)), daemon=True)
        probe.start()
        probe.join(bound)
        return bool(answer and answer[0])

    def health(self) -> HealthReport:
        """Reachability, schema revision against head, queue depth and age, dead letters; see
        ``stabilize.persistence.sql.health``. Never raises for a database problem."""
        return check_health(self._db)

    @contextmanager
    def transaction(
        self, queue: Queue | None = None, *, session: Session | None = None
    ) -> Iterator[SqlStoreTransaction]:
        """One database transaction for a whole engine step (see ``SqlStoreTransaction``).

        The block's writes are collected and run when it ends, in one lock order, and the whole
        transaction runs again after a deadlock or serialization failure. A call that answers
        while the block runs (``mark_message_processed``, ``acquire_claim``, ...) begins the
        database transaction at once instead; it then commits when the block ends and is not
        run again. If the block raises, nothing is written.

        Args:
            queue: where ``push_message`` sends messages; a queue on the store's database makes
                them part of the transaction (``is_atomic``).
            session: a Session the application owns, to join instead of opening one: the step's
                writes run in it, inside a SAVEPOINT, and commit or roll back with the
                application's own work when the application ends its transaction. The store never
                commits or closes it, and does not retry. If the step fails (a failed
                compare-and-set raises ``ConcurrencyError``), the SAVEPOINT is rolled back and the
                application's own work is still pending in the session: let the error leave the
                session's ``begin()`` block to roll that back too, or handle it and go on.
                In-memory versions move when the application's transaction commits.

        Raises:
            ConcurrencyError: a compare-and-set failed (at the end of the block).
            ValidationError: a call inside the block was given a value that cannot be stored.
        """
        if session is not None:
            check_joinable(session, self.engine)
            joined = session
            open_unit: OpenUnit = lambda: self._db.within(joined)  # noqa: E731
        else:
            open_unit = self._db.held
        txn = SqlStoreTransaction(
            self.engine, self.profile, self._images, queue, self._db.row_limit, open_unit=open_unit
        )
        try:
            yield txn
        except BaseException as error:
            if txn.open:
                txn.abandon(type(error), error, error.__traceback__)
            raise
        if txn.open:
            actions = txn.finish()
        elif txn.empty:
            return
        elif session is not None:
            with self._db.within(session) as connection:
                actions = txn.apply(connection)
        else:
            plan = txn.plan()
            try:
                actions = self._db.run(plan.run, plan.unit)
            except NeedsTransaction:  # nothing was written: the writes need a statement each
                actions = self._db.run(txn.apply, Unit.WRITE)
        if session is not None:
            after_caller_commits(session, actions)
            return
        for action in actions:
            action()


def _purge_messages(queue: Queue, workflow_ids: list[str]) -> None:
    for workflow_id in workflow_ids:
        queue.purge_workflow(workflow_id)
