"""The one Session-based store, for every dialect. Transactions begin and end here only."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL, ColumnElement, Engine, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from stabilize.errors import ConcurrencyError, DuplicateError, ValidationError
from stabilize.models.ids import now_ms
from stabilize.models.stage import StageExecution
from stabilize.models.status import COMPLETED_STATUSES, WorkflowStatus
from stabilize.models.workflow import Workflow
from stabilize.persistence.sql import mapping, queries
from stabilize.persistence.sql.dialects.sqlite import WRITE_INTENT
from stabilize.persistence.sql.engine import engine_profile, get_engine, mask
from stabilize.persistence.sql.lineage import merge_outputs, topological_order
from stabilize.persistence.sql.migrate import ensure_current, upgrade
from stabilize.persistence.sql.rows import (
    ProcessedMessageRow,
    StageEdgeRow,
    StageRow,
    TaskRow,
    WorkflowRow,
    table_of,
)
from stabilize.persistence.store.interface import WorkflowCriteria, WorkflowNotFoundError, WorkflowStore
from stabilize.persistence.store.transaction import StoreTransaction

if TYPE_CHECKING:
    from stabilize.queue.interface import Queue
    from stabilize.queue.messages import Message

_TASK_UPDATE_COLUMNS = [c.key for c in table_of(TaskRow).columns if c.key not in ("id", "stage_id")]
_PROCESSED_BATCH = 1000

#: Undo actions for in-memory version bumps, run when the transaction rolls back.
Undo = list[Callable[[], None]]


class SqlWorkflowStore(WorkflowStore):
    """Workflow persistence on any SQLAlchemy database: SQLite, PostgreSQL, MySQL/MariaDB.

    Args:
        connection: a URL (any SQLAlchemy URL, ``postgres://...``, or a bare SQLite file path)
            or an existing ``Engine``.
        create_tables: upgrade the schema to the newest migration first.
        engine_options: extra ``create_engine`` keyword arguments (pool size, timeouts).
    """

    def __init__(
        self,
        connection: str | URL | Engine,
        create_tables: bool = False,
        *,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        self.engine = get_engine(connection, **(engine_options or {}))
        self.profile = engine_profile(self.engine)
        self._reads = sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self._writes = sessionmaker(
            self.engine.execution_options(**{WRITE_INTENT: True}), expire_on_commit=False, autoflush=False
        )
        if create_tables:
            upgrade(self.engine)
        else:
            # Unreachable for now: is_healthy() reports it and the first call fails clearly.
            with suppress(OperationalError):
                ensure_current(self.engine)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({mask(self.engine.url)!r})"

    # -- sessions ---------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._reads() as session:
            yield session

    @contextmanager
    def _write(self) -> Iterator[tuple[Session, Undo]]:
        """One write transaction: commit at the end, roll back (data and versions) on error."""
        undo: Undo = []
        try:
            with self._writes.begin() as session:
                yield session, undo
        except BaseException:
            for action in reversed(undo):
                action()
            raise

    # -- workflows --------------------------------------------------------------------------

    def store(self, execution: Workflow) -> None:
        try:
            with self._write() as (session, _):
                _insert_workflow(session, execution)
        except IntegrityError as exc:
            if self.exists(execution.id):
                raise DuplicateError(f"workflow.id: {execution.id!r} is already stored") from None
            raise DuplicateError(f"workflow {execution.id!r}: a stage or task id is already stored") from exc

    def retrieve(self, execution_id: str) -> Workflow:
        with self._read() as session:
            row = session.get(WorkflowRow, execution_id)
            if row is None:
                raise WorkflowNotFoundError(execution_id)
            workflow = mapping.workflow_from_row(row)
            for stage in self._load_stages(session, StageRow.workflow_id == execution_id):
                workflow.add_stage(stage)
        return workflow

    def retrieve_execution_summary(self, execution_id: str) -> Workflow:
        with self._read() as session:
            row = session.get(WorkflowRow, execution_id)
            if row is None:
                raise WorkflowNotFoundError(execution_id)
            return mapping.workflow_from_row(row)

    def exists(self, execution_id: str) -> bool:
        with self._read() as session:
            return session.scalar(select(WorkflowRow.id).where(WorkflowRow.id == execution_id)) is not None

    def delete(self, execution_id: str) -> None:
        # Stages, tasks and edges go with the workflow through ON DELETE CASCADE.
        with self._write() as (session, _):
            session.execute(delete(WorkflowRow).where(WorkflowRow.id == execution_id))

    def update_status(self, execution: Workflow) -> None:
        with self._write() as (session, _):
            self._update_workflow(session, execution)

    def _update_workflow(self, session: Session, execution: Workflow) -> None:
        values = mapping.workflow_state_values(execution)
        result = session.execute(update(WorkflowRow).where(WorkflowRow.id == execution.id).values(values))
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise WorkflowNotFoundError(execution.id)

    def pause(self, execution_id: str, paused_by: str) -> None:
        self._set_workflow(
            execution_id,
            status=WorkflowStatus.PAUSED.name,
            paused={"paused_by": paused_by, "pause_time": now_ms(), "resume_time": None, "paused_ms": 0},
        )

    def resume(self, execution_id: str) -> None:
        with self._write() as (session, _):
            paused = session.execute(
                select(WorkflowRow.paused).where(WorkflowRow.id == execution_id).with_for_update()
            ).first()
            if paused is None:
                raise WorkflowNotFoundError(execution_id)
            details = dict(paused[0] or {})
            if details.get("pause_time") is not None:
                details["resume_time"] = now_ms()
                details["paused_ms"] = details["resume_time"] - details["pause_time"]
            session.execute(
                update(WorkflowRow)
                .where(WorkflowRow.id == execution_id)
                .values(status=WorkflowStatus.RUNNING.name, paused=details or None)
            )

    def cancel(self, execution_id: str, canceled_by: str, reason: str) -> None:
        self._set_workflow(
            execution_id, is_canceled=True, canceled_by=canceled_by, cancellation_reason=reason
        )

    def _set_workflow(self, execution_id: str, **values: Any) -> None:
        mapping.check_workflow_columns(values, "workflow")
        with self._write() as (session, _):
            result = session.execute(update(WorkflowRow).where(WorkflowRow.id == execution_id).values(values))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise WorkflowNotFoundError(execution_id)

    # -- stages -----------------------------------------------------------------------------

    def store_stage(self, stage: StageExecution, expected_phase: str | None = None) -> None:
        with self._write() as (session, undo):
            self._store_stage(session, undo, stage, expected_phase)

    def add_stage(self, stage: StageExecution) -> None:
        self.store_stage(stage)

    def _store_stage(
        self, session: Session, undo: Undo, stage: StageExecution, expected_phase: str | WorkflowStatus | None
    ) -> None:
        """Compare-and-set on ``version`` (and status), then upsert the tasks; or insert a new stage."""
        state = mapping.stage_state_values(stage, "stage")
        condition = [StageRow.id == stage.id, StageRow.version == stage.version]
        if expected_phase is not None:
            phase = expected_phase.name if isinstance(expected_phase, WorkflowStatus) else expected_phase
            condition.append(StageRow.status == phase)
        result = session.execute(
            update(StageRow).where(*condition).values(**state, version=StageRow.version + 1)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            self.profile.upsert(
                session,
                table_of(TaskRow),
                _task_values(stage, next_version=True),
                ["id"],
                _TASK_UPDATE_COLUMNS,
            )
            _bump_versions(stage, undo)
            return
        if session.scalar(select(StageRow.version).where(StageRow.id == stage.id)) is not None:
            raise ConcurrencyError(
                f"stage {stage.id}: compare-and-set failed (expected version {stage.version}"
                + (f" and status {expected_phase}" if expected_phase is not None else "")
                + ")"
            )
        self._insert_stage(session, stage)

    def _insert_stage(self, session: Session, stage: StageExecution) -> None:
        if not stage.has_execution():
            raise ValidationError("stage.execution", f"stage {stage.id} is not attached to a workflow")
        workflow_id = stage.execution.id
        position = session.scalar(
            select(func.coalesce(func.max(StageRow.position) + 1, 0)).where(
                StageRow.workflow_id == workflow_id
            )
        )
        values = mapping.stage_values(stage, workflow_id, position or 0, "stage")
        edges = mapping.edge_values(stage, workflow_id, "stage")
        tasks = _task_values(stage, next_version=False)
        if not session.scalar(select(WorkflowRow.id).where(WorkflowRow.id == workflow_id)):
            raise ValidationError("stage.execution", f"workflow {workflow_id!r} is not stored")
        try:
            session.execute(insert(StageRow), [values])
            if edges:
                session.execute(insert(StageEdgeRow), edges)
            if tasks:
                session.execute(insert(TaskRow), tasks)
        except IntegrityError as exc:
            raise DuplicateError(
                f"stage {stage.id}: ref id {stage.ref_id!r} or a task id is already stored"
                f" in workflow {workflow_id}"
            ) from exc

    def remove_stage(self, execution: Workflow, stage_id: str) -> None:
        with self._write() as (session, _):
            session.execute(delete(StageRow).where(StageRow.id == stage_id))

    def retrieve_stage(self, stage_id: str) -> StageExecution:
        """The stage with a partial workflow: itself, its requisites and its synthetic children."""
        with self._read() as session:
            row = session.get(StageRow, stage_id)
            if row is None:
                raise ValueError(f"stage {stage_id!r} not found")
            workflow_row = session.get(WorkflowRow, row.workflow_id)
            assert workflow_row is not None  # the foreign key guarantees it
            workflow = mapping.workflow_from_row(workflow_row)
            related = (
                (StageRow.id == stage_id)
                | queries.upstream_filter(row.workflow_id, row.ref_id)
                | ((StageRow.workflow_id == row.workflow_id) & (StageRow.parent_stage_id == stage_id))
            )
            stages = self._load_stages(session, related)
        for stage in stages:
            workflow.stages.append(stage)
            stage.set_execution_strong(workflow)
        return next(s for s in stages if s.id == stage_id)

    def get_upstream_stages(self, execution_id: str, stage_ref_id: str) -> list[StageExecution]:
        with self._read() as session:
            return self._load_stages(session, queries.upstream_filter(execution_id, stage_ref_id))

    def get_downstream_stages(self, execution_id: str, stage_ref_id: str) -> list[StageExecution]:
        with self._read() as session:
            return self._load_stages(session, queries.downstream_filter(execution_id, stage_ref_id))

    def get_synthetic_stages(self, execution_id: str, parent_stage_id: str) -> list[StageExecution]:
        with self._read() as session:
            return self._load_stages(
                session,
                (StageRow.workflow_id == execution_id) & (StageRow.parent_stage_id == parent_stage_id),
            )

    def _load_stages(self, session: Session, condition: ColumnElement[bool]) -> list[StageExecution]:
        return [stage for _, stage in _load_stages(session, condition)]

    def get_merged_ancestor_outputs(self, execution_id: str, stage_ref_id: str) -> dict[str, Any]:
        with self._read() as session:
            found = session.execute(queries.ancestor_outputs(execution_id, stage_ref_id))
            outputs: dict[str, dict[str, Any]] = dict(found.all())
            if not outputs:
                return {}
            requisites: dict[str, set[str]] = {ref: set() for ref in outputs}
            for ref, requisite in session.execute(queries.ancestor_edges(execution_id, stage_ref_id)):
                if ref in requisites:
                    requisites[ref].add(requisite)
        return merge_outputs(topological_order(requisites), outputs)

    # -- listings ---------------------------------------------------------------------------

    def retrieve_by_application(
        self, application: str, criteria: WorkflowCriteria | None = None
    ) -> Iterator[Workflow]:
        return iter(self._page(WorkflowRow.application, application, criteria or WorkflowCriteria()))

    def retrieve_by_pipeline_config_id(
        self, pipeline_config_id: str, criteria: WorkflowCriteria | None = None
    ) -> Iterator[Workflow]:
        return iter(
            self._page(WorkflowRow.pipeline_config_id, pipeline_config_id, criteria or WorkflowCriteria())
        )

    def _page(self, column: Any, value: str, criteria: WorkflowCriteria) -> list[Workflow]:
        """A page of whole workflows in four queries, however many it holds."""
        if criteria.page_size is not None and criteria.page_size < 0:
            raise ValidationError("criteria.page_size", f"must be >= 0 or None, got {criteria.page_size}")
        with self._read() as session:
            workflows = [
                mapping.workflow_from_row(r)
                for r in session.scalars(queries.workflow_page(column, value, criteria))
            ]
            if workflows:
                by_id = {w.id: w for w in workflows}
                for workflow_id, stage in _load_stages(session, StageRow.workflow_id.in_(list(by_id))):
                    by_id[workflow_id].add_stage(stage)
        return workflows

    def count_by_application(self, application: str) -> int:
        with self._read() as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(WorkflowRow)
                    .where(WorkflowRow.application == application)
                )
                or 0
            )

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
        """
        if batch_size < 1:
            raise ValidationError("batch_size", f"must be at least 1, got {batch_size}")
        allowed = sorted(s.name for s in (statuses or COMPLETED_STATUSES) if s in COMPLETED_STATUSES)
        if not allowed:
            return 0
        ended = func.coalesce(WorkflowRow.end_time, WorkflowRow.created_at)
        candidates = select(WorkflowRow.id).where(WorkflowRow.status.in_(allowed), ended < older_than_ms)
        if dry_run:
            with self._read() as session:
                return session.scalar(select(func.count()).select_from(candidates.subquery())) or 0
        purged = 0
        while True:
            with self._write() as (session, _):
                ids = list(session.scalars(candidates.order_by(WorkflowRow.id).limit(batch_size)))
                if ids:
                    session.execute(delete(ProcessedMessageRow).where(ProcessedMessageRow.execution_id.in_(ids)))
                    session.execute(delete(WorkflowRow).where(WorkflowRow.id.in_(ids)))
            purged += len(ids)
            if len(ids) < batch_size:
                return purged

    # -- messages ---------------------------------------------------------------------------

    def is_message_processed(self, message_id: str) -> bool:
        with self._read() as session:
            found = session.scalar(
                select(ProcessedMessageRow.message_id).where(ProcessedMessageRow.message_id == message_id)
            )
            return found is not None

    def mark_message_processed(
        self, message_id: str, handler_type: str | None = None, execution_id: str | None = None
    ) -> None:
        with self._write() as (session, _):
            self._mark_processed(session, message_id, handler_type, execution_id)

    def _mark_processed(
        self, session: Session, message_id: str, handler_type: str | None, execution_id: str | None
    ) -> None:
        values = mapping.processed_message_values(message_id, handler_type, execution_id)
        self.profile.insert_ignore(session, table_of(ProcessedMessageRow), [values], ["message_id"])

    def cleanup_old_processed_messages(self, max_age_hours: float = 24.0) -> int:
        """Delete marks older than ``max_age_hours`` in batches, one short transaction each."""
        cutoff = now_ms() - int(max_age_hours * 3_600_000)
        deleted = 0
        while True:
            with self._write() as (session, _):
                ids = session.scalars(
                    select(ProcessedMessageRow.message_id)
                    .where(ProcessedMessageRow.processed_at < cutoff)
                    .limit(_PROCESSED_BATCH)
                ).all()
                if ids:
                    session.execute(
                        delete(ProcessedMessageRow).where(ProcessedMessageRow.message_id.in_(ids))
                    )
            deleted += len(ids)
            if len(ids) < _PROCESSED_BATCH:
                return deleted

    # -- health and transactions ------------------------------------------------------------

    def is_healthy(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    @contextmanager
    def transaction(self, queue: Queue | None = None) -> Iterator[StoreTransaction]:
        """One database transaction for a whole engine step; see ``SqlStoreTransaction``."""
        with self._write() as (session, undo):
            txn = SqlStoreTransaction(self, session, undo, queue)
            yield txn
        txn.after_commit()


class SqlStoreTransaction(StoreTransaction):
    """Everything of one step in one database transaction, queue messages included.

    Messages go into the ``queue_messages`` table through this transaction's session, so a
    crash can never leave the new state without the message that continues from it, nor the
    reverse. Given a queue that does not live in this database, messages are pushed to it only
    after the commit and ``is_atomic`` is False.
    """

    def __init__(self, store: SqlWorkflowStore, session: Session, undo: Undo, queue: Queue | None) -> None:
        self._store = store
        self._session = session
        self._undo = undo
        self._queue = queue
        self._deferred: list[tuple[Message, float]] = []

    @property
    def is_atomic(self) -> bool:
        return self._foreign_queue() is None

    def _foreign_queue(self) -> Queue | None:
        queue = self._queue
        if queue is None or getattr(queue, "engine", None) is self._store.engine:
            return None
        return queue

    @property
    def session(self) -> Session:
        """The transaction's Session, for effects that must commit (or not) with the step."""
        return self._session

    def store_workflow(self, workflow: Workflow) -> None:
        """Insert a new workflow in this transaction, e.g. with the message that starts it."""
        _insert_workflow(self._session, workflow)

    def store_stage(self, stage: StageExecution, expected_phase: str | None = None) -> None:
        self._store._store_stage(self._session, self._undo, stage, expected_phase)

    def update_workflow_status(self, workflow: Workflow) -> None:
        self._store._update_workflow(self._session, workflow)

    def push_message(self, message: Message, delay: float = 0) -> None:
        if self._foreign_queue() is not None:
            self._deferred.append((message, delay))
            return
        from stabilize.queue.sql import push_in_session

        push_in_session(self._session, message, delay)

    def mark_message_processed(
        self, message_id: str, handler_type: str | None = None, execution_id: str | None = None
    ) -> None:
        self._store._mark_processed(self._session, message_id, handler_type, execution_id)

    def after_commit(self) -> None:
        queue = self._foreign_queue()
        if queue is not None:
            for message, delay in self._deferred:
                queue.push(message, delay)


def _load_stages(session: Session, condition: ColumnElement[bool]) -> list[tuple[str, StageExecution]]:
    """(workflow id, stage) for the stages matching ``condition``, with their requisites and
    tasks, in three queries whatever their number."""
    rows = session.scalars(queries.stages_where(condition)).all()
    if not rows:
        return []
    requisites: dict[tuple[str, str], list[str]] = defaultdict(list)
    for edge in session.scalars(queries.edges_of_stages(condition)):
        requisites[(edge.workflow_id, edge.ref_id)].append(edge.requisite_ref_id)
    loaded = [
        (r.workflow_id, mapping.stage_from_row(r, requisites.get((r.workflow_id, r.ref_id), ())))
        for r in rows
    ]
    by_id = {stage.id: stage for _, stage in loaded}
    for task_row in session.scalars(queries.tasks_of_stages(condition)):
        by_id[task_row.stage_id].add_task(mapping.task_from_row(task_row))
    return loaded


def _insert_workflow(session: Session, execution: Workflow) -> None:
    """The workflow, its stages, edges and tasks: one bulk INSERT per table, all validated first."""
    workflow = mapping.workflow_values(execution)
    stages, edges, tasks = _graph_values(execution)
    session.execute(insert(WorkflowRow), [workflow])
    for row, values in ((StageRow, stages), (StageEdgeRow, edges), (TaskRow, tasks)):
        if values:
            session.execute(insert(row), values)


def _graph_values(
    workflow: Workflow,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Row values of every stage, edge and task of a workflow, validated before any SQL runs."""
    stages: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    tasks: list[dict[str, Any]] = []
    seen_refs: dict[str, int] = {}
    for position, stage in enumerate(workflow.stages):
        path = f"stages[{position}]"
        stages.append(mapping.stage_values(stage, workflow.id, position, path))
        if stage.ref_id in seen_refs:
            raise ValidationError(
                f"{path}.ref_id", f"{stage.ref_id!r} is also the ref id of stages[{seen_refs[stage.ref_id]}]"
            )
        seen_refs[stage.ref_id] = position
        edges.extend(mapping.edge_values(stage, workflow.id, path))
        tasks.extend(
            mapping.task_values(task, stage.id, i, f"{path}.tasks[{i}]") for i, task in enumerate(stage.tasks)
        )
    return stages, edges, tasks


def _task_values(stage: StageExecution, *, next_version: bool) -> list[dict[str, Any]]:
    values = [mapping.task_values(t, stage.id, i, f"stage.tasks[{i}]") for i, t in enumerate(stage.tasks)]
    if next_version:
        for row in values:
            row["version"] += 1
    return values


def _bump_versions(stage: StageExecution, undo: Undo) -> None:
    """Move the in-memory versions to the row's, remembering how to move them back."""
    old_stage = stage.version
    old_tasks = [(t, t.version) for t in stage.tasks]
    stage.version += 1
    for task in stage.tasks:
        task.version += 1

    def restore() -> None:
        stage.version = old_stage
        for task, version in old_tasks:
            task.version = version

    undo.append(restore)
