"""The one store, for every dialect.

The calls an engine makes per step (``store_stage``, ``transaction()``, ``store``, ``retrieve``,
the merge) run prebuilt statements on the driver's cursor (``dbapi``, ``prepared``); the
occasional ones (pause, resume, cancel, delete, purge, listings) use Sessions and Core
connections. Either way a call is one transaction, begun and ended here or in ``dbapi``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL, ColumnElement, Connection, Engine, Select, bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from stabilize.errors import DatabaseUnavailableError, DuplicateError, ValidationError
from stabilize.models.ids import now_ms
from stabilize.models.stage import StageExecution
from stabilize.models.status import COMPLETED_STATUSES, WorkflowStatus
from stabilize.models.workflow import Workflow
from stabilize.persistence.sql import dbapi, mapping, queries
from stabilize.persistence.sql.dialects.sqlite import WRITE_INTENT
from stabilize.persistence.sql.engine import engine_profile, get_engine, mask
from stabilize.persistence.sql.faults import RetryPolicy, retry_transient, translated
from stabilize.persistence.sql.health import HealthReport, check_health, database_is_healthy
from stabilize.persistence.sql.lineage import merge_outputs, topological_order
from stabilize.persistence.sql.migrate import ensure_current, upgrade
from stabilize.persistence.sql.prepared import Cursor, Prepared
from stabilize.persistence.sql.rows import ProcessedMessageRow, StageRow, WorkflowRow
from stabilize.persistence.sql.transaction import SqlStoreTransaction
from stabilize.persistence.sql.writes import WriteContext
from stabilize.persistence.store.interface import WorkflowCriteria, WorkflowNotFoundError, WorkflowStore

if TYPE_CHECKING:
    from stabilize.queue.interface import Queue

_PROCESSED_BATCH = 1000


class SqlWorkflowStore(WorkflowStore):
    """Workflow persistence on any SQLAlchemy database: SQLite, PostgreSQL, MySQL/MariaDB.

    Args:
        connection: a URL (any SQLAlchemy URL, ``postgres://...``, or a bare SQLite file path)
            or an existing ``Engine``.
        create_tables: upgrade the schema to the newest migration first.
        engine_options: extra ``create_engine`` keyword arguments (pool size, timeouts).
        retry_policy: how often a transaction that lost a deadlock or serialization race runs
            again (a failed compare-and-set never does).
    """

    def __init__(
        self,
        connection: str | URL | Engine,
        create_tables: bool = False,
        *,
        engine_options: dict[str, Any] | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self.engine = get_engine(connection, **(engine_options or {}))
        self.retry_policy = retry_policy or RetryPolicy()
        self.profile = engine_profile(self.engine)
        #: Whether reads of several statements may run without a transaction; None until known.
        self._autocommit_reads: bool | None = None
        self._reader: Engine | None = None
        self._writes = sessionmaker(
            self.engine.execution_options(**{WRITE_INTENT: True}), expire_on_commit=False, autoflush=False
        )
        if create_tables:
            upgrade(self.engine)
        else:
            # Unreachable for now: is_healthy() reports it and the first call fails clearly.
            with suppress(DatabaseUnavailableError), translated(self.engine):
                ensure_current(self.engine)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({mask(self.engine.url)!r})"

    # -- sessions ---------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read on a Core connection (rows, no ORM identity map to fill): in a transaction, or
        in autocommit where the profile says that reads the same (see ``read_isolation``)."""
        with translated(self.engine), self._read_engine().connect() as connection:
            yield connection

    @contextmanager
    def _fast_read(self, *, single_statement: bool = False) -> Iterator[Cursor]:
        """A read of prepared statements on the driver's cursor (see ``dbapi``). One statement
        sees one snapshot on every database, so it needs no transaction; several need one
        unless each would see its own snapshot anyway (``_reads_alike``)."""
        autocommit = single_statement or bool(self._autocommit_reads)
        with dbapi.transaction(self.engine, write=False, autocommit=autocommit) as unit:
            if self._autocommit_reads is None:
                self._autocommit_reads = self._reads_alike(unit.cursor.dbapi_connection)
            yield unit.cursor

    def _read_engine(self) -> Engine:
        """The engine of Core reads: in autocommit where ``_reads_alike`` says so."""
        if self._autocommit_reads is None:
            if self.profile.read_isolation is None:
                self._autocommit_reads = False
            else:
                with self.engine.connect() as connection:
                    self._autocommit_reads = self._reads_alike(connection.connection.dbapi_connection)
        if not self._autocommit_reads:
            return self.engine
        if self._reader is None:
            self._reader = self.engine.execution_options(isolation_level=self.profile.read_isolation)
        return self._reader

    def _reads_alike(self, dbapi_connection: Any) -> bool:
        """Whether reads see the same in or out of a transaction: on a READ COMMITTED database,
        where every statement takes its own snapshot anyway (see ``read_isolation``)."""
        return self.profile.read_isolation is not None and (
            self.engine.dialect.get_isolation_level(dbapi_connection) == "READ COMMITTED"
        )

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """One write transaction: commit at the end, roll back on any error."""
        with translated(self.engine), self._writes.begin() as session:
            yield session

    # -- workflows --------------------------------------------------------------------------

    def store(self, execution: Workflow) -> None:
        try:
            with self.transaction() as txn:
                txn.store_workflow(execution)
        except IntegrityError as exc:
            if self.exists(execution.id):
                raise DuplicateError(f"workflow.id: {execution.id!r} is already stored") from None
            raise DuplicateError(f"workflow {execution.id!r}: a stage or task id is already stored") from exc

    @retry_transient
    def retrieve(self, execution_id: str) -> Workflow:
        """The workflow, its stages, edges and tasks: four prebuilt queries whatever its size."""
        params = {"workflow_id": execution_id}
        with self._fast_read() as cursor:
            rows = cursor.fetch_rows(_WORKFLOW_BY_ID, params)
            if not rows:
                raise WorkflowNotFoundError(execution_id)
            workflow = mapping.workflow_from_row(rows[0])
            loaded = _load_stages(lambda prepared: cursor.fetch_rows(prepared, params), _WHOLE_WORKFLOW)
        for _, stage in loaded:
            workflow.add_stage(stage)
        return workflow

    @retry_transient
    def retrieve_execution_summary(self, execution_id: str) -> Workflow:
        with self._fast_read(single_statement=True) as cursor:
            rows = cursor.fetch_rows(_WORKFLOW_BY_ID, {"workflow_id": execution_id})
        if not rows:
            raise WorkflowNotFoundError(execution_id)
        return mapping.workflow_from_row(rows[0])

    @retry_transient
    def exists(self, execution_id: str) -> bool:
        with self._fast_read(single_statement=True) as cursor:
            return bool(cursor.fetch(_WORKFLOW_EXISTS, {"workflow_id": execution_id}))

    @retry_transient
    def delete(self, execution_id: str) -> None:
        # Stages, tasks and edges go with the workflow through ON DELETE CASCADE.
        with self._write() as session:
            session.execute(delete(WorkflowRow).where(WorkflowRow.id == execution_id))

    def update_status(self, execution: Workflow) -> None:
        with self.transaction() as txn:
            txn.update_workflow_status(execution)

    def pause(self, execution_id: str, paused_by: str) -> None:
        self._set_workflow(
            execution_id,
            dict(
                status=WorkflowStatus.PAUSED.name,
                paused={"paused_by": paused_by, "pause_time": now_ms(), "resume_time": None, "paused_ms": 0},
            ),
        )

    @retry_transient
    def resume(self, execution_id: str) -> None:
        with self._write() as session:
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
            execution_id, dict(is_canceled=True, canceled_by=canceled_by, cancellation_reason=reason)
        )

    @retry_transient
    def _set_workflow(self, execution_id: str, values: dict[str, Any]) -> None:
        mapping.check_workflow_columns(values, "workflow")
        with self._write() as session:
            result = session.execute(update(WorkflowRow).where(WorkflowRow.id == execution_id).values(values))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise WorkflowNotFoundError(execution_id)

    # -- stages -----------------------------------------------------------------------------

    def store_stage(self, stage: StageExecution, expected_phase: str | None = None) -> None:
        """Compare-and-set on ``version`` (and status), then upsert the tasks; or insert a new stage."""
        with self.transaction() as txn:
            txn.store_stage(stage, expected_phase)

    def add_stage(self, stage: StageExecution) -> None:
        self.store_stage(stage)

    @retry_transient
    def remove_stage(self, execution: Workflow, stage_id: str) -> None:
        with self._write() as session:
            session.execute(delete(StageRow).where(StageRow.id == stage_id))

    def retrieve_stage(self, stage_id: str) -> StageExecution:
        """The stage with a partial workflow: itself, its requisites and its synthetic children."""
        with self._read() as connection:
            row = connection.execute(queries.STAGE_BY_ID, {"stage_id": stage_id}).first()
            if row is None:
                raise ValueError(f"stage {stage_id!r} not found")
            workflow_params = {"workflow_id": row.workflow_id}
            workflow_row = connection.execute(queries.WORKFLOW_BY_ID, workflow_params).first()
            assert workflow_row is not None  # the foreign key guarantees it
            workflow = mapping.workflow_from_row(workflow_row)
            related = (
                (StageRow.id == stage_id)
                | queries.upstream_filter(row.workflow_id, row.ref_id)
                | ((StageRow.workflow_id == row.workflow_id) & (StageRow.parent_stage_id == stage_id))
            )
            stages = self._load_stages(connection, related)
        for stage in stages:
            workflow.stages.append(stage)
            stage.set_execution_strong(workflow)
        return next(s for s in stages if s.id == stage_id)

    def get_upstream_stages(self, execution_id: str, stage_ref_id: str) -> list[StageExecution]:
        with self._read() as connection:
            return self._load_stages(connection, queries.upstream_filter(execution_id, stage_ref_id))

    def get_downstream_stages(self, execution_id: str, stage_ref_id: str) -> list[StageExecution]:
        with self._read() as connection:
            return self._load_stages(connection, queries.downstream_filter(execution_id, stage_ref_id))

    def get_synthetic_stages(self, execution_id: str, parent_stage_id: str) -> list[StageExecution]:
        with self._read() as connection:
            return self._load_stages(
                connection,
                (StageRow.workflow_id == execution_id) & (StageRow.parent_stage_id == parent_stage_id),
            )

    def _load_stages(self, connection: Connection, condition: ColumnElement[bool]) -> list[StageExecution]:
        statements = (
            queries.stages_where(condition),
            queries.edges_of_stages(condition),
            queries.tasks_of_stages(condition),
        )
        return [stage for _, stage in _load_stages(lambda s: connection.execute(s).all(), statements)]

    @retry_transient
    def get_merged_ancestor_outputs(self, execution_id: str, stage_ref_id: str) -> dict[str, Any]:
        """Ancestor outputs and the edges between ancestors in one round trip (see queries)."""
        params = {"workflow_id": execution_id, "ref_id": stage_ref_id}
        outputs: dict[str, dict[str, Any]] = {}
        edges: list[tuple[str, str]] = []
        statement = _ANCESTOR_OUTPUTS[self.profile.lateral_recursion]
        with self._fast_read(single_statement=True) as cursor:
            for ref, document, requisite in cursor.fetch_rows(statement, params):
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
        statement, params = queries.workflow_page(column, value, criteria)
        with self._read() as connection:
            workflows = [mapping.workflow_from_row(r) for r in connection.execute(statement, params)]
            if workflows:
                by_id = {w.id: w for w in workflows}
                statements = (
                    queries.STAGES_OF_WORKFLOWS,
                    queries.EDGES_OF_WORKFLOWS,
                    queries.TASKS_OF_WORKFLOWS,
                )
                page = {"workflow_ids": list(by_id)}
                loaded = _load_stages(lambda s: connection.execute(s, page).all(), statements)
                for workflow_id, stage in loaded:
                    by_id[workflow_id].add_stage(stage)
        return workflows

    def count_by_application(self, application: str) -> int:
        with self._read() as connection:
            return (
                connection.scalar(
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
            with self._read() as connection:
                return connection.scalar(select(func.count()).select_from(candidates.subquery())) or 0
        purged = 0
        while True:
            removed = self._purge_batch(candidates.order_by(WorkflowRow.id).limit(batch_size))
            purged += removed
            if removed < batch_size:
                return purged

    @retry_transient
    def _purge_batch(self, batch: Select[str]) -> int:
        with self._write() as session:
            ids = list(session.scalars(batch))
            if ids:
                session.execute(delete(ProcessedMessageRow).where(ProcessedMessageRow.execution_id.in_(ids)))
                session.execute(delete(WorkflowRow).where(WorkflowRow.id.in_(ids)))
        return len(ids)

    # -- messages ---------------------------------------------------------------------------

    def is_message_processed(self, message_id: str) -> bool:
        with self._read() as connection:
            found = connection.scalar(
                select(ProcessedMessageRow.message_id).where(ProcessedMessageRow.message_id == message_id)
            )
            return found is not None

    def mark_message_processed(
        self, message_id: str, handler_type: str | None = None, execution_id: str | None = None
    ) -> None:
        with self.transaction() as txn:
            txn.mark_message_processed(message_id, handler_type, execution_id)

    def cleanup_old_processed_messages(self, max_age_hours: float = 24.0) -> int:
        """Delete marks older than ``max_age_hours`` in batches, one short transaction each."""
        cutoff = now_ms() - int(max_age_hours * 3_600_000)
        deleted = 0
        while True:
            removed = self._cleanup_batch(cutoff)
            deleted += removed
            if removed < _PROCESSED_BATCH:
                return deleted

    @retry_transient
    def _cleanup_batch(self, cutoff: int) -> int:
        with self._write() as session:
            ids = session.scalars(
                select(ProcessedMessageRow.message_id)
                .where(ProcessedMessageRow.processed_at < cutoff)
                .limit(_PROCESSED_BATCH)
            ).all()
            if ids:
                session.execute(delete(ProcessedMessageRow).where(ProcessedMessageRow.message_id.in_(ids)))
        return len(ids)

    # -- health and transactions ------------------------------------------------------------

    def is_healthy(self) -> bool:
        """True when the database answers and its schema is one this code can use (at head, or
        ahead during a rolling deploy); False, never an exception, otherwise."""
        return database_is_healthy(self.engine)

    def health(self) -> HealthReport:
        """Reachability, schema revision against head, queue depth and age, dead letters; see
        ``stabilize.persistence.sql.health``. Never raises for a database problem."""
        return check_health(self.engine)

    @contextmanager
    def transaction(self, queue: Queue | None = None) -> Iterator[SqlStoreTransaction]:
        """One database transaction for a whole engine step (see ``SqlStoreTransaction``).

        The block only collects the step's writes; they run when it ends. If the block raises,
        nothing is written.
        """
        txn = SqlStoreTransaction(self.engine, queue)
        yield txn
        self._commit(txn)
        txn.after_commit()

    @retry_transient
    def _commit(self, txn: SqlStoreTransaction) -> None:
        with dbapi.transaction(self.engine, write=True, core=txn.has_effects) as unit:
            on_commit = txn.apply(WriteContext(unit.cursor, self.profile, connection=unit.connection))
        for action in on_commit:
            action()


def _load_stages(
    fetch: Callable[[Any], Sequence[Any]], statements: tuple[Any, Any, Any]
) -> list[tuple[str, StageExecution]]:
    """(workflow id, stage) for the stages the statements select (stages, their edges, their
    tasks), with requisites and tasks, in three queries whatever their number; ``fetch`` runs
    one statement and returns all its rows."""
    stages_query, edges_query, tasks_query = statements
    rows = fetch(stages_query)
    if not rows:
        return []
    loaded = mapping.stages_from_rows(rows, fetch(edges_query))
    mapping.add_tasks({stage.id: stage for _, stage in loaded}, fetch(tasks_query))
    return loaded


_WORKFLOW_BY_ID = Prepared(queries.WORKFLOW_BY_ID)
_WORKFLOW_EXISTS = Prepared(select(WorkflowRow.id).where(WorkflowRow.id == bindparam("workflow_id")))
_WHOLE_WORKFLOW = (
    Prepared(queries.STAGES_OF_WORKFLOW),
    Prepared(queries.EDGES_OF_WORKFLOW),
    Prepared(queries.TASKS_OF_WORKFLOW),
)
_ANCESTOR_OUTPUTS = {
    lateral: Prepared(queries.ancestor_outputs_and_edges(lateral)) for lateral in (False, True)
}
