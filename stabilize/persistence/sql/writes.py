"""Writes of one transaction: prepared when called, applied in lock order when it commits.

Preparing validates and encodes every value at once (a bad value fails the call, before any SQL
runs); applying runs prebuilt statements on the unit of work's connection. Keeping the two apart
lets ``SqlStoreTransaction`` apply a step's writes in one fixed lock order, and run them all
again when the database reports a deadlock or serialization failure. What the objects in memory
learn from a write (a stage's new version, a task's) is returned as an action to run once the
transaction has committed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import CTE, ColumnElement, Connection, Table, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from stabilize.models.stage import StageExecution
from stabilize.models.status import WorkflowStatus
from stabilize.models.task import TaskExecution
from stabilize.models.workflow import Workflow
from stabilize.persistence.errors import ConcurrencyError, DuplicateError, ValidationError
from stabilize.persistence.sql import mapping
from stabilize.persistence.sql.dialects import GenericProfile
from stabilize.persistence.sql.dialects.base import RowLimit, rowcount
from stabilize.persistence.sql.images import Image, TaskImages, image_of_task, with_version
from stabilize.persistence.sql.queries import WORKFLOW_EXISTS
from stabilize.persistence.sql.step import StepPart, bind
from stabilize.persistence.sql.types import checker
from stabilize.persistence.sql.units import NeedsTransaction
from stabilize.persistence.store.interface import WorkflowNotFoundError

RowValues = dict[str, Any]
#: Run after the commit: moves in-memory versions to what the rows now hold.
OnCommit = Callable[[], None]

WORKFLOWS = mapping.WORKFLOWS.table
STAGES = mapping.STAGES.table
EDGES = mapping.EDGE_TABLE
TASKS = mapping.TASKS.table

_INSERT = {table: insert(table) for table in (WORKFLOWS, STAGES, EDGES, TASKS)}
_TASK_UPDATE_COLUMNS = (*mapping.TASKS.state, "version")


def _state_update(table: Table, state: tuple[str, ...], *where: Any) -> Any:
    """UPDATE of the ``state`` columns (bound by their own names) of the row ``key_id``."""
    return (
        update(table)
        .where(table.c.id == bindparam("key_id"), *where)
        .values({c: bindparam(c, type_=table.c[c].type) for c in state})
    )


_STAGE_CAS = (*mapping.STAGES.state, "version")
#: The compare-and-set of ``store_stage``: every state column, on version (and status).
_CAS = _state_update(STAGES, _STAGE_CAS, STAGES.c.version == bindparam("cas_version"))
_CAS_PHASE = _state_update(
    STAGES,
    _STAGE_CAS,
    STAGES.c.version == bindparam("cas_version"),
    STAGES.c.status == bindparam("cas_phase", type_=STAGES.c.status.type),
)
_WORKFLOW_STATE = _state_update(WORKFLOWS, mapping.WORKFLOWS.state)
#: A stored stage's tasks are updated in place, matched by id, stage and position; only a task the
#: stage did not have yet, or one that moved, needs the upsert. The upsert's INSERT attempt costs a
#: foreign-key check per row, and setting ``position`` (indexed) rewrites an index entry even when
#: its value is the same: together twice the cost of the write itself on SQLite.
_UPDATE_TASKS = (
    update(TASKS)
    .where(
        TASKS.c.id == bindparam("key_id"),
        TASKS.c.stage_id == bindparam("key_stage_id"),
        TASKS.c.position == bindparam("key_position"),
    )
    .values({c: bindparam(c, type_=TASKS.c[c].type) for c in _TASK_UPDATE_COLUMNS})
)


def _task_update(values: RowValues) -> RowValues:
    """``_UPDATE_TASKS``' parameters for a task row: a parameter named after a column not in the
    statement's SET would be taken as one more value to set."""
    params = {c: values[c] for c in _TASK_UPDATE_COLUMNS}
    params.update(key_id=values["id"], key_stage_id=values["stage_id"], key_position=values["position"])
    return params


