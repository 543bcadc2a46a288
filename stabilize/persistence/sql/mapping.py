"""The only place domain objects meet rows: one codec per entity, derived from its row class.

A codec's fields are its row's columns (``rows``) other than the ``PLACE`` ones the store
supplies, each read from and written to the domain attribute of the same name, each checked by its
column's type (``types``). A few domain values are not their column's value (a ``Trigger`` is a
document, ``PausedDetails`` an optional one); those fields name a conversion each way here. What a
domain class holds that is not a column is listed in ``NOT_PERSISTED``, and a parity test fails
when a domain field is in neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any, Generic, TypeVar

from sqlalchemy import Table

from stabilize.models.multi_instance import MultiInstanceConfig
from stabilize.models.stage import StageExecution
from stabilize.models.task import TaskExecution
from stabilize.models.workflow import PausedDetails, Trigger, Workflow
from stabilize.persistence.errors import ValidationError
from stabilize.persistence.ids import now_ms
from stabilize.persistence.sql.dialects.base import RowLimit
from stabilize.persistence.sql.rows import (
    Base,
    ProcessedMessageRow,
    StageEdgeRow,
    StageRow,
    TaskRow,
    WorkflowRow,
    role,
    table_of,
)
from stabilize.persistence.sql.types import checker
from stabilize.persistence.sql.values import CheckedDocument, compact_json

D = TypeVar("D")
RowValues = dict[str, Any]
#: A domain value to what its column's type checks (the place is for an error message).
ToColumn = Callable[[Any, object], Any]
#: A column's value (as its type read it) to the domain value.
FromColumn = Callable[[Any], Any]

#: Domain fields that are not columns of their row, and why: each is stored another way or not
#: at all. The parity test checks that every other field of the domain classes is a column.
NOT_PERSISTED: dict[type[Any], dict[str, str]] = {
    Workflow: {"stages": "rows of their own (StageRow)"},
    StageExecution: {
        "tasks": "rows of their own (TaskRow)",
        "requisite_stage_ref_ids": "edge rows (StageEdgeRow), so the ancestor query is a recursive CTE",
        "_execution": "the back-reference to the workflow, rebuilt on every read",
    },
    TaskExecution: {"_stage": "the back-reference to the stage, rebuilt on every read"},
}


class Codec(Generic[D]):
    """Domain objects of one class to row values of one table, and rows back to domain objects.

    Args:
        row: the row class; its columns and their roles define the fields.
        domain: the domain class built from a row.
        to_column: conversions of domain values that are not their column's value, by field.
        from_column: the conversions back, by field.
    """

    def __init__(
        self,
        row: type[Base],
        domain: type[D],
        *,
        to_column: Mapping[str, ToColumn] | None = None,
        from_column: Mapping[str, FromColumn] | None = None,
    ) -> None:
        """Derive the fields, the state columns, the checks and the conversions from ``row``'s columns and
        their roles, once: a codec is built at import, not per call.
        """
        self.table: Table = table_of(row)
        self.domain = domain
        columns = list(self.table.columns)
        self.fields = tuple(c.key for c in columns if role(c) != "place")
        #: Columns rewritten by the entity's update, in table order.
        self.state = tuple(c.key for c in columns if role(c) == "state")
        conversions = to_column or {}
        self._writers = _Writers(
            [(c.key, checker(c), conversions.get(c.key)) for c in columns if role(c) != "place"]
        )
        self._state_writers = _Writers([w for w in self._writers.writers if w[0] in self.state])
        back = from_column or {}
        fields = [(i, c.key) for i, c in enumerate(columns) if role(c) != "place"]
        self._keys = tuple(key for _, key in fields)
        self._read = itemgetter(*(i for i, _ in fields))
        self._conversions = tuple((key, back[key]) for key in self._keys if key in back)

    def values(self, obj: D, path: object, place: RowValues | None = None) -> RowValues:
        """Every column of a new row: the fields, checked, plus the store's ``place`` values.

        Raises:
            ValidationError: a field cannot be stored; its path is ``path.field[...]``.
        """
        return self._writers.write(obj, path, dict(place) if place else {})

    def state_values(self, obj: D, path: object) -> RowValues:
        """The columns the entity's update rewrites, checked (``ValidationError`` as ``values``)."""
        return self._state_writers.write(obj, path, {})

    def build(self, row: Sequence[Any], **extra: Any) -> D:
        """The domain object of a row of ``select(table)`` (columns in table order)."""
        fields = dict(zip(self._keys, self._read(row), strict=True))
        for key, convert in self._conversions:
            fields[key] = convert(fields[key])
        return self.domain(**fields, **extra)


