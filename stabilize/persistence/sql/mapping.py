"""The only place domain objects meet rows: validated column values out, domain objects back.

Writes go through ``*_values`` functions that return plain dicts for bulk ``INSERT`` / ``UPDATE``
statements (one statement per table, not one ORM object per stage). Each validates what the
database would otherwise reject late or, worse, accept differently per dialect: unknown enum
values, over-long strings (SQLite does not enforce lengths, MariaDB may truncate) and JSON values
outside the contract's encoding. Errors name the value's path, e.g. ``stages[1].context['when']``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any

from sqlalchemy import String

from stabilize.errors import ValidationError
from stabilize.models.ids import now_ms
from stabilize.models.stage import StageExecution, SyntheticStageOwner
from stabilize.models.status import WorkflowStatus
from stabilize.models.task import TaskExecution
from stabilize.models.workflow import PausedDetails, Trigger, Workflow, WorkflowType
from stabilize.persistence.sql.rows import (
    Base,
    ProcessedMessageRow,
    StageEdgeRow,
    StageRow,
    TaskRow,
    WorkflowRow,
)
from stabilize.persistence.sql.values import encode_document

RowValues = dict[str, Any]


#: The "limit" of a ``Text`` column: its content is still checked (NUL, surrogates, type).
_UNLIMITED = 2**62
_INT64 = (-(2**63), 2**63 - 1)
_INT32 = (-(2**31), 2**31 - 1)


def _string_limits(row: type[Base]) -> dict[str, int]:
    return {
        column.key: column.type.length or _UNLIMITED
        for column in row.__table__.columns
        if isinstance(column.type, String)
    }


_LIMITS: dict[type[Base], dict[str, int]] = {
    row: _string_limits(row) for row in (WorkflowRow, StageRow, StageEdgeRow, TaskRow, ProcessedMessageRow)
}


def _checked(row: type[Base], values: RowValues, path: str) -> RowValues:
    """Refuse over-long strings, non-strings, NUL characters and lone surrogates in string
    columns, naming the field. The character checks run once over all the row's strings, and
    field by field only when one of them fails (to name the field)."""
    texts = []
    for key, limit in _LIMITS[row].items():
        value = values.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValidationError(f"{path}.{key}", f"must be a string, got {type(value).__name__}")
        if len(value) > limit:
            raise ValidationError(f"{path}.{key}", f"is {len(value)} characters long, the limit is {limit}")
        texts.append(value)
    joined = "".join(texts)
    if "\x00" in joined or not joined.isascii():
        for key in _LIMITS[row]:
            _check_characters(values.get(key), f"{path}.{key}")
    return values


def _check_characters(value: str | None, path: str) -> None:
    if value is None:
        return
    if "\x00" in value:
        raise ValidationError(path, "contains a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(path, "contains a lone surrogate, not valid Unicode") from None


def _enum_name(value: object, enum: type[Enum], path: str) -> str:
    if not isinstance(value, enum):
        raise ValidationError(path, f"{value!r} is not a {enum.__name__}")
    return value.name


def _int_or_none(value: object, path: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValidationError(path, f"must be an integer (epoch ms) or None, got {value!r}")
    if value is not None and not _INT64[0] <= value <= _INT64[1]:
        raise ValidationError(path, f"{value} is out of range for a 64-bit integer column")
    return value


def _int32(value: object, path: str) -> int:
    number: int = int(value)  # type: ignore[call-overload]
    if not _INT32[0] <= number <= _INT32[1]:
        raise ValidationError(path, f"{number} is out of range for a 32-bit integer column")
    return number


# -- workflow -------------------------------------------------------------------------------------


def workflow_values(workflow: Workflow, path: str = "workflow") -> RowValues:
    """Every column of the workflow row."""
    values = workflow_state_values(workflow, path)
    values.update(
        id=workflow.id,
        type=_enum_name(workflow.type, WorkflowType, f"{path}.type"),
        application=workflow.application,
        name=workflow.name,
        context=encode_document(workflow.context, f"{path}.context"),
        trigger=encode_document(_trigger_dict(workflow.trigger, f"{path}.trigger"), f"{path}.trigger"),
        start_time_expiry=_int_or_none(workflow.start_time_expiry, f"{path}.start_time_expiry"),
        pipeline_config_id=workflow.pipeline_config_id,
        is_limit_concurrent=bool(workflow.is_limit_concurrent),
        max_concurrent_executions=_int32(
            workflow.max_concurrent_executions, f"{path}.max_concurrent_executions"
        ),
        keep_waiting_pipelines=bool(workflow.keep_waiting_pipelines),
        origin=workflow.origin,
        config_version=workflow.config_version,
        created_at=now_ms(),
    )
    return _checked(WorkflowRow, values, path)


#: The workflow columns ``update_status`` rewrites; the keys of ``workflow_state_values``.
WORKFLOW_STATE_COLUMNS = (
    "status", "start_time", "end_time", "is_canceled", "canceled_by", "cancellation_reason", "paused",
)  # fmt: skip


def workflow_state_values(workflow: Workflow, path: str = "workflow") -> RowValues:
    """The columns the engine changes while a workflow runs (``update_status``)."""
    values: RowValues = {
        "status": _enum_name(workflow.status, WorkflowStatus, f"{path}.status"),
        "start_time": _int_or_none(workflow.start_time, f"{path}.start_time"),
        "end_time": _int_or_none(workflow.end_time, f"{path}.end_time"),
        "is_canceled": bool(workflow.is_canceled),
        "canceled_by": workflow.canceled_by,
        "cancellation_reason": workflow.cancellation_reason,
        "paused": _paused_dict(workflow.paused, f"{path}.paused"),
    }
    return _checked(WorkflowRow, values, path)


def check_workflow_columns(values: RowValues, path: str) -> RowValues:
    """Validate a partial set of workflow columns (``pause`` / ``cancel``)."""
    if values.get("paused") is not None:
        values["paused"] = encode_document(values["paused"], f"{path}.paused")
    return _checked(WorkflowRow, values, path)


def _trigger_dict(trigger: Trigger | Mapping[str, Any], path: str) -> dict[str, Any]:
    if isinstance(trigger, Trigger):
        return trigger.to_dict()
    if isinstance(trigger, Mapping):
        return dict(trigger)
    raise ValidationError(path, f"must be a Trigger, got {type(trigger).__name__}")


def _paused_dict(paused: PausedDetails | None, path: str) -> dict[str, Any] | None:
    if paused is None:
        return None
    return encode_document(
        {
            "paused_by": paused.paused_by,
            "pause_time": paused.pause_time,
            "resume_time": paused.resume_time,
            "paused_ms": paused.paused_ms,
        },
        path,
    )


#: Reads select whole table rows (``select(table)``) and unpack them by position: a Core row's
#: attribute access costs several times a tuple unpack, and a page or a large workflow maps
#: thousands of rows. The orders below are checked against the tables at import.
_WORKFLOW_ORDER = (
    "id", "type", "application", "name", "status", "context", "trigger", "start_time", "end_time",
    "start_time_expiry", "is_canceled", "canceled_by", "cancellation_reason", "paused",
    "pipeline_config_id", "is_limit_concurrent", "max_concurrent_executions", "keep_waiting_pipelines",
    "origin", "config_version", "created_at",
)  # fmt: skip
_STAGE_ORDER = (
    "id", "workflow_id", "position", "ref_id", "type", "name", "status", "context", "outputs",
    "parent_stage_id", "synthetic_stage_owner", "start_time", "end_time", "start_time_expiry",
    "scheduled_time", "version",
)  # fmt: skip
_TASK_ORDER = (
    "id", "stage_id", "position", "name", "implementing_class", "status", "start_time", "end_time",
    "stage_start", "stage_end", "loop_start", "loop_end", "task_exception_details", "version",
)  # fmt: skip
for _row, _order in ((WorkflowRow, _WORKFLOW_ORDER), (StageRow, _STAGE_ORDER), (TaskRow, _TASK_ORDER)):
    if tuple(c.key for c in _row.__table__.columns) != _order:
        raise RuntimeError(f"mapping: the columns of {_row.__tablename__} changed; update its row order")

_STATUS = WorkflowStatus.__members__
_OWNER = SyntheticStageOwner.__members__


def workflow_from_row(row: Sequence[Any]) -> Workflow:
    """The workflow without its stages, from a row of ``select(workflows)``."""
    (
        id_, type_, application, name, status, context, trigger, start_time, end_time, start_time_expiry,
        is_canceled, canceled_by, cancellation_reason, paused, pipeline_config_id, is_limit_concurrent,
        max_concurrent_executions, keep_waiting_pipelines, origin, config_version, _created_at,
    ) = row  # fmt: skip
    return Workflow(
        id=id_,
        type=WorkflowType[type_],
        application=application,
        name=name,
        status=_STATUS[status],
        context=context,
        trigger=Trigger.from_dict(trigger),
        start_time=start_time,
        end_time=end_time,
        start_time_expiry=start_time_expiry,
        is_canceled=is_canceled,
        canceled_by=canceled_by,
        cancellation_reason=cancellation_reason,
        paused=PausedDetails(**paused) if paused is not None else None,
        pipeline_config_id=pipeline_config_id,
        is_limit_concurrent=is_limit_concurrent,
        max_concurrent_executions=max_concurrent_executions,
        keep_waiting_pipelines=keep_waiting_pipelines,
        origin=origin,
        config_version=config_version,
    )


# -- stages ---------------------------------------------------------------------------------------


def stage_values(stage: StageExecution, workflow_id: str, position: int, path: str) -> RowValues:
    """Every column of a new stage row."""
    if not isinstance(stage, StageExecution):
        raise ValidationError(path, f"must be a StageExecution, got {type(stage).__name__}")
    owner = stage.synthetic_stage_owner
    values = stage_state_values(stage, path)
    values.update(
        id=stage.id,
        workflow_id=workflow_id,
        position=position,
        ref_id=stage.ref_id,
        type=stage.type,
        name=stage.name,
        parent_stage_id=stage.parent_stage_id,
        synthetic_stage_owner=None
        if owner is None
        else _enum_name(owner, SyntheticStageOwner, f"{path}.synthetic_stage_owner"),
        version=stage.version,
    )
    return _checked(StageRow, values, path)


#: The stage columns ``store_stage`` rewrites; the keys of ``stage_state_values``.
STAGE_STATE_COLUMNS = (
    "status", "context", "outputs", "start_time", "end_time", "start_time_expiry", "scheduled_time",
)  # fmt: skip


def stage_state_values(stage: StageExecution, path: str) -> RowValues:
    """The columns ``store_stage`` rewrites; identity, place in the DAG and version are not among them."""
    return {
        "status": _enum_name(stage.status, WorkflowStatus, f"{path}.status"),
        "context": encode_document(stage.context, f"{path}.context"),
        "outputs": encode_document(stage.outputs, f"{path}.outputs"),
        "start_time": _int_or_none(stage.start_time, f"{path}.start_time"),
        "end_time": _int_or_none(stage.end_time, f"{path}.end_time"),
        "start_time_expiry": _int_or_none(stage.start_time_expiry, f"{path}.start_time_expiry"),
        "scheduled_time": _int_or_none(stage.scheduled_time, f"{path}.scheduled_time"),
    }


def edge_values(stage: StageExecution, workflow_id: str, path: str) -> list[RowValues]:
    requisites = stage.requisite_stage_ref_ids
    if not isinstance(requisites, set | frozenset | list | tuple):
        raise ValidationError(f"{path}.requisite_stage_ref_ids", "must be a set of ref ids")
    return [
        _checked(
            StageEdgeRow,
            {"workflow_id": workflow_id, "ref_id": stage.ref_id, "requisite_ref_id": ref},
            f"{path}.requisite_stage_ref_ids",
        )
        for ref in sorted(set(requisites), key=str)
    ]


def stage_from_row(row: Sequence[Any], requisites: Iterable[str]) -> StageExecution:
    """A stage (without tasks) from a row of ``select(stages)``."""
    (
        id_, _workflow_id, _position, ref_id, type_, name, status, context, outputs, parent_stage_id,
        owner, start_time, end_time, start_time_expiry, scheduled_time, version,
    ) = row  # fmt: skip
    return StageExecution(
        id=id_,
        ref_id=ref_id,
        type=type_,
        name=name,
        status=_STATUS[status],
        context=context,
        outputs=outputs,
        requisite_stage_ref_ids=set(requisites),
        parent_stage_id=parent_stage_id,
        synthetic_stage_owner=_OWNER[owner] if owner is not None else None,
        start_time=start_time,
        end_time=end_time,
        start_time_expiry=start_time_expiry,
        scheduled_time=scheduled_time,
        version=version,
    )


def stages_from_rows(
    rows: Iterable[Sequence[Any]], edges: Iterable[Sequence[Any]]
) -> list[tuple[str, StageExecution]]:
    """``(workflow id, stage)`` per row of ``select(stages)``, requisites taken from rows of
    ``select(stage_edges)``."""
    requisites: dict[tuple[str, str], list[str]] = {}
    for workflow_id, ref_id, requisite in edges:
        requisites.setdefault((workflow_id, ref_id), []).append(requisite)
    return [(row[1], stage_from_row(row, requisites.get((row[1], row[3]), ()))) for row in rows]


def add_tasks(stages: Mapping[str, StageExecution], rows: Iterable[Sequence[Any]]) -> None:
    """Attach each row of ``select(tasks)`` (in position order) to its stage."""
    for row in rows:
        stages[row[1]].add_task(task_from_row(row))


# -- tasks ----------------------------------------------------------------------------------------


def task_values(task: TaskExecution, stage_id: str, position: int, path: str) -> RowValues:
    """Every column of a task row; ``version`` is the one the row will hold after the write."""
    if not isinstance(task, TaskExecution):
        raise ValidationError(path, f"must be a TaskExecution, got {type(task).__name__}")
    values: RowValues = {
        "id": task.id,
        "stage_id": stage_id,
        "position": position,
        "name": task.name,
        "implementing_class": task.implementing_class,
        "status": _enum_name(task.status, WorkflowStatus, f"{path}.status"),
        "start_time": _int_or_none(task.start_time, f"{path}.start_time"),
        "end_time": _int_or_none(task.end_time, f"{path}.end_time"),
        "stage_start": bool(task.stage_start),
        "stage_end": bool(task.stage_end),
        "loop_start": bool(task.loop_start),
        "loop_end": bool(task.loop_end),
        "task_exception_details": encode_document(
            task.task_exception_details, f"{path}.task_exception_details"
        ),
        "version": task.version,
    }
    return _checked(TaskRow, values, path)


def row_image(columns: Iterable[Any]) -> tuple[Any, ...] | None:
    """A task row's columns (a ``select(tasks)`` row, or ``task_values`` in column order) as the
    image a later write compares with, to skip a task whose row would not change. None, meaning
    "always write", when the exception details are not empty: an image must not share a mutable
    document with the task, and a task with details (a failure) is rare enough to rewrite."""
    *head, details, version = columns
    if details and details != "{}":
        return None
    return (*head, version)


def task_from_row(row: Sequence[Any]) -> TaskExecution:
    """A task from a row of ``select(tasks)``."""
    (
        id_, _stage_id, _position, name, implementing_class, status, start_time, end_time, stage_start,
        stage_end, loop_start, loop_end, task_exception_details, version,
    ) = row  # fmt: skip
    task = TaskExecution(
        id=id_,
        name=name,
        implementing_class=implementing_class,
        status=_STATUS[status],
        start_time=start_time,
        end_time=end_time,
        stage_start=stage_start,
        stage_end=stage_end,
        loop_start=loop_start,
        loop_end=loop_end,
        task_exception_details=task_exception_details,
        version=version,
    )
    task._row_image = row_image(row)
    return task


# -- processed messages ---------------------------------------------------------------------------


def processed_message_values(
    message_id: str, handler_type: str | None, execution_id: str | None
) -> RowValues:
    values: RowValues = {
        "message_id": message_id,
        "handler_type": handler_type,
        "execution_id": execution_id,
        "processed_at": now_ms(),
    }
    return _checked(ProcessedMessageRow, values, "message")
