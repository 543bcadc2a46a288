"""Workflows and queue rows as Rich tables and trees for people.

Pure functions of domain objects and rows, testable without a terminal or a database. Every
string that came from the database enters Rich as ``Text`` (never as markup), with control
characters other than newlines shown escaped, so a stage named ``Fix [/] bracket`` or one holding
a terminal escape sequence is shown as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from stabilize.models.stage import StageExecution
from stabilize.models.status import WorkflowStatus
from stabilize.models.workflow import Workflow

#: One colour per status, shared by the terminal and the pictures.
COLOURS: dict[WorkflowStatus, str] = {
    WorkflowStatus.NOT_STARTED: "#9e9e9e",
    WorkflowStatus.BUFFERED: "#9e9e9e",
    WorkflowStatus.RUNNING: "#1e88e5",
    WorkflowStatus.PAUSED: "#fbc02d",
    WorkflowStatus.SUSPENDED: "#fbc02d",
    WorkflowStatus.REDIRECT: "#8e24aa",
    WorkflowStatus.SUCCEEDED: "#43a047",
    WorkflowStatus.SKIPPED: "#80cbc4",
    WorkflowStatus.FAILED_CONTINUE: "#fb8c00",
    WorkflowStatus.TERMINAL: "#e53935",
    WorkflowStatus.STOPPED: "#e53935",
    WorkflowStatus.CANCELED: "#6d4c41",
}

#: Control characters (but the newline) shown as ``\\xNN``: they would move the cursor or
#: change colours on a terminal.
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)] if c != 0x0A}


def shown(text: str) -> str:
    """``text`` with control characters other than newlines escaped."""
    return text.translate(_CONTROLS)


def cell(text: str | None, style: str = "") -> Text:
    """A table cell or label from data: never markup."""
    return Text("" if text is None else shown(text), style=style)


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``work-2`` before ``work-10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def when(ms: int | None) -> str:
    """An epoch-ms time for people: ``2025-01-02 13:04:05 UTC``."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(start: int | None, end: int | None) -> str:
    """How long from ``start`` to ``end`` (epoch ms): ``1.5s``, ``3.2m``; ``-`` when either is unset."""
    if start is None or end is None:
        return "-"
    seconds = max(0, end - start) / 1000
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def age(ms: int | None) -> str:
    """An age in milliseconds for people (``-`` for None)."""
    return "-" if ms is None else duration(0, ms)


def task_progress(stage: StageExecution) -> str:
    """``done/total`` of the stage's tasks."""
    done = sum(1 for t in stage.tasks if t.status.is_complete)
    return f"{done}/{len(stage.tasks)}"


def styled(status: WorkflowStatus) -> Text:
    """The status name in its colour."""
    return Text(status.name, style=COLOURS[status])


def waits_for(stage: StageExecution) -> str:
    """The stage's requisite ref ids, comma-separated, in natural order."""
    return ", ".join(sorted(stage.requisite_stage_ref_ids, key=natural_key))


def _id_column(table: Table, name: str = "id") -> None:
    # An id is never cut or folded: other columns wrap first (a ULID is 26 characters).
    table.add_column(name, no_wrap=True, min_width=26)


def _title(*parts: str | Text) -> Text:
    return Text.assemble(*[cell(p) if isinstance(p, str) else p for p in parts])


def workflows_table(workflows: Iterable[Workflow]) -> Table:
    """``runs list``: one row per workflow."""
    table = Table(title="workflows (newest first)")
    _id_column(table)
    for column in ("application", "name"):
        table.add_column(column, overflow="fold")
    table.add_column("status", no_wrap=True)
    for column in ("started", "duration", "stages"):
        table.add_column(column)
    for w in workflows:
        table.add_row(
            cell(w.id),
            cell(w.application),
            cell(w.name),
            styled(w.status),
            when(w.start_time),
            duration(w.start_time, w.end_time),
            str(len(w.top_level_stages())),
        )
    return table


def ordered_with_children(workflow: Workflow) -> list[tuple[int, StageExecution]]:
    """Top-level stages in order, each followed by its synthetic stages (depth-first)."""
    children: dict[str | None, list[StageExecution]] = {}
    for stage in workflow.stages:
        children.setdefault(stage.parent_stage_id, []).append(stage)
    ordered: list[tuple[int, StageExecution]] = []

    def visit(stage: StageExecution, depth: int) -> None:
        ordered.append((depth, stage))
        for child in children.get(stage.id, []):
            visit(child, depth + 1)

    known = {s.id for s in workflow.stages}
    for stage in workflow.stages:
        if stage.parent_stage_id is None or stage.parent_stage_id not in known:
            visit(stage, 0)
    return ordered


def _owner(stage: StageExecution) -> str:
    owner = stage.synthetic_stage_owner
    return f" ({owner.name.split('_')[1].lower()})" if owner else ""


