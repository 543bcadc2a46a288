"""A read of several statements sees one snapshot, whatever other processes commit meanwhile.

Writer processes keep adding stages, each with exactly three tasks, to one workflow (``add_stage``
and ``store_stage`` of a new stage, one commit per stage), while reader processes call
``retrieve``, an unlimited ``retrieve_by_application`` and ``retrieve_stage`` on it. What this
file proves, on SQLite (a file), PostgreSQL and MariaDB: every read is the workflow as it stood at
one commit, that is

- no read raises (the ``KeyError`` of a stage read by one statement whose tasks another
  statement did not see, or the reverse);
- every stage has its three tasks, in order, each pointing at its stage;
- each writer's stages are a prefix of what it committed, in the order it committed them;
- one reader's successive reads never lose a stage;
- a stage read by ``retrieve_stage`` comes with its requisite, which committed before it, and
  both have their three tasks.

The race is bounded by counts of operations: each writer adds a fixed number of stages, and each
reader reads until it has seen the last of them (at most ``MAX_READS`` reads). The readers must
also have seen intermediate states, or there was no race to survive.
"""

from __future__ import annotations

import random
import traceback
from typing import Any

import pytest

from stabilize.models import StageExecution, TaskExecution, Workflow
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.persistence.store import WorkflowCriteria
from tests.conftest import FILE_OR_SERVER_DIALECTS
from tests.integration.builders import chain
from tests.processes import run_together

WRITERS = 2
STAGES_EACH = 40
TASKS_EACH = 3
READERS = 2
#: Reads one reader may take to see the writers' last stage; far more than it needs.
MAX_READS = 5_000
APPLICATION = "snapshot-race"
TOTAL = 1 + WRITERS * STAGES_EACH  # the seed stage and every writer's


def ref(writer: int, index: int) -> str:
    return f"w{writer}-{index:03d}"


def new_stage(writer: int, index: int, workflow: Workflow) -> StageExecution:
    requisite = ref(writer, index - 1) if index else "seed"
    stage = StageExecution.create(
        "race", ref(writer, index), ref(writer, index), {"writer": writer}, {requisite}
    )
    for t in range(TASKS_EACH):
        stage.add_task(
            TaskExecution.create(f"t{t}", "tasks.Race", stage_start=t == 0, stage_end=t == TASKS_EACH - 1)
        )
    stage.execution = workflow
    return stage


def write(url: str, workflow_id: str, writer: int, start: Any) -> int:
    store = SqlWorkflowStore(url)
    workflow = store.retrieve_execution_summary(workflow_id)
    start.wait(60)
    for index in range(STAGES_EACH):
        stage = new_stage(writer, index, workflow)
        if index % 2:
            store.add_stage(stage)
        else:
            store.store_stage(stage)
    return STAGES_EACH


def problems_of(workflow: Workflow, workflow_id: str) -> list[str]:
    """What makes ``workflow`` not the workflow as it stood at one commit."""
    found: list[str] = []
    if workflow.id != workflow_id:
        found.append(f"read workflow {workflow.id}")
    refs = [s.ref_id for s in workflow.stages]
    if not refs or refs[0] != "seed":
        found.append(f"the seed stage is not first: {refs[:3]}")
    for stage in workflow.stages:
        names = [t.name for t in stage.tasks]
        if names != [f"t{t}" for t in range(TASKS_EACH)]:
            found.append(f"stage {stage.ref_id} has tasks {names}")
        if any(t.stage is not stage for t in stage.tasks):
            found.append(f"a task of {stage.ref_id} points elsewhere")
        if stage.execution is not workflow:
            found.append(f"stage {stage.ref_id} points at another workflow")
    for writer in range(WRITERS):
        mine = [r for r in refs if r.startswith(f"w{writer}-")]
        if mine != [ref(writer, i) for i in range(len(mine))]:
            found.append(f"writer {writer}'s stages are not a prefix of its commits: {mine}")
    return found


