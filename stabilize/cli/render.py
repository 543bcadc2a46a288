"""Workflows as text a person reads: a table, a tree, JSON, or a Mermaid / Graphviz picture.

Pure functions of domain objects, so each format is testable without a terminal or a database.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich.table import Table
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


def when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S")


def duration(start: int | None, end: int | None) -> str:
    if start is None or end is None:
        return "-"
    seconds = max(0, end - start) / 1000
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def task_progress(stage: StageExecution) -> str:
    done = sum(1 for t in stage.tasks if t.status.is_complete)
    return f"{done}/{len(stage.tasks)}"


def styled(status: WorkflowStatus) -> str:
    return f"[{COLOURS[status]}]{status.name}[/]"


def workflows_table(workflows: list[Workflow]) -> Table:
    table = Table(title="workflows (newest first)")
    for column in ("id", "application", "name", "status", "started", "duration", "stages"):
        table.add_column(column)
    for w in workflows:
        table.add_row(
            w.id,
            w.application,
            w.name,
            styled(w.status),
            when(w.start_time),
            duration(w.start_time, w.end_time),
            str(len(w.stages)),
        )
    return table


def _ordered_with_children(workflow: Workflow) -> list[tuple[int, StageExecution]]:
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


def stages_table(workflow: Workflow) -> Table:
    table = Table(title=f"{workflow.name} [{workflow.id}] {styled(workflow.status)}")
    for column in ("stage", "ref", "status", "started", "duration", "tasks", "waits for"):
        table.add_column(column)
    for depth, s in _ordered_with_children(workflow):
        owner = f" ({s.synthetic_stage_owner.name.split('_')[1].lower()})" if s.synthetic_stage_owner else ""
        table.add_row(
            "  " * depth + s.name + owner,
            "" if s.is_synthetic() else s.ref_id,
            styled(s.status),
            when(s.start_time),
            duration(s.start_time, s.end_time),
            task_progress(s),
            ", ".join(sorted(s.requisite_stage_ref_ids)),
        )
    return table


def stages_tree(workflow: Workflow) -> Tree:
    tree = Tree(f"{workflow.name} [{workflow.id}] {styled(workflow.status)}")
    branches: dict[str, Tree] = {}
    for depth, s in _ordered_with_children(workflow):
        parent = branches.get(s.parent_stage_id or "") if depth else tree
        label = f"{s.name} ({s.ref_id}) {styled(s.status)} tasks {task_progress(s)}"
        branch = (parent or tree).add(label)
        branches[s.id] = branch
        for task in s.tasks:
            branch.add(f"[dim]{task.name}[/] {styled(task.status)}")
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
    table = Table(
        title=f"{workflow.name}  {styled(workflow.status)}", show_lines=False, box=None, padding=(0, 2)
    )
    cells = []
    for level in sorted(layers):
        table.add_column(f"step {level + 1}", justify="left")
        lines = []
        for stage in layers[level]:
            lines.append(f"[{COLOURS[stage.status]}]■[/] {stage.name}")
            child = children.get(stage.id)
            if child is not None:
                lines.append(f"  [{COLOURS[child.status]}]↳[/] [dim]{child.name}[/]")
        cells.append("\n".join(lines))
    table.add_row(*[f"{cell}" for cell in cells])
    return table


def workflow_json(workflow: Workflow) -> str:
    def stage(s: StageExecution) -> dict[str, Any]:
        return {
            "id": s.id,
            "ref_id": s.ref_id,
            "type": s.type,
            "name": s.name,
            "status": s.status.name,
            "requisite_stage_ref_ids": sorted(s.requisite_stage_ref_ids),
            "parent_stage_id": s.parent_stage_id,
            "synthetic_stage_owner": s.synthetic_stage_owner.name if s.synthetic_stage_owner else None,
            "start_time": s.start_time,
            "end_time": s.end_time,
            "version": s.version,
            "context": s.context,
            "outputs": s.outputs,
            "tasks": [{"id": t.id, "name": t.name, "status": t.status.name} for t in s.tasks],
        }

    return json.dumps(
        {
            "id": workflow.id,
            "application": workflow.application,
            "name": workflow.name,
            "status": workflow.status.name,
            "start_time": workflow.start_time,
            "end_time": workflow.end_time,
            "pipeline_config_id": workflow.pipeline_config_id,
            "stages": [stage(s) for s in workflow.stages],
        },
        indent=2,
    )


def _node(stage: StageExecution) -> str:
    return "s_" + "".join(ch if ch.isalnum() else "_" for ch in stage.id)


def _label(stage: StageExecution) -> str:
    text = f"{stage.name}\\n{stage.status.name} {task_progress(stage)}"
    return text.replace('"', "'")


def _edges(workflow: Workflow) -> list[tuple[StageExecution, StageExecution, str]]:
    """(from, to, kind): requisite edges, and parent-to-synthetic edges drawn dotted."""
    by_ref = {s.ref_id: s for s in workflow.stages}
    by_id = {s.id: s for s in workflow.stages}
    edges = [
        (by_ref[r], s, "dag")
        for s in workflow.stages
        for r in sorted(s.requisite_stage_ref_ids)
        if r in by_ref
    ]
    edges += [
        (by_id[s.parent_stage_id], s, "synthetic") for s in workflow.stages if s.parent_stage_id in by_id
    ]
    return edges


def mermaid(workflow: Workflow) -> str:
    lines = ["flowchart LR"]
    for status in sorted({s.status for s in workflow.stages}, key=lambda s: s.name):
        lines.append(f"  classDef {status.name} fill:{COLOURS[status]},color:#fff,stroke:#333")
    for s in workflow.stages:
        lines.append(f'  {_node(s)}["{_label(s)}"]:::{s.status.name}')
    for a, b, kind in _edges(workflow):
        lines.append(f"  {_node(a)} {'-.->' if kind == 'synthetic' else '-->'} {_node(b)}")
    return "\n".join(lines)


def dot(workflow: Workflow) -> str:
    lines = [
        "digraph workflow {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontcolor=white];',
    ]
    for s in workflow.stages:
        lines.append(f'  {_node(s)} [label="{_label(s)}", fillcolor="{COLOURS[s.status]}"];')
    for a, b, kind in _edges(workflow):
        lines.append(f"  {_node(a)} -> {_node(b)}{' [style=dotted]' if kind == 'synthetic' else ''};")
    lines.append("}")
    return "\n".join(lines)
