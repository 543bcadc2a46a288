"""The demo workflow and its tasks: a fan-out / fan-in DAG whose outputs flow to descendants.

prepare (with a synthetic 'validate' before it) -> work-1 .. work-N -> combine
"""

from __future__ import annotations

import time
from typing import Any

from stabilize.models.stage import StageExecution, SyntheticStageOwner
from stabilize.models.task import TaskExecution
from stabilize.models.workflow import Workflow
from stabilize.runner.tasks import TaskContext, registered_task

#: Simulated work per task, so a person can watch the progress bar move.
WORK_SECONDS = 0.05


@registered_task("demo.validate")
def validate(context: TaskContext) -> dict[str, Any]:
    """The synthetic stage before ``prepare``: outputs ``validated``."""
    return {"validated": True}


@registered_task("demo.prepare")
def prepare(context: TaskContext) -> dict[str, Any]:
    """Outputs the seed ``items`` and the stage context's ``batch`` (``"demo"`` by default)."""
    return {"items": ["seed"], "batch": context.stage.context.get("batch", "demo")}


@registered_task("demo.work")
def work(context: TaskContext) -> dict[str, Any]:
    """Sleeps ``WORK_SECONDS``, then outputs the inherited ``items``, each prefixed with this stage's
    ref id, and ``last_worker``.
    """
    time.sleep(WORK_SECONDS)
    ref = context.stage.ref_id
    return {"items": [f"{ref}:{item}" for item in context.inputs.get("items", [])], "last_worker": ref}


@registered_task("demo.combine")
def combine(context: TaskContext) -> dict[str, Any]:
    """Outputs how many ``items`` the ancestors' merged outputs hold, and a one-line summary."""
    items = context.inputs.get("items", [])
    return {"count": len(items), "summary": f"{len(items)} items from {context.inputs.get('batch')}"}


def demo_workflow(stages: int = 6, task: str | None = None) -> Workflow:
    """``stages`` DAG stages in all (at least 3): prepare, stages - 2 workers, combine.

    ``task`` replaces every stage's task (tests pass one that counts its effects).
    """
    workers = max(1, stages - 2)
    prepare_stage = _stage("prepare", "Prepare batch", task or "demo.prepare", set(), {"batch": "demo-batch"})
    work_stages = [
        _stage(f"work-{i}", f"Work {i}", task or "demo.work", {"prepare"}) for i in range(1, workers + 1)
    ]
    combine_refs = {s.ref_id for s in work_stages}
    combine_stage = _stage("combine", "Combine results", task or "demo.combine", combine_refs)
    validate_stage = StageExecution.create_synthetic(
        "validate", "Validate input", prepare_stage, SyntheticStageOwner.STAGE_BEFORE
    )
    validate_stage.add_task(
        TaskExecution.create("validate", task or "demo.validate", stage_start=True, stage_end=True)
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
