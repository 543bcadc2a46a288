"""Every format of every command that prints data, on every dialect: JSON parsed and checked,
``plain`` records whole and escaped, tables that cut nothing in a pipe, and user text (Rich markup,
quotes, newlines, the special characters of DOT and Mermaid) shown exactly as it was stored."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from alembic.script import ScriptDirectory

from stabilize.cli.graph import dot_text, mermaid_text
from stabilize.persistence.sql.migrate import alembic_config, head
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.messages import StartStage
from stabilize.queue.sql import SqlQueue
from tests.cli.helpers import NASTY_NAMES, nasty_workflow, run


def test_runs_list_in_every_format(url: str, store: SqlWorkflowStore) -> None:
    workflow = nasty_workflow(store)

    table = run(url, "runs", "list", "--app", "cli-nasty")
    assert table.code == 0, table.err
    assert workflow.id in table.out  # whole, although COLUMNS is not set and this is a pipe
    assert "Deploy [prod] to eu-west" in table.out and "2023-11-14 22:13:20 UTC" in table.out

    shown = json.loads(run(url, "runs", "list", "--format", "json").out)  # no filter: every application
    assert shown == [
        {
            "id": workflow.id,
            "application": "cli-nasty",
            "name": NASTY_NAMES[1],
            "status": "NOT_STARTED",
            "pipeline_config_id": "cfg-n",
            "start_time": 1_700_000_000_000,
            "end_time": None,
            "is_canceled": False,
            "stage_count": 4,
            "stages_done": 1,
        }
    ]

    plain = run(url, "runs", "list", "--config-id", "cfg-n", "--format", "plain")
    assert plain.code == 0, plain.err
    assert plain.out.splitlines() == [
        "\t".join(
            [workflow.id, "NOT_STARTED", "cli-nasty", NASTY_NAMES[1], "2023-11-14T22:13:20.000Z", "-", "4"]
        )
    ]


def test_runs_show_table_and_tree_print_names_as_written(url: str, store: SqlWorkflowStore) -> None:
    workflow = nasty_workflow(store)
    for fmt in ("table", "tree"):
        result = run(url, "runs", "show", workflow.id, "--format", fmt)
        assert result.code == 0, result.err
        assert workflow.id in result.out
        for name in NASTY_NAMES:
            for line in name.splitlines():  # a newline in a name starts a new line in its cell
                assert line in result.out, (fmt, line, result.out)
    table = run(url, "runs", "show", workflow.id).out
    assert "work-2, work-10" in table  # "waits for", in natural order


def test_runs_show_json_and_plain(url: str, store: SqlWorkflowStore) -> None:
    workflow = nasty_workflow(store)

    shown = json.loads(run(url, "runs", "show", workflow.id, "--format", "json").out)
    assert shown["id"] == workflow.id and shown["name"] == NASTY_NAMES[1]
    assert [s["name"] for s in shown["stages"]] == [s.name for s in workflow.stages]
    assert shown["stages"][-1]["requisite_stage_ref_ids"] == ["work-2", "work-10"]
    assert shown["stages"][0]["tasks"][0]["name"] == NASTY_NAMES[0]
    assert shown["stages"][1]["synthetic_stage_owner"] == "STAGE_BEFORE"
    assert shown["paused"] is None and shown["canceled_by"] is None

    plain = run(url, "runs", "show", workflow.id, "--format", "plain").out.splitlines()
    assert len(plain) == len(workflow.stages)  # the newline in a name is escaped, not a new record
    fields = [line.split("\t") for line in plain]
    assert [f[1] for f in fields] == [s.ref_id for s in workflow.stages]  # the synthetic's is generated
    assert [f[0] for f in fields] == [s.id for s in workflow.stages]
    assert [f[3] for f in fields] == ["0", "1", "0", "0", "0"]  # depth: the synthetic stage is 1
    assert fields[3][4] == "two\\nlines \\\\n back\\\\slash"
    assert fields[4][7] == "work-2,work-10"


def _quotes(line: str) -> int:
    """Double quotes in ``line`` that are not escaped with a backslash."""
    return len(re.findall(r'(?<!\\)"', line))


def test_runs_show_mermaid_and_dot_escape_names(url: str, store: SqlWorkflowStore) -> None:
    workflow = nasty_workflow(store)

    mermaid = run(url, "runs", "show", workflow.id, "--format", "mermaid").out
    assert mermaid.startswith("flowchart LR")
    assert "\\n" not in mermaid.replace("lines \\n back", "")  # lines break with <br/>, never a literal \n
    nodes = [line for line in mermaid.splitlines() if '["' in line]
    assert len(nodes) == len(workflow.stages)
    for stage, line in zip(workflow.stages, nodes, strict=True):
        assert f'["{mermaid_text(stage.name)}<br/>{stage.status.name} ' in line
        assert line.count('"') == 2 and "<b>" not in line
    assert "#34;hi#34;" in mermaid and "#35;quot;" in mermaid and "two<br/>lines" in mermaid

    dot = run(url, "runs", "show", workflow.id, "--format", "dot").out
    assert dot.startswith("digraph workflow {")
    nodes = [line for line in dot.splitlines() if "label=" in line]
    for stage, line in zip(workflow.stages, nodes, strict=True):
        assert f'label="{dot_text(stage.name)}\\n{stage.status.name} ' in line
        assert _quotes(line) == 4  # the label's and the fill colour's
    assert 'say \\"hi\\"' in dot and "two\\nlines \\\\n back\\\\slash" in dot


def test_queue_commands_in_every_format(url: str, store: SqlWorkflowStore) -> None:
    queue = SqlQueue(url)
    for i in range(3):
        queue.push(StartStage(execution_id="w", stage_id=f"s{i}"))
    dead = queue.poll_one() or pytest.fail("nothing to poll")
    queue.move_to_dlq(dead, "boom [/] <x>\nsecond [bold] line")

    stats = json.loads(run(url, "queue", "stats", "--format", "json").out)
    assert stats["depth"] == 2 and stats["due_now"] == 2 and stats["dead_letters"] == 1
    assert run(url, "queue", "stats").out.count("│") >= 6

    peek = json.loads(run(url, "queue", "peek", "--format", "json").out)
    assert [m["message_type"] for m in peek] == ["StartStage", "StartStage"]
    assert set(peek[0]) == {"id", "message_id", "message_type", "deliver_at", "attempts", "locked_until"}
    plain = [line.split("\t") for line in run(url, "queue", "peek", "--format", "plain").out.splitlines()]
    assert [f[1] for f in plain] == [m["message_id"] for m in peek]
    assert all(len(m["message_id"]) == 26 for m in peek)
    assert peek[0]["message_id"] in run(url, "queue", "peek").out

    letters = json.loads(run(url, "queue", "dlq", "--format", "json").out)
    assert [d["last_error"] for d in letters] == ["boom [/] <x>\nsecond [bold] line"]
    assert letters[0]["message_id"] == dead.message_id
    table = run(url, "queue", "dlq")
    assert table.code == 0, table.err
    assert "boom [/] <x>" in table.out and "second [bold] line" in table.out
    assert "dead letters (1)" in table.out
    line = run(url, "queue", "dlq", "--format", "plain").out
    assert line.endswith("\tboom [/] <x>\\nsecond [bold] line\n") and line.count("\n") == 1


def test_db_current_and_check_in_every_format(fresh_url: Callable[[], str]) -> None:
    # A database of its own: the session's shared one holds tables other tests add (runner effects).
    url = fresh_url()
    assert run(url, "db", "upgrade").code == 0
    current = run(url, "db", "current", "--format", "json")
    assert current.code == 0, current.err
    shown = json.loads(current.out)
    assert shown["current"] == shown["head"] == head() and shown["state"] == "at head"
    assert "database: " in current.err
    table = run(url, "db", "current").out
    assert f"current   {head()}" in table and "state     at head" in table

    check = run(url, "db", "check", "--format", "json")
    assert check.code == 0, check.err
    assert json.loads(check.out)["state"] == "at head" and json.loads(check.out)["differences"] == []
    assert "matches the models" in run(url, "db", "check").out


def test_db_history_and_heads_need_no_database() -> None:
    nowhere = "postgresql://nobody:pw@127.0.0.1:1/nowhere"
    history = json.loads(run(nowhere, "db", "history", "--format", "json").out)
    newest = ScriptDirectory.from_config(alembic_config()).get_revision(head())
    assert history[0] == {
        "revision": head(),
        "down_revision": newest.down_revision,
        "doc": newest.doc,
        "is_head": True,
    }
    assert history[-1]["revision"] == "0001" and history[-1]["down_revision"] is None
    plain = run(nowhere, "db", "history", "--format", "plain").out.splitlines()
    assert plain[0].split("\t") == [head(), str(newest.down_revision), "head", newest.doc]
    assert f"{head()} (head)" in run(nowhere, "db", "history").out

    assert json.loads(run(nowhere, "db", "heads", "--format", "json").out) == [head()]
    assert run(nowhere, "db", "heads", "--format", "plain").out == f"{head()}\n"