_TASK_UPSERT_COLUMNS = tuple(c.key for c in TASKS.columns if c.key not in ("id", "stage_id"))
_STAGE_VERSION = select(STAGES.c.version).where(STAGES.c.id == bindparam("stage_id"))
_NEXT_POSITION = select(func.coalesce(func.max(STAGES.c.position) + 1, 0)).where(
    STAGES.c.workflow_id == bindparam("workflow_id")
)


@dataclass
class WriteContext:
    """What applying writes shares within one attempt of one transaction."""

    connection: Connection
    profile: GenericProfile
    images: TaskImages
    #: Whether the writes run as a unit of one statement (``Unit.WRITE_ONE``), which commits by
    #: itself where the dialect allows: a write that finds it needs more raises ``NeedsTransaction``.
    single: bool = False
    #: Stage id -> the version its row holds after this transaction's earlier writes.
    versions: dict[str, int] = field(default_factory=dict)


@dataclass
class _TaskWrite:
    """A task with its row values and what its row will hold (its image) if left alone."""

    task: TaskExecution
    values: RowValues
    image: Image | None


def _task_writes(
    tasks: list[TaskExecution], stage_id: str, path: str, limit: RowLimit | None
) -> list[_TaskWrite]:
    return [
        _TaskWrite(
            task,
            mapping.check_size(
                mapping.task_values(task, stage_id, i, f"{path}.tasks[{i}]"), limit, f"{path}.tasks[{i}]"
            ),
            image_of_task(task, stage_id, i, task.version) if isinstance(task, TaskExecution) else None,
        )
        for i, task in enumerate(tasks)
    ]


def _remember(images: TaskImages, written: list[_TaskWrite]) -> None:
    """After the commit: written tasks take their rows' versions and images."""
    for write in written:
        version = write.values["version"]
        write.task.version = version
        images.remember(write.task, with_version(write.image, version))


@dataclass
class WorkflowInsert:
    """A new workflow with its stages, edges and tasks: one batched INSERT per table."""

    rows: list[tuple[Table, list[RowValues]]]
    tasks: list[_TaskWrite]
    #: One INSERT per table: never a write of one statement.
    single = False

    @classmethod
    def prepare(cls, workflow: Workflow, limit: RowLimit | None = None) -> WorkflowInsert:
        """Check and encode every row of ``workflow`` (``ValidationError`` names the value; a row
        over ``limit`` is refused too)."""
        row = mapping.check_size(mapping.workflow_values(workflow), limit, "workflow")
        stages: list[RowValues] = []
        edges: list[RowValues] = []
        tasks: list[_TaskWrite] = []
        seen_refs: dict[str, int] = {}
        for position, stage in enumerate(workflow.stages):
            path = f"stages[{position}]"
            stages.append(
                mapping.check_size(mapping.stage_values(stage, workflow.id, position, path), limit, path)
            )
            if stage.ref_id in seen_refs:
                raise ValidationError(
                    f"{path}.ref_id",
                    f"{stage.ref_id!r} is also the ref id of stages[{seen_refs[stage.ref_id]}]",
                )
            seen_refs[stage.ref_id] = position
            edges.extend(mapping.edge_values(stage, workflow.id, path))
            tasks.extend(_task_writes(stage.tasks, stage.id, path, limit))
        rows = [(WORKFLOWS, [row]), (STAGES, stages), (EDGES, edges), (TASKS, [t.values for t in tasks])]
        return cls(rows, tasks)

    def step_part(self, profile: GenericProfile, images: TaskImages) -> StepPart | None:
        """None: a batch INSERT per table is no CTE."""
        return None

    def apply(self, context: WriteContext) -> OnCommit | None:
        """Insert the rows, one batched INSERT per table; after the commit the tasks take their versions."""
        for table, values in self.rows:
            if values:
                context.connection.execute(_INSERT[table], values)
        return lambda: _remember(context.images, self.tasks)


