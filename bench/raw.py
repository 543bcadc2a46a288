# ruff: noqa: S608  (SQL text built from this module's constant column lists, never from input)
"""The ceiling: the raw driver (sqlite3 / psycopg) doing the minimum SQL for the same operation.

Same schema as ours (created by our migrations), same domain objects out, same transaction
boundaries, but no SQLAlchemy, no validation and no generality: hand-written statements for
exactly the four calls the ceiling is measured on (store, retrieve, store_stage with CAS, a page
of retrieve_by_application). Runs in our interpreter; not a store anyone should use.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from stabilize.errors import ConcurrencyError
from stabilize.models.ids import now_ms
from stabilize.models.stage import StageExecution, SyntheticStageOwner
from stabilize.models.status import WorkflowStatus
from stabilize.models.task import TaskExecution
from stabilize.models.workflow import PausedDetails, Trigger, Workflow, WorkflowType
from stabilize.persistence.store import WorkflowCriteria

WF_COLS = (
    "id, type, application, name, status, context, trigger, start_time, end_time, start_time_expiry,"
    " is_canceled, canceled_by, cancellation_reason, paused, pipeline_config_id, is_limit_concurrent,"
    " max_concurrent_executions, keep_waiting_pipelines, origin, config_version, created_at"
)
ST_COLS = (
    "id, workflow_id, position, ref_id, type, name, status, context, outputs, parent_stage_id,"
    " synthetic_stage_owner, start_time, end_time, start_time_expiry, scheduled_time, version"
)
TK_COLS = (
    "id, stage_id, position, name, implementing_class, status, start_time, end_time, stage_start,"
    " stage_end, loop_start, loop_end, task_exception_details, version"
)
TASK_UPSERT_SET = ", ".join(
    f"{c} = excluded.{c}"
    for c in (
        "position",
        "name",
        "implementing_class",
        "status",
        "start_time",
        "end_time",
        "stage_start",
        "stage_end",
        "loop_start",
        "loop_end",
        "task_exception_details",
        "version",
    )
)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


class RawStore:
    """The shared logic; subclasses bind the driver (placeholders, JSON, transactions)."""

    def _sql(self, sql: str) -> str:
        return sql

    def _json_in(self, value: Any) -> Any:
        return json.dumps(value)

    def _json_out(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    # transactions: begin/commit/rollback and a cursor
    def _begin_write(self) -> Any: ...
    def _begin_read(self) -> Any: ...
    def _commit(self) -> None: ...
    def _rollback(self) -> None: ...

    # -- writes -----------------------------------------------------------------------------------

    def store(self, w: Workflow) -> None:
        j = self._json_in
        cur = self._begin_write()
        try:
            cur.execute(
                self._sql(f"INSERT INTO workflows ({WF_COLS}) VALUES ({_marks(21)})"),
                (
                    w.id,
                    w.type.name,
                    w.application,
                    w.name,
                    w.status.name,
                    j(w.context),
                    j(w.trigger.to_dict()),
                    w.start_time,
                    w.end_time,
                    w.start_time_expiry,
                    w.is_canceled,
                    w.canceled_by,
                    w.cancellation_reason,
                    None,
                    w.pipeline_config_id,
                    w.is_limit_concurrent,
                    w.max_concurrent_executions,
                    w.keep_waiting_pipelines,
                    w.origin,
                    w.config_version,
                    now_ms(),
                ),
            )
            stages, edges, tasks = [], [], []
            for position, s in enumerate(w.stages):
                stages.append(
                    (
                        s.id,
                        w.id,
                        position,
                        s.ref_id,
                        s.type,
                        s.name,
                        s.status.name,
                        j(s.context),
                        j(s.outputs),
                        s.parent_stage_id,
                        s.synthetic_stage_owner.name if s.synthetic_stage_owner else None,
                        s.start_time,
                        s.end_time,
                        s.start_time_expiry,
                        s.scheduled_time,
                        s.version,
                    )
                )
                edges.extend((w.id, s.ref_id, r) for r in s.requisite_stage_ref_ids)
                tasks.extend(self._task_row(t, s.id, i, t.version) for i, t in enumerate(s.tasks))
            cur.executemany(self._sql(f"INSERT INTO stages ({ST_COLS}) VALUES ({_marks(16)})"), stages)
            if edges:
                cur.executemany(
                    self._sql(
                        "INSERT INTO stage_edges (workflow_id, ref_id, requisite_ref_id) VALUES (?, ?, ?)"
                    ),
                    edges,
                )
            if tasks:
                cur.executemany(self._sql(f"INSERT INTO tasks ({TK_COLS}) VALUES ({_marks(14)})"), tasks)
        except BaseException:
            self._rollback()
            raise
        self._commit()

    def _task_row(self, t: TaskExecution, stage_id: str, position: int, version: int) -> tuple[Any, ...]:
        return (
            t.id,
            stage_id,
            position,
            t.name,
            t.implementing_class,
            t.status.name,
            t.start_time,
            t.end_time,
            t.stage_start,
            t.stage_end,
            t.loop_start,
            t.loop_end,
            self._json_in(t.task_exception_details),
            version,
        )

    def store_stage(self, s: StageExecution, expected_phase: str | None = None) -> None:
        j = self._json_in
        sql = (
            "UPDATE stages SET status = ?, context = ?, outputs = ?, start_time = ?, end_time = ?,"
            " start_time_expiry = ?, scheduled_time = ?, version = version + 1 WHERE id = ? AND version = ?"
        )
        params: tuple[Any, ...] = (
            s.status.name,
            j(s.context),
            j(s.outputs),
            s.start_time,
            s.end_time,
            s.start_time_expiry,
            s.scheduled_time,
            s.id,
            s.version,
        )
        if expected_phase is not None:
            sql += " AND status = ?"
            params += (expected_phase,)
        cur = self._begin_write()
        try:
            cur.execute(self._sql(sql), params)
            if cur.rowcount != 1:
                raise ConcurrencyError(f"stage {s.id}: compare-and-set failed")
            cur.executemany(
                self._sql(
                    f"INSERT INTO tasks ({TK_COLS}) VALUES ({_marks(14)})"
                    f" ON CONFLICT (id) DO UPDATE SET {TASK_UPSERT_SET}"
                ),
                [self._task_row(t, s.id, i, t.version + 1) for i, t in enumerate(s.tasks)],
            )
        except BaseException:
            self._rollback()
            raise
        self._commit()
        s.version += 1
        for t in s.tasks:
            t.version += 1

    # -- reads ------------------------------------------------------------------------------------

    def retrieve(self, workflow_id: str) -> Workflow:
        cur = self._begin_read()
        try:
            cur.execute(self._sql(f"SELECT {WF_COLS} FROM workflows WHERE id = ?"), (workflow_id,))
            row = cur.fetchone()
            if row is None:
                raise LookupError(workflow_id)
            workflow = self._workflow(row)
            self._attach(cur, [workflow], "= ?", (workflow_id,))
        finally:
            self._commit()
        return workflow

    def retrieve_by_application(
        self, application: str, criteria: WorkflowCriteria | None = None
    ) -> Iterator[Workflow]:
        """Newest first; with a page size, the not-started and the started workflows are each
        read in index order up to the page size (no sort of the whole application)."""
        criteria = criteria or WorkflowCriteria()
        where = "application = ?"
        params: tuple[Any, ...] = (application,)
        if criteria.statuses:
            names = sorted(s.name for s in criteria.statuses)
            where += f" AND status IN ({_marks(len(names))})"
            params += tuple(names)
        if criteria.page_size:
            size = int(criteria.page_size)
            sql = (
                f"SELECT {WF_COLS} FROM (SELECT 0 AS k, * FROM (SELECT {WF_COLS} FROM workflows"
                f" WHERE {where} AND start_time IS NULL ORDER BY id DESC LIMIT {size}) AS a"
                f" UNION ALL SELECT 1 AS k, * FROM (SELECT {WF_COLS} FROM workflows WHERE {where}"
                f" AND start_time IS NOT NULL ORDER BY start_time DESC, id DESC LIMIT {size}) AS b) AS u"
                f" ORDER BY k, start_time DESC, id DESC LIMIT {size}"
            )
            params += params
        else:
            sql = f"SELECT {WF_COLS} FROM workflows WHERE {where}"
            sql += " ORDER BY start_time IS NULL DESC, start_time DESC, id DESC"
        cur = self._begin_read()
        try:
            cur.execute(self._sql(sql), params)
            workflows = [self._workflow(r) for r in cur.fetchall()]
            if workflows:
                ids = tuple(w.id for w in workflows)
                self._attach(cur, workflows, f"IN ({_marks(len(ids))})", ids)
        finally:
            self._commit()
        return iter(workflows)

    def _attach(self, cur: Any, workflows: list[Workflow], where: str, params: tuple[Any, ...]) -> None:
        """Stages, edges and tasks of ``workflows`` in three queries."""
        by_id = {w.id: w for w in workflows}
        cur.execute(
            self._sql(
                f"SELECT workflow_id, ref_id, requisite_ref_id FROM stage_edges WHERE workflow_id {where}"
            ),
            params,
        )
        requisites: dict[tuple[str, str], set[str]] = defaultdict(set)
        for wid, ref, req in cur.fetchall():
            requisites[(wid, ref)].add(req)
        cur.execute(
            self._sql(
                f"SELECT {ST_COLS} FROM stages WHERE workflow_id {where} ORDER BY workflow_id, position"
            ),
            params,
        )
        stages: dict[str, StageExecution] = {}
        j = self._json_out
        for r in cur.fetchall():
            stage = StageExecution(
                id=r[0],
                ref_id=r[3],
                type=r[4],
                name=r[5],
                status=WorkflowStatus[r[6]],
                context=j(r[7]),
                outputs=j(r[8]),
                requisite_stage_ref_ids=requisites.get((r[1], r[3]), set()),
                parent_stage_id=r[9],
                synthetic_stage_owner=SyntheticStageOwner[r[10]] if r[10] else None,
                start_time=r[11],
                end_time=r[12],
                start_time_expiry=r[13],
                scheduled_time=r[14],
                version=r[15],
            )
            by_id[r[1]].add_stage(stage)
            stages[stage.id] = stage
        cur.execute(
            self._sql(
                f"SELECT {', '.join('t.' + c.strip() for c in TK_COLS.split(','))} FROM tasks t"
                f" JOIN stages s ON s.id = t.stage_id WHERE s.workflow_id {where}"
                " ORDER BY t.stage_id, t.position"
            ),
            params,
        )
        for r in cur.fetchall():
            stages[r[1]].add_task(
                TaskExecution(
                    id=r[0],
                    name=r[3],
                    implementing_class=r[4],
                    status=WorkflowStatus[r[5]],
                    start_time=r[6],
                    end_time=r[7],
                    stage_start=bool(r[8]),
                    stage_end=bool(r[9]),
                    loop_start=bool(r[10]),
                    loop_end=bool(r[11]),
                    task_exception_details=j(r[12]),
                    version=r[13],
                )
            )

    def _workflow(self, r: Any) -> Workflow:
        j = self._json_out
        paused = j(r[13])
        return Workflow(
            id=r[0],
            type=WorkflowType[r[1]],
            application=r[2],
            name=r[3],
            status=WorkflowStatus[r[4]],
            context=j(r[5]),
            trigger=Trigger.from_dict(j(r[6])),
            start_time=r[7],
            end_time=r[8],
            start_time_expiry=r[9],
            is_canceled=bool(r[10]),
            canceled_by=r[11],
            cancellation_reason=r[12],
            paused=PausedDetails(**paused) if paused else None,
            pipeline_config_id=r[14],
            is_limit_concurrent=bool(r[15]),
            max_concurrent_executions=r[16],
            keep_waiting_pipelines=bool(r[17]),
            origin=r[18],
            config_version=r[19],
        )


class RawSqliteStore(RawStore):
    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.cur = self.conn.cursor()

    def _begin_write(self) -> Any:
        self.cur.execute("BEGIN IMMEDIATE")
        return self.cur

    def _begin_read(self) -> Any:
        self.cur.execute("BEGIN")
        return self.cur

    def _commit(self) -> None:
        self.cur.execute("COMMIT")

    def _rollback(self) -> None:
        self.cur.execute("ROLLBACK")


class RawPostgresStore(RawStore):
    def __init__(self, url: str) -> None:
        import psycopg
        from psycopg.types.json import Jsonb

        self._jsonb = Jsonb
        self.conn = psycopg.connect(url)
        self.cur = self.conn.cursor()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _json_in(self, value: Any) -> Any:
        return self._jsonb(value)

    def _begin_write(self) -> Any:
        return self.cur

    _begin_read = _begin_write

    def _commit(self) -> None:
        self.conn.commit()

    def _rollback(self) -> None:
        self.conn.rollback()


def open_raw(dialect: str, url: str) -> RawStore:
    """Create our schema with our migrations, then hand the database to the raw driver."""
    from stabilize.persistence.sql.engine import dispose_engines, normalize_url
    from stabilize.persistence.sql.store import SqlWorkflowStore

    SqlWorkflowStore(url, create_tables=True)
    dispose_engines()
    parsed = normalize_url(url)
    if dialect == "sqlite":
        return RawSqliteStore(str(parsed.database))
    if dialect == "postgresql":
        return RawPostgresStore(parsed.set(drivername="postgresql").render_as_string(hide_password=False))
    raise ValueError(f"no raw ceiling for {dialect}")
