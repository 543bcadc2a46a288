"""The scriptable shapes: JSON documents and ``plain`` records, one function per kind of thing.

These shapes are an interface (the README documents them): add keys, never rename or drop one.
Times are epoch milliseconds (UTC) in JSON, as the library stores them, and ISO 8601 UTC in
``plain`` records; a missing value is ``null`` in JSON and ``-`` in ``plain``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from stabilize.cli.render import natural_key
from stabilize.models.stage import StageExecution
from stabilize.models.task import TaskExecution
from stabilize.models.workflow import Workflow


def iso(ms: int | None) -> str | None:
    """Epoch ms as ``2025-01-02T13:04:05.123Z``."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def workflow_summary(workflow: Workflow) -> dict[str, Any]:
    """A run as ``runs list --format json`` shows it."""
    top = workflow.top_level_stages()
    return {
        "id": workflow.id,
        "application": workflow.application,
        "name": workflow.name,
        "status": workflow.status.name,
        "pipeline_config_id": workflow.pipeline_config_id,
        "start_time": workflow.start_time,
        "end_time": workflow.end_time,
        "is_canceled": workflow.is_canceled,
        "stage_count": len(top),
        "stages_done": sum(1 for s in top if s.status.is_complete),
    }


def workflow_record(workflow: Workflow) -> tuple[object, ...]:
    """``runs list --format plain``: id, status, application, name, started, ended, stages."""
    return (
        workflow.id,
        workflow.status.name,
        workflow.application,
        workflow.name,
        iso(workflow.start_time),
        iso(workflow.end_time),
        len(workflow.top_level_stages()),
    )


def _task(task: TaskExecution) -> dict[str, Any]:
    return {
        "id": task.id,
        "name": task.name,
        "implementing_class": task.implementing_class,
        "status": task.status.name,
        "start_time": task.start_time,
        "end_time": task.end_time,
    }


def stage_document(stage: StageExecution) -> dict[str, Any]:
    """A stage as ``runs show --format json`` shows it, with its tasks."""
    return {
        "id": stage.id,
        "ref_id": stage.ref_id,
        "type": stage.type,
        "name": stage.name,
        "status": stage.status.name,
        "requisite_stage_ref_ids": sorted(stage.requisite_stage_ref_ids, key=natural_key),
        "parent_stage_id": stage.parent_stage_id,
        "synthetic_stage_owner": stage.synthetic_stage_owner.name if stage.synthetic_stage_owner else None,
        "start_time": stage.start_time,
        "end_time": stage.end_time,
        "version": stage.version,
        "context": stage.context,
        "outputs": stage.outputs,
        "tasks": [_task(t) for t in stage.tasks],
    }


def workflow_document(workflow: Workflow) -> dict[str, Any]:
    """A run as ``runs show --format json`` shows it: the summary's keys, then every stage."""
    paused = workflow.paused
    return {
        **workflow_summary(workflow),
        "canceled_by": workflow.canceled_by,
        "cancellation_reason": workflow.cancellation_reason,
        "paused": None
        if paused is None
        else {
            "paused_by": paused.paused_by,
            "pause_time": paused.pause_time,
            "resume_time": paused.resume_time,
            "paused_ms": paused.paused_ms,
        },
        "stages": [stage_document(s) for s in workflow.stages],
    }


def stage_record(depth: int, stage: StageExecution) -> tuple[object, ...]:
    """``runs show --format plain``: id, ref id, status, depth (0 top level), name, started, ended,
    requisite ref ids (comma-separated)."""
    return (
        stage.id,
        stage.ref_id,
        stage.status.name,
        depth,
        stage.name,
        iso(stage.start_time),
        iso(stage.end_time),
        ",".join(sorted(stage.requisite_stage_ref_ids, key=natural_key)),
    )


MESSAGE_KEYS = ("id", "message_id", "message_type", "deliver_at", "attempts", "locked_until")
DEAD_LETTER_KEYS = (
    "id",
    "message_id",
    "message_type",
    "attempts",
    "execution_id",
    "failed_at",
    "last_error",
)


def pick(row: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The documented keys of a queue or dead-letter row, in the documented order."""
    return {key: row.get(key) for key in keys}


def message_record(row: Mapping[str, Any]) -> tuple[object, ...]:
    """``queue peek --format plain``: id, message id, type, due, attempts, locked until."""
    return (
        row["id"],
        row["message_id"],
        row["message_type"],
        iso(row["deliver_at"]),
        row["attempts"],
        iso(row["locked_until"]),
    )


def dead_letter_record(row: Mapping[str, Any]) -> tuple[object, ...]:
    """``queue dlq --format plain``: id, message id, type, attempts, execution id, failed, last error."""
    return (
        row["id"],
        row["message_id"],
        row["message_type"],
        row["attempts"],
        row.get("execution_id"),
        iso(row["failed_at"]),
        row.get("last_error"),
    )
