"""What the dashboard shows, as JSON-ready documents: the pages render them and ``/api`` returns them.

A run and its stages use the command line's shapes (``stabilize.cli.documents``: the same keys as
``runs show --format json``); this module adds what only a picture needs (the DAG's nodes and
edges, with the status colours the terminal uses) and the queue's overview. Times stay epoch
milliseconds; the ``started`` / ``duration`` strings are the command line's renderings for people.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

from stabilize.cli import documents, render
from stabilize.cli.graph import _edges as dag_edges  # one list of a run's edges, shared with mermaid/dot
from stabilize.cli.health import state_of
from stabilize.models.stage import StageExecution
from stabilize.models.status import WorkflowStatus
from stabilize.models.workflow import Workflow
from stabilize.persistence.ids import now_ms
from stabilize.persistence.sql.health import HealthReport
from stabilize.queue.sql import SqlQueue

#: Queue rows read to count messages by type: a dashboard must stay cheap on a deep queue.
TYPE_SAMPLE = 1000
#: Queued messages and dead letters listed on the queue page.
LISTED = 50


def ink(colour: str) -> str:
    """Black or white, whichever reads better on the ``#rrggbb`` background ``colour``."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return "#111111" if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else "#ffffff"


def status_badge(status: WorkflowStatus) -> dict[str, str]:
    """A status with its colours."""
    colour = render.COLOURS[status]
    return {"status": status.name, "colour": colour, "ink": ink(colour)}


def _node(stage: StageExecution) -> dict[str, Any]:
    return {
        "id": stage.id,
        "ref_id": stage.ref_id,
        "name": stage.name,
        **status_badge(stage.status),
        "parent_stage_id": stage.parent_stage_id,
        "synthetic_stage_owner": stage.synthetic_stage_owner.name if stage.synthetic_stage_owner else None,
        "tasks": render.task_progress(stage),
        "started": render.when(stage.start_time),
        "duration": render.duration(stage.start_time, stage.end_time),
    }


def run_graph(workflow: Workflow) -> dict[str, Any]:
    """The run's DAG: one node per stage (synthetic ones name their parent) and its edges, a
    requisite edge ``dag`` and a parent-to-synthetic edge ``synthetic``, as ``runs show
    --format mermaid`` draws them."""
    return {
        "id": workflow.id,
        "name": workflow.name,
        **status_badge(workflow.status),
        "complete": workflow.status.is_complete,
        "started": render.when(workflow.start_time),
        "duration": render.duration(workflow.start_time, workflow.end_time),
        "nodes": [_node(s) for s in workflow.stages],
        "edges": [{"source": a.id, "target": b.id, "kind": kind} for a, b, kind in dag_edges(workflow)],
    }


def run_document(workflow: Workflow) -> dict[str, Any]:
    """``/api/runs/{id}``: the run as ``runs show --format json`` shows it, plus its ``graph``."""
    return {**documents.workflow_document(workflow), "graph": run_graph(workflow)}


def stage_detail(stage: StageExecution, merged: dict[str, Any]) -> dict[str, Any]:
    """``/api/runs/{id}/stages/{stage_id}``: a stage (from ``retrieve_stage``), its direct
    requisites and synthetic stages, and the merged outputs of its ancestors."""
    around = [s for s in stage.execution.stages if s.id != stage.id]
    return {
        "stage": documents.stage_document(stage),
        "requisites": [
            documents.stage_document(s) for s in around if s.ref_id in stage.requisite_stage_ref_ids
        ],
        "synthetic_stages": [documents.stage_document(s) for s in around if s.parent_stage_id == stage.id],
        "merged_ancestor_outputs": merged,
    }


def queue_overview(queue: SqlQueue) -> dict[str, Any]:
    """``/api/queue``: the counts of ``queue stats``; messages by type, over the next
    ``TYPE_SAMPLE`` in delivery order (``by_type_counted`` of them; ``by_type_complete`` says
    whether that was all); the oldest message that is due and not in flight; the next messages;
    the newest dead letters."""
    stats = asdict(queue.stats())
    upcoming = queue.peek(TYPE_SAMPLE)
    now = now_ms()
    by_type = Counter(str(row["message_type"]) for row in upcoming)
    due = next((row for row in upcoming if row["deliver_at"] <= now and not _locked(row, now)), None)
    letters = queue.list_dlq(LISTED)
    return {
        "stats": stats,
        "by_type": [
            {"message_type": t, "count": n} for t, n in sorted(by_type.items(), key=lambda i: (-i[1], i[0]))
        ],
        "by_type_complete": len(upcoming) < TYPE_SAMPLE,
        "by_type_counted": len(upcoming),
        "oldest_due": None if due is None else documents.pick(due, documents.MESSAGE_KEYS),
        "messages": [documents.pick(row, documents.MESSAGE_KEYS) for row in upcoming[:LISTED]],
        "dead_letters": [
            {**documents.pick(row, documents.DEAD_LETTER_KEYS), "payload": row.get("payload")}
            for row in letters
        ],
    }


def _locked(row: dict[str, Any], now: int) -> bool:
    return row["locked_until"] is not None and row["locked_until"] > now


def health_document(report: HealthReport) -> tuple[dict[str, Any], bool]:
    """``/health``: what ``stabilize health --format json`` prints, and whether it is usable
    (healthy, or a schema ahead during a rolling deploy)."""
    state, code = state_of(report)
    return {**asdict(report), "state": state, "problems": report.problems}, code == 0
