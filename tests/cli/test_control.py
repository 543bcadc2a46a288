"""Destructive commands ask first (and need --yes without a terminal), and runs can be paused,
resumed and cancelled through the store: on every dialect."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import inspect

from stabilize.cli.errors import ExitCode
from stabilize.models import StageExecution, TaskExecution, Workflow, WorkflowStatus
from stabilize.persistence.sql.engine import get_engine
from stabilize.persistence.sql.migrate import current, head, upgrade
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.messages import StartStage
from stabilize.queue.sql import SqlQueue
from tests.cli.helpers import run, run_at_terminal
from tests.conftest import FILE_OR_SERVER_DIALECTS


def running(store: SqlWorkflowStore, ended: int | None = None) -> Workflow:
    stage = StageExecution.create("build", "Build", "build")
    stage.add_task(TaskExecution.create("compile", "tasks.Compile", stage_start=True, stage_end=True))
    workflow = Workflow.create("ctl", "pipeline", [stage])
    workflow.status, workflow.start_time = WorkflowStatus.RUNNING, 1_000
    if ended is not None:
        workflow.status, workflow.end_time = WorkflowStatus.SUCCEEDED, ended
    store.store(workflow)
    return workflow


def test_purge_and_clear_need_yes_without_a_terminal(url: str, store: SqlWorkflowStore) -> None:
    old = running(store, ended=1_000)
    queue = SqlQueue(url)
    queue.push(StartStage(execution_id="w", stage_id="s"))
    queue.move_to_dlq(queue.poll_one() or pytest.fail("nothing to poll"), "boom")
    queue.push(StartStage(execution_id="w", stage_id="t"))

    for command in (
        ["runs", "purge", "--older-than", "1d"],
        ["queue", "clear"],
        ["queue", "clear", "--dead-letters"],
    ):
        refused = run(url, *command)
        assert refused.code == ExitCode.USAGE, (command, refused.err)
        assert "--yes is required to delete" in refused.err and "nothing changed" in refused.err
    assert store.exists(old.id) and queue.size() == 1 and queue.dlq_size() == 1

    assert "removed 1 workflow(s)" in run(url, "runs", "purge", "--older-than", "1d", "--yes").out
    assert run(url, "queue", "clear", "--yes").code == 0 and queue.size() == 0
    assert run(url, "queue", "clear", "--dead-letters", "-y").code == 0 and queue.dlq_size() == 0
    assert not store.exists(old.id)


@pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS)
def test_downgrade_and_reset_need_yes_and_name_the_database(fresh_url: Callable[[], str]) -> None:
    url = fresh_url()
    engine = get_engine(url)
    upgrade(engine)
    store = SqlWorkflowStore(url)
    kept = running(store)

    for command in (["db", "downgrade", "base"], ["db", "reset"]):
        refused = run(url, *command)
        assert refused.code == ExitCode.USAGE, refused.err
        assert "--yes is required to" in refused.err and "database: " in refused.err
    assert current(engine) == head() and store.exists(kept.id)

    reset = run(url, "db", "reset", "--yes")
    assert reset.code == 0, reset.err
    assert current(engine) == head() and not store.exists(kept.id)
    down = run(url, "db", "downgrade", "base", "--yes")
    assert down.code == 0 and f"downgraded from {head()} to base" in down.out
    assert "workflows" not in inspect(engine).get_table_names()


def test_a_person_at_a_terminal_is_asked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'asked.db'}"
    engine = get_engine(url)
    upgrade(engine)
    queue = SqlQueue(url)
    queue.push(StartStage(execution_id="w", stage_id="s"))

    declined = run_at_terminal(url, "queue", "clear", answer="n")
    assert declined.code == ExitCode.FAILURE and "aborted: nothing changed" in declined.err
    assert "Delete all 1 queued message(s)" in declined.err and queue.size() == 1
    assert run_at_terminal(url, "queue", "clear", answer="y").code == 0 and queue.size() == 0

    declined = run_at_terminal(url, "db", "downgrade", "base", answer="")  # Enter: the default is no
    assert declined.code == ExitCode.FAILURE and current(engine) == head()
    assert "drops every stabilize table and its data" in declined.err
    assert run_at_terminal(url, "db", "downgrade", "base", answer="yes").code == 0
    assert current(engine) is None


def test_pause_resume_cancel(url: str, store: SqlWorkflowStore) -> None:
    workflow, other = running(store), running(store)
    queue = SqlQueue(url)
    queue.push(StartStage(execution_id=workflow.id, stage_id=workflow.stages[0].id))
    queue.push(StartStage(execution_id=other.id, stage_id=other.stages[0].id))

    paused = run(url, "runs", "pause", workflow.id, "--by", "ops [team]")
    assert paused.code == 0, paused.err
    assert f"stabilize runs resume {workflow.id}" in paused.out
    shown = store.retrieve_execution_summary(workflow.id)
    assert shown.status is WorkflowStatus.PAUSED and shown.paused and shown.paused.paused_by == "ops [team]"
    assert "already paused" in run(url, "runs", "pause", workflow.id).out

    assert run(url, "runs", "resume", workflow.id).code == 0
    resumed = store.retrieve_execution_summary(workflow.id)
    assert resumed.status is WorkflowStatus.RUNNING and resumed.paused and resumed.paused.resume_time
    again = run(url, "runs", "resume", workflow.id)
    assert again.code == ExitCode.FAILURE and "not PAUSED" in again.err

    canceled = run(url, "runs", "cancel", workflow.id, "--reason", "wrong branch", "--by", "me")
    assert canceled.code == 0, canceled.err
    assert "dropped 1 queued message(s)" in canceled.out
    ended = store.retrieve_execution_summary(workflow.id)
    assert ended.status is WorkflowStatus.CANCELED and ended.end_time is not None
    assert (ended.is_canceled, ended.canceled_by, ended.cancellation_reason) == (True, "me", "wrong branch")
    assert queue.size() == 1 and store.retrieve_execution_summary(other.id).status is WorkflowStatus.RUNNING
    twice = run(url, "runs", "cancel", workflow.id)
    assert twice.code == ExitCode.FAILURE and "already ended CANCELED" in twice.err

    unknown = run(url, "runs", "pause", "NO-SUCH-RUN")
    assert unknown.code == ExitCode.FAILURE and "'NO-SUCH-RUN' not found" in unknown.err
