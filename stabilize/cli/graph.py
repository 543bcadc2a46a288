"""A run's DAG as a Mermaid flowchart or a Graphviz digraph, coloured by status.

Names are data: each language's special characters are escaped, so a stage named
``say "hi" <b>now</b>`` is drawn as written. Node ids are derived from stage ids (ULIDs).
"""

from __future__ import annotations

from stabilize.cli.render import COLOURS, natural_key, task_progress
from stabilize.models.stage import StageExecution
from stabilize.models.workflow import Workflow

#: Mermaid entity codes (``#<decimal>;``) for what a quoted label may not hold literally: the
#: quote, the characters of HTML and of entity codes themselves, and the markdown-string backtick.
_MERMAID = {ord(ch): f"#{ord(ch)};" for ch in '"#&<>`'}
_MERMAID.update({ord("\r"): "", ord("\n"): "<br/>"})

#: Graphviz escString: a backslash or a quote is escaped; a newline is its centred line break.
_DOT = {ord("\\"): "\\\\", ord('"'): '\\"', ord("\r"): "", ord("\n"): "\\n"}


def _node(stage: StageExecution) -> str:
    return "s_" + "".join(ch if ch.isalnum() else "_" for ch in stage.id)


def mermaid_text(text: str) -> str:
    """``text`` for a double-quoted Mermaid label (newlines become ``<br/>``)."""
    return text.translate(_MERMAID)


def dot_text(text: str) -> str:
    """``text`` for a double-quoted Graphviz string."""
    return text.translate(_DOT)


def _edges(workflow: Workflow) -> list[tuple[StageExecution, StageExecution, str]]:
    """(from, to, kind): requisite edges, and parent-to-synthetic edges drawn dotted."""
    by_ref = {s.ref_id: s for s in workflow.stages}
    by_id = {s.id: s for s in workflow.stages}
    edges = [
        (by_ref[r], s, "dag")
        for s in workflow.stages
        for r in sorted(s.requisite_stage_ref_ids, key=natural_key)
        if r in by_ref
    ]
    edges += [
        (by_id[s.parent_stage_id], s, "synthetic") for s in workflow.stages if s.parent_stage_id in by_id
    ]
    return edges


def mermaid(workflow: Workflow) -> str:
    """The run as a Mermaid flowchart: requisite edges solid, synthetic stages dotted."""
    lines = ["flowchart LR"]
    for status in sorted({s.status for s in workflow.stages}, key=lambda s: s.name):
        lines.append(f"  classDef {status.name} fill:{COLOURS[status]},color:#fff,stroke:#333")
    for s in workflow.stages:
        label = f"{mermaid_text(s.name)}<br/>{s.status.name} {task_progress(s)}"
        lines.append(f'  {_node(s)}["{label}"]:::{s.status.name}')
    for a, b, kind in _edges(workflow):
        lines.append(f"  {_node(a)} {'-.->' if kind == 'synthetic' else '-->'} {_node(b)}")
    return "\n".join(lines)


def dot(workflow: Workflow) -> str:
    """The run as a Graphviz digraph: requisite edges solid, synthetic stages dotted."""
    lines = [
        "digraph workflow {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontcolor=white];',
    ]
    for s in workflow.stages:
        label = f"{dot_text(s.name)}\\n{s.status.name} {task_progress(s)}"
        lines.append(f'  {_node(s)} [label="{label}", fillcolor="{COLOURS[s.status]}"];')
    for a, b, kind in _edges(workflow):
        lines.append(f"  {_node(a)} -> {_node(b)}{' [style=dotted]' if kind == 'synthetic' else ''};")
    lines.append("}")
    return "\n".join(lines)
