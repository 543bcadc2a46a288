"""Writes of one transaction, prepared when called and applied in lock order when it commits.

Preparing validates and converts every value at once (a bad value fails the call, before any SQL
runs); applying only executes statements on the transaction's Session. Keeping the two apart lets
``SqlStoreTransaction`` apply a step's writes in one fixed lock order and run them again when the
database reports a deadlock or serialization failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stabilize.errors import ConcurrencyError, DuplicateError, ValidationError
from stabilize.models.stage import StageExecution
from stabilize.models.status import WorkflowStatus
from stabilize.models.workflow import Workflow
from stabilize.persistence.sql import mapping
from stabilize.persistence.sql.dialects import GenericProfile
from stabilize.persistence.sql.rows import StageEdgeRow, StageRow, TaskRow, WorkflowRow, table_of
from stabilize.persistence.store.interface import WorkflowNotFoundError

RowValues = dict[str, Any]
#: Run after the commit: moves in-memory versions to what the rows now hold.
OnCommit = Callable[[], None]

# Core tables, not the ORM classes: plain INSERT/UPDATE statements skip the ORM's bulk and
# synchronize-session machinery, which cost more than the SQL itself for one stage.
WORKFLOWS = table_of(WorkflowRow)
STAGES = table_of(StageRow)

_TASK_UPDATE_COLUMNS = [c.key for c in table_of(TaskRow).columns if c.key not in ("id", "stage_id")]


@dataclass
class WriteContext:
    """What applying writes shares within one attempt of one transaction."""

    session: Session
    profile: GenericProfile
    #: Stage id -> the version its row holds after this transaction's earlier writes.
    versions: dict[str, int] = field(default_factory=dict)


@dataclass
class WorkflowInsert:
    """A new workflow with its stages, edges and tasks: one bulk INSERT per table."""

    rows: list[tuple[type[Any], list[RowValues]]]

    @classmethod
    def prepare(cls, workflow: Workflow) -> WorkflowInsert:
        row = mapping.workflow_values(workflow)
        stages, edges, tasks = _graph_values(workflow)
        return cls([(WorkflowRow, [row]), (StageRow, stages), (StageEdgeRow, edges), (TaskRow, tasks)])

    def apply(self, context: WriteContext) -> OnCommit | None:
        for row, values in self.rows:
            if values:
                context.session.execute(insert(table_of(row)), values)
        return None


@dataclass
class WorkflowStateUpdate:
    workflow_id: str
    values: RowValues

    @classmethod
    def prepare(cls, workflow: Workflow) -> WorkflowStateUpdate:
        return cls(workflow.id, mapping.workflow_state_values(workflow))

    def apply(self, context: WriteContext) -> OnCommit | None:
        result = context.session.execute(
            update(WORKFLOWS).where(WORKFLOWS.c.id == self.workflow_id).values(self.values)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise WorkflowNotFoundError(self.workflow_id)
        return None


@dataclass
class StageWrite:
    """``store_stage``: compare-and-set on version (and status) plus one task upsert; or, for a
    stage not stored yet, its insertion."""

    stage: StageExecution
    version: int
    phase: str | None
    state: RowValues
    tasks: list[RowValues]

    @classmethod
    def prepare(cls, stage: StageExecution, expected_phase: str | WorkflowStatus | None) -> StageWrite:
        if not isinstance(stage, StageExecution):
            raise ValidationError("stage", f"must be a StageExecution, got {type(stage).__name__}")
        phase = expected_phase.name if isinstance(expected_phase, WorkflowStatus) else expected_phase
        tasks = [mapping.task_values(t, stage.id, i, f"stage.tasks[{i}]") for i, t in enumerate(stage.tasks)]
        return cls(stage, stage.version, phase, mapping.stage_state_values(stage, "stage"), tasks)

    def apply(self, context: WriteContext) -> OnCommit | None:
        stage, session = self.stage, context.session
        expected = context.versions.get(stage.id, self.version)
        condition = [STAGES.c.id == stage.id, STAGES.c.version == expected]
        if self.phase is not None:
            condition.append(STAGES.c.status == self.phase)
        result = session.execute(
            update(STAGES).where(*condition).values(**self.state, version=expected + 1)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            written = [{**task, "version": task["version"] + 1} for task in self.tasks]
            context.profile.upsert(session, table_of(TaskRow), written, ["id"], _TASK_UPDATE_COLUMNS)
            context.versions[stage.id] = expected + 1
            return lambda: _set_versions(stage, expected + 1, written)
        if session.scalar(select(StageRow.version).where(StageRow.id == stage.id)) is not None:
            phase = f" and status {self.phase}" if self.phase is not None else ""
            raise ConcurrencyError(
                f"stage {stage.id}: compare-and-set failed (expected version {expected}{phase})"
            )
        self._insert(context, expected)
        context.versions[stage.id] = expected
        return None

    def _insert(self, context: WriteContext, version: int) -> None:
        stage, session = self.stage, context.session
        if not stage.has_execution():
            raise ValidationError("stage.execution", f"stage {stage.id} is not attached to a workflow")
        workflow_id = stage.execution.id
        if not session.scalar(select(WorkflowRow.id).where(WorkflowRow.id == workflow_id)):
            raise ValidationError("stage.execution", f"workflow {workflow_id!r} is not stored")
        position = session.scalar(
            select(func.coalesce(func.max(StageRow.position) + 1, 0)).where(
                StageRow.workflow_id == workflow_id
            )
        )
        values = {**mapping.stage_values(stage, workflow_id, position or 0, "stage"), "version": version}
        edges = mapping.edge_values(stage, workflow_id, "stage")
        try:
            session.execute(insert(STAGES), [values])
            if edges:
                session.execute(insert(table_of(StageEdgeRow)), edges)
            if self.tasks:
                session.execute(insert(table_of(TaskRow)), self.tasks)
        except IntegrityError as exc:
            raise DuplicateError(
                f"stage {stage.id}: ref id {stage.ref_id!r} or a task id is already stored"
                f" in workflow {workflow_id}"
            ) from exc


def _set_versions(stage: StageExecution, version: int, tasks: list[RowValues]) -> None:
    stage.version = version
    written = {row["id"]: row["version"] for row in tasks}
    for task in stage.tasks:
        task.version = written.get(task.id, task.version)


def _graph_values(workflow: Workflow) -> tuple[list[RowValues], list[RowValues], list[RowValues]]:
    """Row values of every stage, edge and task of a workflow, validated before any SQL runs."""
    stages: list[RowValues] = []
    edges: list[RowValues] = []
    tasks: list[RowValues] = []
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
