"""The ``stabilize`` command line, run as a user runs it: a subprocess per command on the file and
server dialects (in-process for the in-memory database, which no other process can open)."""

from __future__ import annotations

import json

import pytest

from stabilize.models import StageExecution, SyntheticStageOwner, TaskExecution, Workflow, WorkflowStatus
from stabilize.persistence.sql.engine import get_engine
from stabilize.persistence.sql.migrate import upgrade
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.messages import StartStage
from stabilize.queue.sql import SqlQueue
from tests.cli.helpers import run
from tests.conftest import FILE_OR_SERVER_DIALECTS


def sample(store: SqlWorkflowStore, application: str = "cli-app", start: int | None = 1_000) -> Workflow:
    first = StageExecution.create("build", "Build", "build")
    first.add_task(TaskExecution.create("compile", "tasks.Compile", stage_start=True, stage_end=True))
    second = StageExecution.create("test", "Test", "test", requisite_stage_ref_ids={"build"})
    before = StageExecution.create_synthetic("lint", "Lint", first, SyntheticStageOwner.STAGE_BEFORE)
    workflow = Workflow.create(application, "pipeline", [first, before, second], pipeline_config_id="cfg-1")
    workflow.start_time = start
    first.status = WorkflowStatus.SUCCEEDED
    store.store(workflow)
    return workflow


def test_runs_list_shows_workflows_newest_first(url: str, store: SqlWorkflowStore) -> None:
    older, newer = sample(store, start=1_000), sample(store, start=2_000)
    result = run(url, "runs", "list", "--app", "cli-app")
    assert result.code == 0, result.err
    assert result.out.index(newer.id) < result.out.index(older.id)
    by_config = run(url, "runs", "list", "--config-id", "cfg-1", "--status", "RUNNING")
    assert by_config.code == 0 and older.id not in by_config.out


def test_runs_show_json_is_the_stored_workflow(url: str, store: SqlWorkflowStore) -> None:
    workflow = sample(store)
    result = run(url, "runs", "show", workflow.id, "--format", "json")
    assert result.code == 0, result.err
    shown = json.loads(result.out)
    assert shown["id"] == workflow.id and shown["application"] == "cli-app"
    assert [s["ref_id"] for s in shown["stages"]] == [s.ref_id for s in workflow.stages]
    assert shown["stages"][0]["status"] == "SUCCEEDED"
    assert shown["stages"][2]["requisite_stage_ref_ids"] == ["build"]
    assert shown["stages"][1]["synthetic_stage_owner"] == "STAGE_BEFORE"


@pytest.mark.parametrize("fmt", ["table", "tree", "mermaid", "dot"])
def test_runs_show_draws_every_stage(url: str, store: SqlWorkflowStore, fmt: str) -> None:
    workflow = sample(store)
    result = run(url, "runs", "show", workflow.id, "--format", fmt)
    assert result.code == 0, result.err
    for stage in workflow.stages:
        assert stage.name in result.out
    if fmt == "mermaid":
        assert result.out.startswith("flowchart LR")
        assert result.out.count("-->") == 1 and result.out.count("-.->") == 1  # one DAG edge, one synthetic
        assert ":::SUCCEEDED" in result.out and "classDef SUCCEEDED fill:#43a047" in result.out
    if fmt == "dot":
        assert result.out.startswith("digraph workflow {") and "[style=dotted]" in result.out


def test_runs_purge_removes_only_old_finished_workflows(url: str, store: SqlWorkflowStore) -> None:
    finished, running = sample(store), sample(store)
    finished.status, finished.end_time = WorkflowStatus.SUCCEEDED, 1_000
    store.update_status(finished)

    dry = run(url, "runs", "purge", "--older-than", "1d", "--dry-run")
    assert dry.code == 0 and "would remove 1 " in dry.out
    assert store.exists(finished.id)
    done = run(url, "runs", "purge", "--older-than", "1d", "--yes")
    assert done.code == 0 and "removed 1 " in done.out
    assert not store.exists(finished.id) and store.exists(running.id)


def test_queue_stats_peek_and_dead_letters(url: str, store: SqlWorkflowStore) -> None:
    queue = SqlQueue(url)
    for i in range(3):
        queue.push(StartStage(execution_id="w", stage_id=f"s{i}"))
    queue.move_to_dlq(queue.poll_one() or pytest.fail("nothing to poll"), "boom")

    stats = run(url, "queue", "stats")
    assert stats.code == 0, stats.err
    assert [int(x) for x in stats.out.split("│")[1:6:2] if x.strip().isdigit()][:1] == [2]  # depth
    peek = run(url, "queue", "peek", "-n", "5")
    assert peek.code == 0 and peek.out.count("StartStage") == 2
    letters = run(url, "queue", "dlq")
    assert letters.code == 0 and "boom" in letters.out and "dead letters (1)" in letters.out
    dead_id = str(queue.list_dlq()[0]["id"])
    assert run(url, "queue", "dlq", "--replay", dead_id).code == 0
    assert queue.size() == 3 and queue.dlq_size() == 0


def test_db_commands_report_head(url: str) -> None:
    current = run(url, "db", "current", "--format", "json")
    assert current.code == 0, current.err
    head = json.loads(current.out)["head"]
    assert json.loads(current.out)["current"] == head
    assert run(url, "db", "check").code == 0
    assert head in run(url, "db", "history").out


def test_db_check_fails_on_a_database_behind_head(fresh_url: object, dialect: str) -> None:
    assert callable(fresh_url)
    target = fresh_url()
    upgrade(get_engine(target), "0001")
    behind = run(target, "db", "check")
    assert behind.code != 0
    assert "run `stabilize db upgrade`" in behind.err
    assert run(target, "db", "upgrade").code == 0
    assert run(target, "db", "check").code == 0


def test_unknown_workflow_is_one_clear_line(url: str) -> None:
    result = run(url, "runs", "show", "NO-SUCH-ID")
    assert result.code != 0
    assert result.err.strip().count("\n") == 0
    assert "NO-SUCH-ID" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize(
    "bad_url",
    [
        "postgresql://stabilize:s3cr3t-pw@127.0.0.1:1/nowhere",
        "mysql://root:s3cr3t-pw@127.0.0.1:3306/test",  # a real server, the wrong password
    ],
)
def test_a_wrong_url_fails_in_one_line_without_the_password(bad_url: str) -> None:
    result = run(bad_url, "runs", "list", "--app", "x")
    assert result.code != 0
    assert result.err.strip() and result.err.strip().count("\n") == 0
    assert "s3cr3t-pw" not in result.err + result.out
    assert "Traceback" not in result.err


@pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS)
def test_demo_runs_to_completion(url: str) -> None:
    result = run(url, "demo", "--workers", "2", "--stages", "5")
    assert result.code == 0, result.err
    assert "(5 stages, plus 1 synthetic)" in result.out  # --stages counts the DAG's stages
    assert "stage combine SUCCEEDED (5/5 done)" in result.out  # outside a terminal: a line per stage
    assert "SUCCEEDED" in result.out
    assert "merged outputs of the ancestors of 'combine'" in result.out
    merged = json.loads(result.out[result.out.index("{", result.out.index("merged outputs")) :])
    assert sorted(merged["items"]) == ["seed", "work-1:seed", "work-2:seed", "work-3:seed"]
