"""The reference runner end to end: a fan-out / fan-in workflow with a synthetic stage runs to
completion with 1 and 3 worker processes, and every task's effect commits exactly once, even when
a worker is killed with SIGKILL in the middle of a step."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from stabilize.models import Workflow, WorkflowStatus
from stabilize.persistence.errors import DatabaseUnavailableError
from stabilize.persistence.sql.engine import get_engine
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.sql import SqlQueue
from stabilize.runner import Worker, submit
from stabilize.runner.demo import demo_workflow
from stabilize.runner.processes import start_workers
from tests.conftest import FILE_OR_SERVER_DIALECTS
from tests.integration.runner_tasks import EFFECTS

TASKS = ("tests.integration.runner_tasks",)
JOIN_SECONDS = 120


def _workflow(tmp_path: Path, stages: int) -> Workflow:
    workflow = demo_workflow(stages, task="test.effect")
    for stage in workflow.stages:
        stage.context["body_log"] = str(tmp_path / "bodies.log")
    return workflow


def _prepare_effects(url: str) -> None:
    engine = get_engine(url)
    EFFECTS.create(engine, checkfirst=True)
    with engine.begin() as connection:
        connection.execute(delete(EFFECTS))


def _run(url: str, workflow: Workflow, workers: int, lock_seconds: float = 30.0) -> None:
    processes = start_workers(url, workflow.id, workers, imports=TASKS, lock_seconds=lock_seconds)
    for process in processes:
        process.join(JOIN_SECONDS)
    assert not any(p.is_alive() for p in processes), "a worker is still running after the workflow's deadline"


def _effects_per_task(url: str, workflow_id: str) -> Counter[str]:
    with get_engine(url).connect() as connection:
        rows = connection.execute(select(EFFECTS.c.task_id).where(EFFECTS.c.workflow_id == workflow_id))
        return Counter(task_id for (task_id,) in rows)


def _bodies(tmp_path: Path) -> Counter[str]:
    return Counter((tmp_path / "bodies.log").read_text().split())


def _assert_done_once(store: SqlWorkflowStore, url: str, workflow: Workflow) -> Workflow:
    done = store.retrieve(workflow.id)
    assert done.status is WorkflowStatus.SUCCEEDED
    assert all(s.status is WorkflowStatus.SUCCEEDED for s in done.stages)
    task_ids = [t.id for s in done.stages for t in s.tasks]
    assert _effects_per_task(url, workflow.id) == Counter(task_ids)  # each effect exactly once
    combine = done.stage_by_ref_id("combine")
    assert combine is not None
    work_refs = sorted(s.ref_id for s in done.stages if s.ref_id.startswith("work-"))
    merged = store.get_merged_ancestor_outputs(done.id, "combine")
    assert sorted(merged["items"]) == sorted(["prepare", *work_refs])
    return done


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS)
def test_workflow_completes_and_each_task_runs_once(url: str, tmp_path: Path, workers: int) -> None:
    store, queue = SqlWorkflowStore(url), SqlQueue(url)
    _prepare_effects(url)
    workflow = _workflow(tmp_path, stages=8)
    submit(store, queue, workflow)

    _run(url, workflow, workers)

    _assert_done_once(store, url, workflow)
    assert set(_bodies(tmp_path).values()) == {1}  # nobody died: every body ran once
    assert queue.size() == 0


@pytest.mark.parametrize("dialect", ["sqlite_memory"])
def test_workflow_completes_in_process_on_an_in_memory_database(url: str, tmp_path: Path) -> None:
    store, queue = SqlWorkflowStore(url), SqlQueue(url)
    _prepare_effects(url)
    workflow = _workflow(tmp_path, stages=6)
    submit(store, queue, workflow)

    Worker(store, queue).run(lambda: store.retrieve_execution_summary(workflow.id).status.is_complete)

    _assert_done_once(store, url, workflow)
    assert set(_bodies(tmp_path).values()) == {1}


@pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS)
def test_a_worker_killed_mid_step_loses_nothing_and_duplicates_nothing(url: str, tmp_path: Path) -> None:
    store, queue = SqlWorkflowStore(url), SqlQueue(url)
    _prepare_effects(url)
    workflow = _workflow(tmp_path, stages=10)
    victim = workflow.stage_by_ref_id("work-3")
    assert victim is not None
    victim.context["kill_marker"] = str(tmp_path / "killed")
    submit(store, queue, workflow)

    # Short locks, so the dead worker's message comes back quickly to the two survivors.
    _run(url, workflow, workers=3, lock_seconds=2.0)

    assert (tmp_path / "killed").exists(), "the victim task never ran"
    _assert_done_once(store, url, workflow)
    bodies = _bodies(tmp_path)
    assert bodies[victim.tasks[0].id] == 2  # ran, died before commit, ran again
    assert all(count == 1 for task_id, count in bodies.items() if task_id != victim.tasks[0].id)


@pytest.mark.parametrize(
    "unreachable",
    [
        pytest.param("postgresql://postgres@127.0.0.1:1/test", id="postgresql"),
        pytest.param("mysql://root@127.0.0.1:1/test", id="mariadb"),
    ],
)
def test_a_worker_goes_on_through_an_outage_and_gives_up_after_its_bound(unreachable: str) -> None:
    """Every call fails (nothing listens on port 1): the worker keeps polling for
    ``outage_seconds``, then raises the database's error instead of spinning for ever."""
    store = SqlWorkflowStore(unreachable, operation_timeout=2.0)
    queue = SqlQueue(unreachable, operation_timeout=2.0)
    outage = 1.5
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError):
        Worker(store, queue).run(lambda: False, outage_seconds=outage)
    took = time.monotonic() - started
    assert outage <= took < outage + 10, f"gave up after {took:.1f}s"