@dataclass
class WorkflowStateUpdate:
    """``update_status``: the workflow's state columns, by id."""

    workflow_id: str
    values: RowValues
    single = True

    @classmethod
    def prepare(cls, workflow: Workflow, limit: RowLimit | None = None) -> WorkflowStateUpdate:
        """Check and encode the workflow's state columns (``ValidationError`` names the value; a row over
        ``limit`` is refused too).
        """
        if not isinstance(workflow, Workflow):
            raise ValidationError("workflow", f"must be a Workflow, got {type(workflow).__name__}")
        values = mapping.check_size(mapping.WORKFLOWS.state_values(workflow, "workflow"), limit, "workflow")
        return cls(workflow.id, values)

    def apply(self, context: WriteContext) -> OnCommit | None:
        """Update the workflow's state columns.

        Raises:
            WorkflowNotFoundError: no workflow has the id.
        """
        result = context.connection.execute(_WORKFLOW_STATE, {**self.values, "key_id": self.workflow_id})
        if rowcount(result) == 0:
            raise WorkflowNotFoundError(self.workflow_id)
        return None

    def step_part(self, profile: GenericProfile, images: TaskImages) -> StepPart | None:
        """The update as a guard of a step statement (``step``)."""

        def finished(counts: Sequence[int], connection: Connection) -> OnCommit | None:
            if counts[0] != 1:
                raise WorkflowNotFoundError(self.workflow_id)
            return None

        return StepPart(_WorkflowCtes(), {**self.values, "key_id": self.workflow_id}, finished)


@dataclass(frozen=True)
class _WorkflowCtes:
    """``update_status`` as a CTE: a guard."""

    guarded = True

    def guard(self, prefix: str) -> CTE | None:
        state = mapping.WORKFLOWS.state
        statement = (
            update(WORKFLOWS)
            .where(WORKFLOWS.c.id == bind(prefix, WORKFLOWS.c.id, "key_id"))
            .values({c: bind(prefix, WORKFLOWS.c[c]) for c in state})
            .returning(WORKFLOWS.c.id)
        )
        return statement.cte(f"{prefix}workflow")

    def dependents(self, prefix: str, ready: ColumnElement[bool]) -> list[CTE]:
        return []


def expected_status(expected_phase: str | WorkflowStatus | None) -> str | None:
    """``expected_phase`` as a status name: a ``WorkflowStatus`` or its name, else
    ``ValidationError`` (a typo must not read as a lost race, which an engine retries)."""
    if expected_phase is None:
        return None
    if isinstance(expected_phase, WorkflowStatus):
        return expected_phase.name
    if isinstance(expected_phase, str) and expected_phase in WorkflowStatus.__members__:
        return expected_phase
    names = ", ".join(WorkflowStatus.__members__)
    raise ValidationError(
        "expected_phase", f"{expected_phase!r} is not a WorkflowStatus name (one of {names})"
    )