# -- conversions of the few fields whose domain value is not the column's -------------------------


class _Writers:
    """Fields read off a domain object at once (``attrgetter``) and checked by their columns'
    types. A type names only the field (``status``, ``context['when']``): the object's own place
    is put in front when a value is refused, so no path is built for a valid one."""

    def __init__(self, writers: list[tuple[str, ToColumn, ToColumn | None]]) -> None:
        self.writers = writers
        self._get = attrgetter(*(key for key, _, _ in writers))

    def write(self, obj: Any, path: object, out: RowValues) -> RowValues:
        try:
            for (key, coerce, convert), value in zip(self.writers, self._get(obj), strict=True):
                out[key] = coerce(value if convert is None else convert(value, key), key)
        except ValidationError as error:
            raise ValidationError(f"{path}.{error.path}", error.problem) from None
        return out


def _trigger_document(trigger: Any, path: object) -> dict[str, Any]:
    if isinstance(trigger, Trigger):
        return trigger.to_dict()
    if isinstance(trigger, Mapping):
        return dict(trigger)
    raise ValidationError(str(path), f"must be a Trigger, got {type(trigger).__name__}")


def _paused_document(paused: PausedDetails | None, path: object) -> dict[str, Any] | None:
    if paused is None:
        return None
    if not isinstance(paused, PausedDetails):
        raise ValidationError(str(path), f"must be PausedDetails or None, got {type(paused).__name__}")
    return {
        "paused_by": paused.paused_by,
        "pause_time": paused.pause_time,
        "resume_time": paused.resume_time,
        "paused_ms": paused.paused_ms,
    }


def _paused_details(document: dict[str, Any] | None) -> PausedDetails | None:
    return None if document is None else PausedDetails(**document)


WORKFLOWS: Codec[Workflow] = Codec(
    WorkflowRow,
    Workflow,
    to_column={"trigger": _trigger_document, "paused": _paused_document},
    from_column={"trigger": Trigger.from_dict, "paused": _paused_details},
)
def _mi_document(config: MultiInstanceConfig | None, path: object) -> dict[str, Any] | None:
    if config is None:
        return None
    if not isinstance(config, MultiInstanceConfig):
        raise ValidationError(str(path), f"must be MultiInstanceConfig or None, got {type(config).__name__}")
    return config.to_dict()


def _mi_config(document: dict[str, Any] | None) -> MultiInstanceConfig | None:
    return None if document is None else MultiInstanceConfig.from_dict(document)


STAGES: Codec[StageExecution] = Codec(
    StageRow,
    StageExecution,
    to_column={"mi_config": _mi_document},
    from_column={"mi_config": _mi_config},
)
TASKS: Codec[TaskExecution] = Codec(TaskRow, TaskExecution)

EDGE_TABLE = table_of(StageEdgeRow)
PROCESSED_TABLE = table_of(ProcessedMessageRow)


# -- whole rows of the store's writes --------------------------------------------------------------


def workflow_values(workflow: Workflow, path: str = "workflow") -> RowValues:
    """Every column of a new workflow row."""
    if not isinstance(workflow, Workflow):
        raise ValidationError(path, f"must be a Workflow, got {type(workflow).__name__}")
    return WORKFLOWS.values(workflow, path, {"created_at": now_ms()})


def stage_values(stage: StageExecution, workflow_id: str, position: int, path: str) -> RowValues:
    """Every column of a new stage row."""
    if not isinstance(stage, StageExecution):
        raise ValidationError(path, f"must be a StageExecution, got {type(stage).__name__}")
    return STAGES.values(stage, path, {"workflow_id": workflow_id, "position": position})


def edge_values(stage: StageExecution, workflow_id: str, path: str) -> list[RowValues]:
    """One row per requisite of ``stage``, in ref-id order."""
    requisites = stage.requisite_stage_ref_ids
    if not isinstance(requisites, set | frozenset | list | tuple):
        raise ValidationError(f"{path}.requisite_stage_ref_ids", "must be a set of ref ids")
    check = checker(EDGE_TABLE.c.requisite_ref_id)
    where = f"{path}.requisite_stage_ref_ids.requisite_ref_id"
    return [
        {"workflow_id": workflow_id, "ref_id": stage.ref_id, "requisite_ref_id": check(ref, where)}
        for ref in sorted(set(requisites), key=str)
    ]


def task_values(task: TaskExecution, stage_id: str, position: int, path: str) -> RowValues:
    """Every column of a task row; ``version`` is the task's own (a write moves it)."""
    if not isinstance(task, TaskExecution):
        raise ValidationError(path, f"must be a TaskExecution, got {type(task).__name__}")
    return TASKS.values(task, path, {"stage_id": stage_id, "position": position})