def stages_table(workflow: Workflow) -> Table:
    """``runs show``: one row per stage, synthetic stages indented under their parent."""
    table = Table(title=_title(workflow.name, f" [{workflow.id}] ", styled(workflow.status)))
    table.add_column("stage", overflow="fold")
    table.add_column("ref", overflow="fold")
    table.add_column("status", no_wrap=True)
    for column in ("started", "duration", "tasks"):
        table.add_column(column)
    table.add_column("waits for", overflow="fold")
    for depth, s in ordered_with_children(workflow):
        table.add_row(
            cell("  " * depth + s.name + _owner(s)),
            cell("" if s.is_synthetic() else s.ref_id),
            styled(s.status),
            when(s.start_time),
            duration(s.start_time, s.end_time),
            task_progress(s),
            cell(waits_for(s)),
        )
    return table


def stages_tree(workflow: Workflow) -> Tree:
    """``runs show --format tree``: stages, their synthetic stages and tasks."""
    tree = Tree(_title(workflow.name, f" [{workflow.id}] ", styled(workflow.status)))
    branches: dict[str, Tree] = {}
    for depth, s in ordered_with_children(workflow):
        parent = branches.get(s.parent_stage_id or "") if depth else tree
        label = _title(s.name, f" ({shown(s.ref_id)}) ", styled(s.status), f" tasks {task_progress(s)}")
        branch = (parent or tree).add(label)
        branches[s.id] = branch
        for task in s.tasks:
            branch.add(Text.assemble(cell(task.name, "dim"), " ", styled(task.status)))
    return tree


def dag_layers(workflow: Workflow) -> Table:
    """The DAG as a picture: one column per depth (longest path from a start stage), each stage a
    coloured line, its synthetic stages beneath it. Reads left to right like the run itself."""
    top = workflow.top_level_stages()
    by_ref = {s.ref_id: s for s in top}
    depth: dict[str, int] = {}

    def depth_of(stage: StageExecution, seen: frozenset[str] = frozenset()) -> int:
        if stage.ref_id not in depth:
            parents = [by_ref[r] for r in stage.requisite_stage_ref_ids if r in by_ref and r not in seen]
            depth[stage.ref_id] = 1 + max((depth_of(p, seen | {stage.ref_id}) for p in parents), default=-1)
        return depth[stage.ref_id]

    layers: dict[int, list[StageExecution]] = {}
    for stage in top:
        layers.setdefault(depth_of(stage), []).append(stage)
    children = {s.parent_stage_id: s for s in workflow.stages if s.parent_stage_id}
    table = Table(title=_title(workflow.name, "  ", styled(workflow.status)), box=None, padding=(0, 2))
    cells = []
    for level in sorted(layers):
        table.add_column(f"step {level + 1}", justify="left")
        lines: list[Text] = []
        for stage in layers[level]:
            lines.append(Text.assemble(("■", COLOURS[stage.status]), " ", cell(stage.name)))
            child = children.get(stage.id)
            if child is not None:
                lines.append(Text.assemble("  ", ("↳", COLOURS[child.status]), " ", cell(child.name, "dim")))
        cells.append(Text("\n").join(lines))
    table.add_row(*cells)
    return table


def queue_stats_table(stats: Mapping[str, Any]) -> Table:
    """``queue stats``: one row of counts (``stats`` as ``QueueStats`` fields)."""
    table = Table(title="queue")
    for column in ("depth", "due now", "locked", "oldest", "dead letters"):
        table.add_column(column, justify="right")
    table.add_row(
        str(stats["depth"]),
        str(stats["due_now"]),
        str(stats["locked"]),
        age(stats["oldest_age_ms"]),
        str(stats["dead_letters"]),
    )
    return table


def messages_table(rows: list[dict[str, Any]]) -> Table:
    """``queue peek``: one row per queued message."""
    table = Table(title=f"next {len(rows)} message(s)")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("type", overflow="fold")
    table.add_column("message id", no_wrap=True, min_width=26)
    for column in ("due", "attempts", "locked until"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["id"]),
            cell(row["message_type"]),
            cell(row["message_id"]),
            when(row["deliver_at"]),
            str(row["attempts"]),
            when(row["locked_until"]),
        )
    return table


def dead_letters_table(rows: list[dict[str, Any]], total: int) -> Table:
    """``queue dlq``: one row per dead letter, the whole last error."""
    table = Table(title=f"dead letters ({total})")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("type", overflow="fold")
    table.add_column("message id", no_wrap=True, min_width=26)
    table.add_column("attempts")
    table.add_column("failed")
    table.add_column("last error", overflow="fold")
    for row in rows:
        table.add_row(
            str(row["id"]),
            cell(str(row["message_type"])),
            cell(str(row["message_id"])),
            str(row["attempts"]),
            when(row["failed_at"]),
            cell(str(row.get("last_error") or "")),
        )
    return table


def revisions_table(revisions: Iterable[tuple[str, str | None, bool, str]]) -> Table:
    """``db history``: (revision, down revision, is head, description), newest first."""
    table = Table(title="migrations (newest first)")
    for column in ("revision", "revises", "description"):
        table.add_column(column, overflow="fold")
    for revision, down, is_head, doc in revisions:
        table.add_row(cell(revision + (" (head)" if is_head else "")), cell(down or "-"), cell(doc))
    return table
