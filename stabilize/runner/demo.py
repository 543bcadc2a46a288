"""The demo workflow and its tasks: a fan-out / fan-in DAG whose outputs flow to descendants.

prepare (with a synthetic 'validate' before it) -> work-1 .. work-N -> combine
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

from stabilize.models.stage import StageExecution, SyntheticStageOwner
from stabilize.models.task import TaskExecution
from stabilize.models.workflow import Workflow
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.sql import SqlQueue
from stabilize.runner.tasks import TaskContext, registered_task
from stabilize.runner.worker import Worker

#: Simulated work per task, so a person can watch the progress bar move.
WORK_SECONDS = 0.05


@registered_task("demo.validate")
def validate(context: TaskContext) -> dict[str, Any]:
    return {"validated": True}


@registered_task("demo.prepare")
def prepare(context: TaskContext) -> dict[str, Any]:
    return {"items": ["seed"], "batch": context.stage.context.get("batch", "demo")}


@registered_task("demo.work")
def work(context: TaskContext) -> dict[str, Any]:
    time.sleep(WORK_SECONDS)
    ref = context.stage.ref_id
    return {"items": [f"{ref}:{item}" for item in context.inputs.get("items", [])], "last_worker": ref}


@registered_task("demo.combine")
def combine(context: TaskContext) -> dict[str, Any]:
    items = context.inputs.get("items", [])
    return {"count": len(items), "summary": f"{len(items)} items from {context.inputs.get('batch')}"}


def demo_workflow(stages: int = 6) -> Workflow:
    """``stages`` DAG stages in all (at least 3): prepare, stages - 2 workers, combine."""
    workers = max(1, stages - 2)
    prepare_stage = _stage("prepare", "Prepare batch", "demo.prepare", set(), {"batch": "demo-batch"})
    work_stages = [_stage(f"work-{i}", f"Work {i}", "demo.work", {"prepare"}) for i in range(1, workers + 1)]
    combine_stage = _stage("combine", "Combine results", "demo.combine", {s.ref_id for s in work_stages})
    validate_stage = StageExecution.create_synthetic(
        "validate", "Validate input", prepare_stage, SyntheticStageOwner.STAGE_BEFORE
    )
    validate_stage.add_task(
        TaskExecution.create("validate", "demo.validate", stage_start=True, stage_end=True)
    )
    return Workflow.create(
        "demo", "fan-out / fan-in", [prepare_stage, validate_stage, *work_stages, combine_stage]
    )


def _stage(
    ref: str, name: str, task: str, requisites: set[str], context: dict[str, Any] | None = None
) -> StageExecution:
    stage = StageExecution.create(ref.split("-")[0], name, ref, context, requisites)
    stage.add_task(TaskExecution.create(ref, task, stage_start=True, stage_end=True))
    return stage


def run_worker(url: str, workflow_id: str, lock_seconds: float = 30.0) -> int:
    """A worker process's body: run until the workflow is finished; return messages handled."""
    store = SqlWorkflowStore(url)
    queue = SqlQueue(url, lock_duration=lock_seconds)
    worker = Worker(store, queue)
    return worker.run(lambda: store.retrieve_execution_summary(workflow_id).status.is_complete)


def start_workers(url: str, workflow_id: str, count: int) -> list[multiprocessing.process.BaseProcess]:
    """``count`` worker processes ('spawn': each opens its own connections)."""
    context = multiprocessing.get_context("spawn")
    processes: list[multiprocessing.process.BaseProcess] = [
        context.Process(target=run_worker, args=(url, workflow_id), daemon=True) for _ in range(count)
    ]
    for process in processes:
        process.start()
    return processes
