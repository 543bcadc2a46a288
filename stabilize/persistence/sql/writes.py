"""Writes of one transaction, prepared when called and applied in lock order when it commits.

Preparing validates and converts every value at once (a bad value fails the call, before any SQL
runs); applying only executes prebuilt statements on the transaction's cursor (``dbapi``). Keeping
the two apart lets ``SqlStoreTransaction`` apply a step's writes in one fixed lock order and run
them again when the database reports a deadlock or serialization failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from stabilize.errors import ConcurrencyError, DuplicateError, ValidationError
from stabilize.models.stage import StageExecution
from stabilize.models.status import WorkflowStatus
from stabilize.models.task import TaskExecution
from stabilize.models.workflow import Workflow
from stabilize.persistence.sql import mapping
from stabilize.persistence.sql.dialects import GenericProfile
from stabilize.persistence.sql.prepared import Cursor, Prepared
from stabilize.persistence.sql.rows import StageEdgeRow, StageRow, TaskRow, WorkflowRow, table_of
from stabilize.persistence.store.interface import WorkflowNotFoundError

RowValues = dict[str, Any]
#: Tasks with the values of their rows, in their stage's order.
TaskRows = list[tuple[TaskExecution, RowValues]]
#: Run after the commit: moves in-memory versions to what the rows now hold.
OnCommit = Callable[[], None]

WORKFLOWS = table_of(WorkflowRow)
STAGES = table_of(StageRow)
EDGES = table_of(StageEdgeRow)
TASKS = table_of(TaskRow)

TASK_UPDATE_COLUMNS = tuple(c.key for c in TASKS.columns if c.key not in ("id", "stage_id"))


def _inserts(table: Table) -> Prepared:
    return Prepared(insert(table))


INSERT_WORKFLOW, INSERT_STAGES, INSERT_EDGES, INSERT_TASKS = map(_inserts, (WORKFLOWS, STAGES, EDGES, TASKS))


def _state_update(table: Table, key_bind: str, columns: list[str], *where: Any) -> Prepared:
    """UPDATE of ``columns`` (bound by their own names) of the row whose id is ``key_bind``."""
    return Prepared(
        update(table)
        .where(table.c.id == bindparam(key_bind), *where)
        .values({c: bindparam(c, type_=table.c[c].type) for c in columns})
    )


_STAGE_STATE = list(mapping.STAGE_STATE_COLUMNS)
_CAS = _state_update(
    STAGES, "cas_id", [*_STAGE_STATE, "version"], STAGES.c.version == bindparam("cas_version")
)
_CAS_PHASE = _state_update(
    STAGES,
    "cas_id",
    [*_STAGE_STATE, "version"],
    STAGES.c.version == bindparam("cas_version"),
    STAGES.c.status == bindparam("cas_phase"),
)
_WORKFLOW_STATE = _state_update(WORKFLOWS, "w_id", list(mapping.WORKFLOW_STATE_COLUMNS))
#: A stored stage's tasks are updated in place, matched by id, stage and position; only a task the
#: stage did not have yet, or one that moved, needs the upsert. The upsert's INSERT attempt costs a
#: foreign-key check per row, and setting ``position`` (indexed) rewrites an index entry even when
#: its value is the same: together twice the cost of the write itself on SQLite.
_UPDATE_TASKS = Prepared(
    update(TASKS)
    .where(
        TASKS.c.id == bindparam("id"),
        TASKS.c.stage_id == bindparam("stage_id"),
        TASKS.c.position == bindparam("position"),
    )
    .values({c: bindparam(c, type_=TASKS.c[c].type) for c in TASK_UPDATE_COLUMNS if c != "position"})
)
_STAGE_VERSION = Prepared(select(STAGES.c.version).where(STAGES.c.id == bindparam("stage_id")))
_WORKFLOW_EXISTS = Prepared(select(WORKFLOWS.c.id).where(WORKFLOWS.c.id == bindparam("workflow_id")))
_NEXT_POSITION = Prepared(
    select(func.coalesce(func.max(STAGES.c.position) + 1, 0)).where(
        STAGES.c.workflow_id == bindparam("workflow_id")
    )
)


@dataclass
class WriteContext:
    """What applying writes shares within one attempt of one transaction."""

    cursor: Cursor
    profile: GenericProfile
    #: The Core connection of a transaction that runs caller statements (effects), else None.
    connection: Connection | None = None
    #: Stage id -> the version its row holds after this transaction's earlier writes.
    versions: dict[str, int] = field(default_factory=dict)


@dataclass
class WorkflowInsert:
    """A new workflow with its stages, edges and tasks: one batched INSERT per table."""

    rows: list[tuple[Prepared, list[RowValues]]]
    tasks: TaskRows

    @classmethod
    def prepare(cls, workflow: Workflow) -> WorkflowInsert:
        row = mapping.workflow_values(workflow)
        stages, edges, tasks = _graph_values(workflow)
        task_rows = [values for _, values in tasks]
        inserts = [(INSERT_WORKFLOW, [row]), (INSERT_STAGES, stages), (INSERT_EDGES, edges)]
        return cls([*inserts, (INSERT_TASKS, task_rows)], tasks)

    def apply(self, context: WriteContext) -> OnCommit | None:
        for statement, values in self.rows:
            context.cursor.run_many(statement, values)
        return lambda: _stored(self.tasks)


@dataclass
class WorkflowStateUpdate:
    workflow_id: str
    values: RowValues

    @classmethod
    def prepare(cls, workflow: Workflow) -> WorkflowStateUpdate:
        return cls(workflow.id, mapping.workflow_state_values(workflow))

    def apply(self, context: WriteContext) -> OnCommit | None:
        if context.cursor.run(_WORKFLOW_STATE, {**self.values, "w_id": self.workflow_id}) == 0:
            raise WorkflowNotFoundError(self.workflow_id)
        return None


@dataclass
class StageWrite:
    """``store_stage``: compare-and-set on version (and status) plus one upsert of the tasks whose
    rows change; or, for a stage not stored yet, its insertion.

    A task whose row would not change is left alone, as upstream Stabilize does: its version stays,
    and a step that only moves the stage costs no task statement (on a server, a round trip)."""

    stage: StageExecution
    version: int
    phase: str | None
    state: RowValues
    #: Every task with its row values (validated), in the stage's order.
    tasks: TaskRows

    @classmethod
    def prepare(cls, stage: StageExecution, expected_phase: str | WorkflowStatus | None) -> StageWrite:
        if not isinstance(stage, StageExecution):
            raise ValidationError("stage", f"must be a StageExecution, got {type(stage).__name__}")
        phase = expected_phase.name if isinstance(expected_phase, WorkflowStatus) else expected_phase
        tasks = [
            (t, mapping.task_values(t, stage.id, i, f"stage.tasks[{i}]")) for i, t in enumerate(stage.tasks)
        ]
        return cls(stage, stage.version, phase, mapping.stage_state_values(stage, "stage"), tasks)

    def apply(self, context: WriteContext) -> OnCommit | None:
        stage, cursor = self.stage, context.cursor
        expected = context.versions.get(stage.id, self.version)
        params = {**self.state, "version": expected + 1, "cas_id": stage.id, "cas_version": expected}
        if self.phase is None:
            matched = cursor.run(_CAS, params)
        else:
            matched = cursor.run(_CAS_PHASE, {**params, "cas_phase": self.phase})
        if matched == 1:
            written = [
                (task, {**values, "version": values["version"] + 1})
                for task, values in self.tasks
                if task._row_image is None or task._row_image != mapping.row_image(values.values())
            ]
            rows = [row for _, row in written]
            if cursor.run_many(_UPDATE_TASKS, rows) != len(rows):
                context.profile.upsert(cursor, TASKS, rows, ("id",), TASK_UPDATE_COLUMNS)
            context.versions[stage.id] = expected + 1
            return lambda: _compared_and_set(stage, expected + 1, written)
        if cursor.fetch(_STAGE_VERSION, {"stage_id": stage.id}):
            phase = f" and status {self.phase}" if self.phase is not None else ""
            raise ConcurrencyError(
                f"stage {stage.id}: compare-and-set failed (expected version {expected}{phase})"
            )
        self._insert(context, expected)
        context.versions[stage.id] = expected
        return lambda: _stored(self.tasks)

    def _insert(self, context: WriteContext, version: int) -> None:
        stage, cursor = self.stage, context.cursor
        if not stage.has_execution():
            raise ValidationError("stage.execution", f"stage {stage.id} is not attached to a workflow")
        workflow_id = stage.execution.id
        if not cursor.fetch(_WORKFLOW_EXISTS, {"workflow_id": workflow_id}):
            raise ValidationError("stage.execution", f"workflow {workflow_id!r} is not stored")
        ((position,),) = cursor.fetch(_NEXT_POSITION, {"workflow_id": workflow_id})
        values = {**mapping.stage_values(stage, workflow_id, position or 0, "stage"), "version": version}
        edges = mapping.edge_values(stage, workflow_id, "stage")
        try:
            cursor.run_many(INSERT_STAGES, [values])
            cursor.run_many(INSERT_EDGES, edges)
            cursor.run_many(INSERT_TASKS, [row for _, row in self.tasks])
        except IntegrityError as exc:
            raise DuplicateError(
                f"stage {stage.id}: ref id {stage.ref_id!r} or a task id is already stored"
                f" in workflow {workflow_id}"
            ) from exc


def _compared_and_set(stage: StageExecution, version: int, tasks: TaskRows) -> None:
    """After a compare-and-set commits: the stage's version, then its written tasks' (``_stored``)."""
    stage.version = version
    _stored(tasks)


def _stored(tasks: TaskRows) -> None:
    """After the commit: the tasks take the versions their rows now hold, and their rows' images."""
    for task, row in tasks:
        task.version = row["version"]
        task._row_image = mapping.row_image(row.values())


def _graph_values(
    workflow: Workflow,
) -> tuple[list[RowValues], list[RowValues], TaskRows]:
    """Row values of every stage, edge and task (with the task) of a workflow, validated before
    any SQL runs."""
    stages: list[RowValues] = []
    edges: list[RowValues] = []
    tasks: TaskRows = []
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
            (task, mapping.task_values(task, stage.id, i, f"{path}.tasks[{i}]"))
            for i, task in enumerate(stage.tasks)
        )
    return stages, edges, tasks