def processed_message_values(
    message_id: str, handler_type: str | None, execution_id: str | None
) -> RowValues:
    """A processed mark, checked by the columns' types."""
    columns = PROCESSED_TABLE.c
    given = {"message_id": message_id, "handler_type": handler_type, "execution_id": execution_id}
    values = {key: checker(columns[key])(value, f"message.{key}") for key, value in given.items()}
    return {**values, "processed_at": now_ms()}


# -- reads ----------------------------------------------------------------------------------------


@dataclass
class LoadedStages:
    """Stages read by one query with their edges and tasks: ``(workflow id, stage)`` in the
    query's order, and every task with its stage's id (for the store's task images)."""

    stages: list[tuple[str, StageExecution]]
    tasks: list[tuple[TaskExecution, Sequence[Any]]]


_STAGE_WORKFLOW = list(STAGES.table.columns).index(STAGES.table.c.workflow_id)
_STAGE_REF = list(STAGES.table.columns).index(STAGES.table.c.ref_id)
_TASK_STAGE = list(TASKS.table.columns).index(TASKS.table.c.stage_id)


def stages_from_rows(
    stage_rows: Iterable[Sequence[Any]],
    edge_rows: Iterable[Sequence[Any]],
    task_rows: Iterable[Sequence[Any]],
) -> LoadedStages:
    """Stages with their requisites and tasks, from rows of ``select(stages)``,
    ``select(stage_edges)`` and ``select(tasks)`` (tasks in position order)."""
    requisites: dict[tuple[str, str], set[str]] = {}
    for workflow_id, ref_id, requisite in edge_rows:
        requisites.setdefault((workflow_id, ref_id), set()).add(requisite)
    loaded = []
    by_id: dict[str, StageExecution] = {}
    for row in stage_rows:
        workflow_id = row[_STAGE_WORKFLOW]
        stage = STAGES.build(
            row, requisite_stage_ref_ids=requisites.get((workflow_id, row[_STAGE_REF]), set())
        )
        loaded.append((workflow_id, stage))
        by_id[stage.id] = stage
    tasks = []
    for row in task_rows:
        task = TASKS.build(row)
        # What upstream Stabilize's models have too (no add_task there): the engine's own model
        # classes load through this codec as well as ours.
        stage = by_id[row[_TASK_STAGE]]
        stage.tasks.append(task)
        task.stage = stage
        tasks.append((task, row))
    return LoadedStages(loaded, tasks)


# -- sizes ------------------------------------------------------------------------------------------


def check_size(values: RowValues, limit: RowLimit | None, path: str) -> RowValues:
    """Refuse a row whose text and JSON values would not fit the database's row limit, naming the
    biggest value's place and the limit, before any SQL runs (MySQL/MariaDB would otherwise drop
    the connection: a packet bigger than max_allowed_packet). The place goes down into a document
    to the member that alone is over the limit, if one is (``stages[0].outputs['blob']``)."""
    if limit is None:
        return values
    sizes = {
        key: len(_text_of(value)) for key, value in values.items() if isinstance(value, str | CheckedDocument)
    }
    # At most 4 bytes a character (UTF-8), escapes included (two bytes, ASCII only): no need to count.
    if sum(sizes.values()) * 4 <= limit.bytes:
        return values
    exact = {key: limit.size(_text_of(values[key])) for key in sizes}
    total = sum(exact.values())
    if total <= limit.bytes:
        return values
    biggest = max(exact, key=lambda key: exact[key])
    place, size = f"{path}.{biggest}", exact[biggest]
    value = values[biggest]
    if isinstance(value, CheckedDocument):
        place, size = _oversized_member(value, place, size, limit)
    raise ValidationError(
        place,
        f"is {size} bytes ({total} with the rest of its row), over the {limit.bytes} bytes "
        f"one row may hold here: {limit.why}",
    )


def _oversized_member(document: Any, place: str, size: int, limit: RowLimit) -> tuple[str, int]:
    """The deepest member of ``document`` (at ``place``, ``size`` bytes) that alone is over the
    limit, and its size; the document itself when no member is. Runs only to word a refusal."""
    while isinstance(document, dict | list) and document:
        members = document.items() if isinstance(document, dict) else enumerate(document)
        sized = [(limit.size(compact_json(member)), key, member) for key, member in members]
        member_size, key, member = max(sized, key=lambda item: item[0])
        if member_size <= limit.bytes:
            break
        place, size, document = f"{place}[{key!r}]", member_size, member
    return place, size


def _text_of(value: str | CheckedDocument) -> str:
    return value.text if isinstance(value, CheckedDocument) else value