@dataclass
class StageWrite:
    """``store_stage``: compare-and-set on version (and status) plus one update of the tasks whose
    rows change; or, for a stage not stored yet, its insertion.

    A task whose row would not change is left alone, as upstream Stabilize does: its version stays,
    and a step that only moves the stage costs no task statement (on a server, a round trip)."""

    stage: StageExecution
    version: int
    phase: str | None
    state: RowValues
    #: The tasks whose rows change (every task of a stage this store has not read or written),
    #: checked and encoded; the others are equal to their rows and need neither.
    changed: list[_TaskWrite]
    limit: RowLimit | None = None

    @classmethod
    def prepare(
        cls,
        stage: StageExecution,
        expected_phase: str | WorkflowStatus | None,
        images: TaskImages,
        limit: RowLimit | None = None,
    ) -> StageWrite:
        """Check and encode the stage's state and tasks (``ValidationError`` names the value)."""
        if not isinstance(stage, StageExecution):
            raise ValidationError("stage", f"must be a StageExecution, got {type(stage).__name__}")
        phase = expected_status(expected_phase)
        state = mapping.check_size(mapping.STAGES.state_values(stage, "stage"), limit, "stage")
        check_version = checker(mapping.STAGES.table.c.version)
        version = check_version(stage.version, "stage.version")
        check_version(version + 1, "stage.version")  # the version a compare-and-set writes
        changed = []
        for i, task in enumerate(stage.tasks):
            path = f"stage.tasks[{i}]"
            if not isinstance(task, TaskExecution):
                raise ValidationError(path, f"must be a TaskExecution, got {type(task).__name__}")
            image = image_of_task(task, stage.id, i, task.version)
            if not images.unchanged(task, image):
                values = mapping.check_size(mapping.task_values(task, stage.id, i, path), limit, path)
                check_version(values["version"] + 1, f"{path}.version")  # what its write moves it to
                changed.append(_TaskWrite(task, values, image))
        return cls(stage, version, phase, state, changed, limit)

    @property
    def single(self) -> bool:
        """One statement, the compare-and-set, when no task row changes."""
        return not self.changed

    def apply(self, context: WriteContext) -> OnCommit | None:
        """Compare-and-set the stage on its version (and status), updating its changed tasks; a stage not
        stored yet is inserted with its edges and tasks instead.

        Raises:
            ConcurrencyError: the stored stage has another version (or status).
            NeedsTransaction: in a unit of one statement, when the stage must be inserted.
            ValidationError: the stage to insert is not attached to a stored workflow.
            DuplicateError: the stage to insert has a ref id or a task id already stored.
        """
        stage, connection = self.stage, context.connection
        expected = context.versions.get(stage.id, self.version)
        params = {**self.state, "version": expected + 1, "key_id": stage.id, "cas_version": expected}
        if self.phase is None:
            matched = rowcount(connection.execute(_CAS, params))
        else:
            matched = rowcount(connection.execute(_CAS_PHASE, {**params, "cas_phase": self.phase}))
        if matched == 1:
            images = context.images
            written = [
                _TaskWrite(t.task, {**t.values, "version": t.values["version"] + 1}, t.image)
                for t in self.changed
            ]
            rows = [t.values for t in written]
            if rows and rowcount(connection.execute(_UPDATE_TASKS, [_task_update(r) for r in rows])) != len(
                rows
            ):
                context.profile.upsert(connection, TASKS, rows, ("id",), _TASK_UPSERT_COLUMNS)
            context.versions[stage.id] = expected + 1
            return lambda: _compared_and_set(stage, expected + 1, images, written)
        if context.single:
            self._refused(connection, expected)
        if connection.execute(_STAGE_VERSION, {"stage_id": stage.id}).first() is not None:
            self._refused(connection, expected)
        tasks = self._insert(context, expected)
        context.versions[stage.id] = expected
        return lambda: _remember(context.images, tasks)

    def step_part(self, profile: GenericProfile, images: TaskImages) -> StepPart | None:
        """The compare-and-set as the guard of a step statement, each changed task an upsert that
        depends on it (``step``); None where the dialect has no upsert to build it with."""
        insert_ = profile.step_insert
        if insert_ is None:
            return None
        stage, version = self.stage, self.version
        params = {**self.state, "version": version + 1, "key_id": stage.id, "cas_version": version}
        if self.phase is not None:
            params["cas_phase"] = self.phase
        written = [
            _TaskWrite(t.task, {**t.values, "version": t.values["version"] + 1}, t.image)
            for t in self.changed
        ]
        for j, task in enumerate(written):
            params.update({f"t{j}_{key}": value for key, value in task.values.items()})

        def finished(counts: Sequence[int], connection: Connection) -> OnCommit | None:
            if counts[0] != 1:
                self._refused(connection, version)
            return lambda: _compared_and_set(stage, version + 1, images, written)

        return StepPart(_StageCtes(self.phase is not None, len(written), insert_), params, finished)

    def _refused(self, connection: Connection, expected: int) -> None:
        """The compare-and-set matched nothing: a lost race (``ConcurrencyError``), or a stage
        not stored yet, which only a transaction can insert (``NeedsTransaction``)."""
        if connection.execute(_STAGE_VERSION, {"stage_id": self.stage.id}).first() is not None:
            phase = f" and status {self.phase}" if self.phase is not None else ""
            raise ConcurrencyError(
                f"stage {self.stage.id}: compare-and-set failed (expected version {expected}{phase})"
            )
        raise NeedsTransaction("a new stage is inserted with its edges and tasks")

    def _insert(self, context: WriteContext, version: int) -> list[_TaskWrite]:
        """Insert the stage with its edges and every task (whatever images say: a row of this
        stage id may have been removed since they were taken)."""
        stage, connection = self.stage, context.connection
        if not stage.has_execution():
            raise ValidationError("stage.execution", f"stage {stage.id} is not attached to a workflow")
        workflow_id = stage.execution.id
        if connection.execute(WORKFLOW_EXISTS, {"workflow_id": workflow_id}).first() is None:
            raise ValidationError("stage.execution", f"workflow {workflow_id!r} is not stored")
        position = connection.execute(_NEXT_POSITION, {"workflow_id": workflow_id}).scalar_one()
        values = {**mapping.stage_values(stage, workflow_id, position or 0, "stage"), "version": version}
        edges = mapping.edge_values(stage, workflow_id, "stage")
        tasks = _task_writes(stage.tasks, stage.id, "stage", self.limit)
        try:
            connection.execute(_INSERT[STAGES], [values])
            if edges:
                connection.execute(_INSERT[EDGES], edges)
            if tasks:
                connection.execute(_INSERT[TASKS], [t.values for t in tasks])
        except IntegrityError as exc:
            raise DuplicateError(
                f"stage {stage.id}: ref id {stage.ref_id!r} or a task id is already stored"
                f" in workflow {workflow_id}"
            ) from exc
        return tasks