def read(url: str, workflow_id: str, reader: int, start: Any) -> dict[str, Any]:
    """Reads until the last stage is seen; returns the counts seen and every problem found."""
    store = SqlWorkflowStore(url)
    rng = random.Random(reader)
    start.wait(60)
    counts: list[int] = []
    problems: list[str] = []
    seen: set[str] = set()
    known: list[StageExecution] = []
    reads = 0
    while reads < MAX_READS and (not counts or counts[-1] < TOTAL):
        reads += 1
        kind = reads % 3
        if kind == 2 and known:
            problems += stage_problems(store, rng.choice(known))
            continue
        if kind == 1:
            page = list(store.retrieve_by_application(APPLICATION, WorkflowCriteria(page_size=None)))
            ours = [w for w in page if w.id == workflow_id]
            if len(ours) != 1 or len(page) != 2:
                problems.append(f"a page of {len(page)} workflows, {len(ours)} of them ours")
                continue
            workflow = ours[0]
            other = next(w for w in page if w.id != workflow_id)
            if [len(s.tasks) for s in other.stages] != [TASKS_EACH] * 3:
                problems.append("the other workflow of the page changed")
        else:
            workflow = store.retrieve(workflow_id)
        problems += problems_of(workflow, workflow_id)
        ids = {s.id for s in workflow.stages}
        if not seen <= ids:
            problems.append(f"read {reads} lost {len(seen - ids)} stages an earlier read had")
        if counts and len(ids) < counts[-1]:
            problems.append(f"stage count fell from {counts[-1]} to {len(ids)}")
        seen |= ids
        counts.append(len(ids))
        known = [s for s in workflow.stages if s.ref_id != "seed"]
    return {"reads": reads, "counts": counts, "problems": problems}


def stage_problems(store: SqlWorkflowStore, known: StageExecution) -> list[str]:
    stage = store.retrieve_stage(known.id)
    partial = stage.execution
    found = [f"retrieve_stage: {p}" for p in problems_of_stage(stage)]
    requisites = [s for s in partial.stages if s.ref_id in stage.requisite_stage_ref_ids]
    if len(requisites) != 1:
        found.append(f"retrieve_stage({stage.ref_id}): requisites {[s.ref_id for s in requisites]}")
    for other in requisites:
        found += [f"retrieve_stage, requisite: {p}" for p in problems_of_stage(other)]
    return found


def problems_of_stage(stage: StageExecution) -> list[str]:
    names = [t.name for t in stage.tasks]
    if names != [f"t{t}" for t in range(TASKS_EACH)]:
        return [f"stage {stage.ref_id} has tasks {names}"]
    return []


def race(role: str, index: int, url: str, workflow_id: str, start: Any, results: Any) -> None:
    """One racing process: a writer or a reader; its outcome (or its error) goes to ``results``."""
    try:
        if role == "writer":
            results.put((role, index, write(url, workflow_id, index, start)))
        else:
            results.put((role, index, read(url, workflow_id, index, start)))
    except BaseException:
        results.put((role, index, {"error": traceback.format_exc()}))


@pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS, indirect=True)
def test_every_read_is_the_workflow_as_it_stood_at_one_commit(store: SqlWorkflowStore, url: str) -> None:
    seed = StageExecution.create("race", "seed", "seed")
    for t in range(TASKS_EACH):
        seed.add_task(TaskExecution.create(f"t{t}", "tasks.Race"))
    workflow = Workflow.create(APPLICATION, "raced", [seed])
    store.store(workflow)
    neighbour = chain(3, TASKS_EACH, application=APPLICATION)  # a second workflow on every page
    store.store(neighbour)

    roles = [("writer", i) for i in range(WRITERS)] + [("reader", i) for i in range(READERS)]
    outcomes = run_together(
        race, [(role, i, url, workflow.id) for role, i in roles], results_each=1, timeout=120
    )

    errors = [o for o in outcomes if isinstance(o[2], dict) and "error" in o[2]]
    assert errors == []
    assert sorted(o[2] for o in outcomes if o[0] == "writer") == [STAGES_EACH] * WRITERS
    reads = [o[2] for o in outcomes if o[0] == "reader"]
    assert [r["problems"] for r in reads] == [[]] * READERS
    # Every reader saw the end, within its bound of reads.
    assert [r["counts"][-1] for r in reads] == [TOTAL] * READERS
    # The readers raced the writers: they saw states between the first commit and the last.
    between = {c for r in reads for c in r["counts"] if 1 < c < TOTAL}
    assert len(between) >= 2, f"the readers saw only {sorted(between)} between the first and last commit"
    final = store.retrieve(workflow.id)
    assert len(final.stages) == TOTAL
    assert problems_of(final, workflow.id) == []
