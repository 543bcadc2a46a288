"""Runs for the dashboard's tests: hard-to-print names, every kind of stage, a queue with dead
letters, and a layered run of 150 stages."""

from __future__ import annotations

import random
from typing import Any

from stabilize.models import StageExecution, SyntheticStageOwner, TaskExecution, Workflow, WorkflowStatus
from stabilize.models.ids import now_ms
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.messages import StartStage
from stabilize.queue.sql import SqlQueue

#: A name that is HTML, a closing script tag, Rich markup and both quotes at once.
NASTY = '<script>alert("x")</script> Fix [/] \'it\' & "ship" </script>'
#: A context value that would end a JSON island in a page if it were not escaped.
ISLAND_BREAKER = "</script><img src=x onerror=alert(1)>"

S = WorkflowStatus
BEFORE = SyntheticStageOwner.STAGE_BEFORE


def stage(
    ref: str,
    name: str | None = None,
    requisites: set[str] | None = None,
    status: WorkflowStatus = S.NOT_STARTED,
    start: int | None = None,
    end: int | None = None,
    outputs: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
) -> StageExecution:
    """A stage with one task in the stage's status."""
    made = StageExecution.create("test", name or f"Stage {ref}", ref, context, requisites or set())
    made.status, made.start_time, made.end_time = status, start, end
    made.outputs = outputs or {}
    task = TaskExecution.create(f"{ref}-task", f"tasks.{ref.title()}", stage_start=True, stage_end=True)
    task.status, task.start_time, task.end_time = status, start, end
    made.add_task(task)
    return made


def mixed_run(application: str = "shop", name: str = NASTY, start: int | None = None) -> Workflow:
    """A RUNNING run with a name to escape: build SUCCEEDED (a synthetic 'before' stage and
    outputs), test RUNNING, lint TERMINAL, deploy NOT_STARTED waiting for test and lint."""
    t0 = start if start is not None else now_ms() - 60_000
    build = stage(
        "build",
        NASTY,
        status=S.SUCCEEDED,
        start=t0,
        end=t0 + 1500,
        outputs={"artifact": "app-1.0.tar", "tags": ["a"]},
        context={"note": ISLAND_BREAKER, "quote": "\"'"},
    )
    test = stage("test", "Test [unit]", {"build"}, S.RUNNING, t0 + 1600, outputs={"tags": ["b"]})
    lint = stage("lint", "Lint", {"build"}, S.TERMINAL, t0 + 1600, t0 + 2000, outputs={"lint": "failed"})
    deploy = stage("deploy", "Deploy 'prod'", {"test", "lint"})
    workflow = Workflow.create(application, name, [build, test, lint, deploy])
    check = StageExecution.create_synthetic(
        "check", "Check <inputs>", build, SyntheticStageOwner.STAGE_BEFORE
    )
    check.status, check.start_time, check.end_time = S.SUCCEEDED, t0, t0 + 200
    check.add_task(TaskExecution.create("check", "tasks.Check", stage_start=True, stage_end=True))
    workflow.add_stage(check)
    workflow.status, workflow.start_time = S.RUNNING, t0
    return workflow


def finished_run(application: str, start: int, status: WorkflowStatus = S.SUCCEEDED) -> Workflow:
    """A small run that ended ``status``."""
    first = stage("one", status=status, start=start, end=start + 10)
    workflow = Workflow.create(application, f"run at {start}", [first])
    workflow.status, workflow.start_time, workflow.end_time = status, start, start + 10
    return workflow


def layered_run(stages: int = 150, width: int = 10, seed: int = 14) -> Workflow:
    """``stages`` stages in layers of ``width``, each waiting for one to three stages of the
    layer before; every status appears; each layer's first stage has a synthetic 'before' stage."""
    rng = random.Random(seed)
    statuses = [S.SUCCEEDED, S.SUCCEEDED, S.SUCCEEDED, S.RUNNING, S.TERMINAL, S.NOT_STARTED, S.SKIPPED]
    made: list[StageExecution] = []
    layers: list[list[str]] = []
    t0 = now_ms() - 3_600_000
    for index in range(stages):
        layer = index // width
        if layer == len(layers):
            layers.append([])
        ref = f"s{layer:02d}-{index % width:02d}"
        requisites = set(rng.sample(layers[layer - 1], rng.randint(1, 3))) if layer else set()
        status = statuses[index % len(statuses)]
        made.append(
            stage(ref, f"Step {index + 1}", requisites, status, t0 + index * 1000, t0 + index * 1000 + 900)
        )
        layers[layer].append(ref)
    workflow = Workflow.create("bench", f"layered {stages}", made)
    for first in made[::width]:
        before = StageExecution.create_synthetic(
            "prep", f"Prep {first.ref_id}", first, SyntheticStageOwner.STAGE_BEFORE
        )
        workflow.add_stage(before)
    workflow.status, workflow.start_time = S.RUNNING, t0
    return workflow


def dead_letter(queue: SqlQueue, workflow: Workflow, error: str) -> int:
    """Push a message for ``workflow`` and dead-letter it with ``error``; its dead-letter id."""
    message = StartStage(execution_id=workflow.id, stage_id=workflow.stages[0].id)
    queue.push(message)
    assert queue.move_to_dlq(message.message_id, error)
    found = [d for d in queue.list_dlq(100) if d["message_id"] == message.message_id]
    return int(found[0]["id"])


def stored(store: SqlWorkflowStore, *workflows: Workflow) -> list[Workflow]:
    """Store each workflow; return them."""
    for workflow in workflows:
        store.store(workflow)
    return list(workflows)