@dataclass(frozen=True)
class _StageCtes:
    """``store_stage`` as CTEs: the compare-and-set (a guard), then an upsert per changed task."""

    phase: bool
    tasks: int
    insert: Callable[[Table], Any]

    guarded = True

    def guard(self, prefix: str) -> CTE | None:
        where = [
            STAGES.c.id == bind(prefix, STAGES.c.id, "key_id"),
            STAGES.c.version == bind(prefix, STAGES.c.version, "cas_version"),
        ]
        if self.phase:
            where.append(STAGES.c.status == bind(prefix, STAGES.c.status, "cas_phase"))
        return (
            update(STAGES)
            .where(*where)
            .values({c: bind(prefix, STAGES.c[c]) for c in _STAGE_CAS})
            .returning(STAGES.c.id)
            .cte(f"{prefix}cas")
        )

    def dependents(self, prefix: str, ready: ColumnElement[bool]) -> list[CTE]:
        ctes = []
        columns = [c.key for c in TASKS.columns]
        for j in range(self.tasks):
            task = f"{prefix}t{j}_"
            upsert = self.insert(TASKS)
            values = select(*(bind(task, TASKS.c[c]) for c in columns)).where(ready)
            statement = (
                upsert.from_select(columns, values)
                .on_conflict_do_update(
                    index_elements=["id"], set_={c: upsert.excluded[c] for c in _TASK_UPSERT_COLUMNS}
                )
                .returning(TASKS.c.id)
            )
            ctes.append(statement.cte(f"{task}task"))
        return ctes


def _compared_and_set(
    stage: StageExecution, version: int, images: TaskImages, tasks: list[_TaskWrite]
) -> None:
    """After a compare-and-set commits: the stage's version, then its written tasks'."""
    stage.version = version
    _remember(images, tasks)
