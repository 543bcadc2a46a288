"""The benchmark's workloads: the same code measures our store, upstream's and the raw ceiling.

This module runs inside either interpreter (ours, or upstream's venv), so it imports only the
``stabilize`` API both packages share (models, ``WorkflowCriteria``, two message types, and
python-ulid, which both depend on) and reaches everything side-specific through a ``Side`` built
by ``adapters.open_side``. Every store call here is one both stores expose under that name.

Besides the bulk calls (store, retrieve, a page, the merge) it measures what upstream's engine
calls per message: ``retrieve_stage``, ``get_upstream_stages`` / ``get_downstream_stages`` /
``get_synthetic_stages``, ``is_message_processed`` and ``mark_message_processed``, a CAS write,
a transaction, and the queue's push / poll / ack.

Every workload checks its answers outside the timed region but on every result the timed region
produced: round-trip equality, merged outputs equal to an independent reference, a page equal
to the reference page, no duplicate and no lost queue message, a stage's partial workflow and
its neighbours equal to what was stored, every processed mark found and no other. A wrong answer
raises ``WrongAnswer`` and the run fails: speed is never bought with a wrong answer.
"""

from __future__ import annotations

import gc
import multiprocessing
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ulid import ULID

from stabilize.models.stage import StageExecution, SyntheticStageOwner
from stabilize.models.status import WorkflowStatus
from stabilize.models.task import TaskExecution
from stabilize.models.workflow import Workflow
from stabilize.persistence.store import WorkflowCriteria
from stabilize.queue.messages import StartStage, StartWorkflow

#: Seconds a repeated measurement runs for (at least MIN_REPS calls), per workload and round.
REPEAT_SECONDS = 0.3
MIN_REPS = 5
#: Visibility lock longer than any run, so a second delivery can only be a duplicate.
LOCK_SECONDS = 600
DRAIN_DEADLINE = 300.0


class WrongAnswer(AssertionError):
    """A workload returned something other than the reference answer."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise WrongAnswer(message)


@dataclass
class Sizes:
    workflows: int = 500
    stages: int = 10
    tasks: int = 2
    cas: int = 2000
    txns: int = 2000
    messages: int = 2000
    page_workflows: int = 5000
    page_stages: int = 4
    page_size: int = 20
    dag_sizes: tuple[int, ...] = (10, 100, 1000)
    #: retrieve_stage calls per workflow size, spread over every stage of enough workflows.
    stage_reads: int = 500
    stage_workflow_sizes: tuple[int, ...] = (10, 100)
    #: Branches of the fan-out / fan-in workflow (the join's upstream, the root's downstream).
    fan_width: int = 100
    #: Message ids marked processed (fresh ones), then looked up (as many unknown ones too).
    marks: int = 2000

    @classmethod
    def small(cls) -> Sizes:
        """A smoke-test size: every workload and check, in seconds."""
        return cls(
            workflows=20,
            cas=40,
            txns=40,
            messages=60,
            page_workflows=100,
            dag_sizes=(10, 100),
            stage_reads=40,
            marks=60,
        )


@dataclass
class Side:
    """What a workload needs from one implementation."""

    name: str
    store: Any
    #: ``new_queue()`` gives a queue on the same database (for pushes and size checks).
    new_queue: Callable[[], Any] | None = None
    #: Picklable recipe for a consumer process: ``(side, dialect, url)``.
    queue_spec: tuple[str, str, str] | None = None
    concurrency_error: type[BaseException] = Exception
    #: Refresh the planner's statistics after a bulk load (untimed; what autovacuum does within a
    #: minute on PostgreSQL), so both sides are measured against a database in its steady state.
    analyze: Callable[[], None] = lambda: None
    #: Store a data set before a measurement (untimed); by default one ``store`` call each.
    load: Callable[[list[Workflow]], None] | None = None
    #: Checks this side fails by its own design (upstream 0.33.1's behaviour, e.g.
    #: ``REQUISITE_TASKS``): counted in the result instead of failing the run. Ours has none.
    known_gaps: frozenset[str] = frozenset()

    def setup(self, workflows: list[Workflow]) -> None:
        if self.load is not None:
            self.load(workflows)
        else:
            for workflow in workflows:
                self.store.store(workflow)
        self.analyze()


@dataclass
class Result:
    workload: str
    ops: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"workload": self.workload, "ops": self.ops, "seconds": self.seconds, **self.extra}


# -- data -----------------------------------------------------------------------------------------


def make_workflow(application: str, index: int, stages: int, tasks: int, chain: bool = True) -> Workflow:
    """A workflow of ``stages`` stages (a chain) with ``tasks`` tasks each and small documents."""
    built = []
    for s in range(stages):
        stage = StageExecution.create(
            "bench",
            f"Stage {s}",
            f"s{s}",
            context={"index": s, "params": {"retries": 3, "label": f"w{index}"}, "tags": ["a", "b"]},
            requisite_stage_ref_ids={f"s{s - 1}"} if chain and s else set(),
        )
        for t in range(tasks):
            task = TaskExecution.create(f"task {t}", "bench.tasks.Noop")
            stage.tasks.append(task)
            task.stage = stage
        built.append(stage)
    return Workflow.create(
        application,
        f"workflow {index}",
        built,
        pipeline_config_id=f"config-{index % 7}",
        context={"index": index, "ratio": 1.5, "on": True, "none": None},
    )


def stage_key(s: StageExecution, with_tasks: bool = True) -> tuple[Any, ...]:
    """What a round trip must preserve of one stage (its tasks in any order)."""
    key: tuple[Any, ...] = (
        s.id,
        s.ref_id,
        s.type,
        s.name,
        s.status.name,
        s.context,
        s.outputs,
        sorted(s.requisite_stage_ref_ids),
        s.parent_stage_id,
        s.synthetic_stage_owner.name if s.synthetic_stage_owner else None,
        s.start_time,
        s.end_time,
        s.version,
    )
    if not with_tasks:
        return key
    tasks = sorted(
        (t.id, t.name, t.implementing_class, t.status.name, t.stage_start, t.stage_end, t.version)
        for t in s.tasks
    )
    return (*key, tasks)


def canonical(workflow: Workflow) -> tuple[Any, ...]:
    """What a round trip must preserve, independent of the order rows come back in."""
    stages = sorted(stage_key(s) for s in workflow.stages)
    return (
        workflow.id,
        workflow.application,
        workflow.name,
        workflow.status.name,
        workflow.start_time,
        workflow.context,
        workflow.pipeline_config_id,
        stages,
    )


def _quiesce() -> None:
    """Start each measurement from a clean heap, and move the harness's own data sets (thousands
    of workflow objects kept for the checks) out of the collector's way, so neither side pays for
    scanning them; the same for both sides."""
    gc.collect()
    gc.freeze()


def _timed(calls: Iterable[Callable[[], Any]]) -> tuple[list[Any], float]:
    out: list[Any] = []
    calls = list(calls)
    _quiesce()
    began = time.perf_counter()
    for call in calls:
        out.append(call())
    return out, time.perf_counter() - began


def _repeat(call: Callable[[], Any]) -> tuple[Any, int, float]:
    """Call until REPEAT_SECONDS have passed (at least MIN_REPS times); every answer is kept."""
    answers = []
    _quiesce()
    began = time.perf_counter()
    while True:
        answers.append(call())
        elapsed = time.perf_counter() - began
        if len(answers) >= MIN_REPS and elapsed >= REPEAT_SECONDS:
            return answers, len(answers), elapsed


# -- store, retrieve, CAS, transactions -------------------------------------------------------------


@dataclass
class State:
    """What one workload leaves for the next within a run."""

    workflows: list[Workflow] = field(default_factory=list)


def w_store(side: Side, sizes: Sizes, state: State) -> Result:
    workflows = [make_workflow("bench", i, sizes.stages, sizes.tasks) for i in range(sizes.workflows)]
    store = side.store
    _, seconds = _timed((lambda w=w: store.store(w)) for w in workflows)
    state.workflows = workflows
    side.analyze()
    return Result("store", len(workflows), seconds)


def w_retrieve(side: Side, sizes: Sizes, state: State) -> Result:
    store = side.store
    found, seconds = _timed((lambda w=w: store.retrieve(w.id)) for w in state.workflows)
    for original, loaded in zip(state.workflows, found, strict=True):
        check(
            canonical(loaded) == canonical(original), f"retrieve({original.id}) differs from what was stored"
        )
        check(all(s.execution is loaded for s in loaded.stages), "stage.execution is not the workflow")
        check(all(t.stage is s for s in loaded.stages for t in s.tasks), "task.stage is not its stage")
    return Result("retrieve", len(found), seconds)


def w_cas(side: Side, sizes: Sizes, state: State) -> Result:
    """NOT_STARTED -> RUNNING -> SUCCEEDED with expected_phase, on the first stages of each workflow."""
    per = sizes.cas // 2
    stages = [s for w in state.workflows for s in w.stages[:2]][:per]
    check(len(stages) == per, "not enough stored stages for the CAS workload")
    store = side.store
    now = int(time.time() * 1000)

    def to_running(stage: StageExecution) -> None:
        stage.status = WorkflowStatus.RUNNING
        stage.start_time = now
        stage.context["attempt"] = 1
        stage.tasks[0].status = WorkflowStatus.RUNNING
        stage.tasks[0].start_time = now
        store.store_stage(stage, expected_phase="NOT_STARTED")

    def to_succeeded(stage: StageExecution) -> None:
        stage.status = WorkflowStatus.SUCCEEDED
        stage.end_time = now + 5
        stage.outputs = {"result": stage.ref_id, "items": [1, 2, 3]}
        for task in stage.tasks:
            task.status = WorkflowStatus.SUCCEEDED
            task.end_time = now + 5
        store.store_stage(stage, expected_phase="RUNNING")

    _quiesce()
    began = time.perf_counter()
    for stage in stages:
        to_running(stage)
    for stage in stages:
        to_succeeded(stage)
    seconds = time.perf_counter() - began
    check(all(s.version == 2 for s in stages), "stage versions did not move 0 -> 2 in memory")
    # The rows: every touched workflow read back equals the in-memory one (versions included).
    touched = {id(s.execution): s.execution for s in stages}
    for workflow in touched.values():
        check(canonical(store.retrieve(workflow.id)) == canonical(workflow), "a CAS write did not persist")
    # A stale writer (expected phase no longer true) is refused and changes nothing.
    stale = stages[0]
    try:
        store.store_stage(stale, expected_phase="NOT_STARTED")
    except side.concurrency_error:
        pass
    else:
        raise WrongAnswer("a compare-and-set with a stale expected_phase succeeded")
    return Result("cas", 2 * len(stages), seconds)


def w_txn(side: Side, sizes: Sizes, state: State) -> Result:
    """store_stage + push_message in one transaction, on stages the CAS workload left alone."""
    stages = [s for w in state.workflows for s in w.stages[2:]][: sizes.txns]
    check(len(stages) == sizes.txns, "not enough stored stages for the transaction workload")
    assert side.new_queue is not None
    queue = side.new_queue()
    queue.clear()
    store = side.store

    def step(stage: StageExecution) -> None:
        stage.status = WorkflowStatus.RUNNING
        with store.transaction(queue) as txn:
            txn.store_stage(stage, expected_phase="NOT_STARTED")
            txn.push_message(StartStage(execution_id=stage.execution.id, stage_id=stage.id))

    _, seconds = _timed((lambda s=s: step(s)) for s in stages)
    check(all(s.version == 1 for s in stages), "transaction stage versions did not move 0 -> 1")
    check(queue.size() == len(stages), f"{queue.size()} messages queued by {len(stages)} transactions")
    sample = stages[:: max(1, len(stages) // 20)]
    for stage in sample:
        loaded = store.retrieve(stage.execution.id)
        row = next(s for s in loaded.stages if s.id == stage.id)
        check(
            row.status == WorkflowStatus.RUNNING and row.version == 1, "a transaction's stage write is lost"
        )
    queue.clear()
    return Result("txn", len(stages), seconds)


# -- queue ------------------------------------------------------------------------------------------


def _consume(spec: tuple[str, str, str], total: int, done: Any, start: Any, results: Any) -> None:
    """One consumer process: poll_one + ack until every message is acked (or nothing comes)."""
    from adapters import open_queue

    queue = open_queue(*spec)
    start.wait(DRAIN_DEADLINE)
    seen: list[str] = []
    idle_since: float | None = None
    while True:
        message = queue.poll_one()
        if message is None:
            if done.value >= total:
                break
            # Others still hold messages in flight; a lost message ends the loop after 3 s.
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 3:
                break
            time.sleep(0.001)
            continue
        idle_since = None
        seen.append(message.execution_id)
        queue.ack(message)
        with done.get_lock():
            done.value += 1
    results.put(seen)


def _drain(side: Side, expected: set[str], consumers: int) -> tuple[float, Any]:
    context = multiprocessing.get_context("spawn")
    done = context.Value("i", 0)
    start = context.Barrier(consumers + 1)
    results = context.Queue()
    children = [
        context.Process(target=_consume, args=(side.queue_spec, len(expected), done, start, results))
        for _ in range(consumers)
    ]
    for child in children:
        child.start()
    start.wait(DRAIN_DEADLINE)
    began = time.perf_counter()
    delivered = [results.get(timeout=DRAIN_DEADLINE) for _ in children]
    seconds = time.perf_counter() - began
    for child in children:
        child.join(30)
    seen = [mid for part in delivered for mid in part]
    duplicates = len(seen) - len(set(seen))
    lost = len(expected - set(seen))
    check(duplicates == 0, f"{duplicates} messages delivered twice with {consumers} consumers")
    check(lost == 0, f"{lost} messages lost with {consumers} consumers")
    check(set(seen) == expected, "a consumer received a message that was never pushed")
    return seconds, {"duplicates": duplicates, "lost": lost}


def _push(queue: Any, tag: str, count: int) -> tuple[set[str], float]:
    messages = [StartWorkflow(execution_id=f"{tag}{i}") for i in range(count)]
    _, seconds = _timed((lambda m=m: queue.push(m)) for m in messages)
    return {m.execution_id for m in messages}, seconds


def w_queue(side: Side, sizes: Sizes, state: State) -> list[Result]:
    """Sizes are read on a new queue object each time: upstream's PostgreSQL queue caches size()."""
    assert side.new_queue is not None
    queue = side.new_queue()
    queue.clear()
    expected, push_seconds = _push(queue, "a", sizes.messages)
    check(queue.size() == sizes.messages, "pushed messages are missing from the queue")
    results = [Result("queue_push", sizes.messages, push_seconds)]
    seconds, extra = _drain(side, expected, 1)
    check(side.new_queue().size() == 0, "messages left after draining with 1 consumer")
    results.append(Result("queue_drain_1", sizes.messages, seconds, extra))
    expected, _ = _push(queue, "b", sizes.messages)
    seconds, extra = _drain(side, expected, 4)
    check(side.new_queue().size() == 0, "messages left after draining with 4 consumers")
    results.append(Result("queue_drain_4", sizes.messages, seconds, extra))
    return results


# -- merged ancestor outputs ----------------------------------------------------------------------


def dag_chain(n: int) -> list[tuple[str, list[str]]]:
    return [(f"c{i:04d}", [f"c{i - 1:04d}"] if i else []) for i in range(n)]


def dag_diamonds(n: int, width: int = 10) -> list[tuple[str, list[str]]]:
    """A root, then diamonds: ``width`` parallel stages, joined by one stage; the last is a join."""
    nodes: list[tuple[str, list[str]]] = [("d0000", [])]
    join = "d0000"
    while len(nodes) < n:
        branches = []
        for _ in range(min(width, n - len(nodes) - 1)):
            ref = f"d{len(nodes):04d}"
            nodes.append((ref, [join]))
            branches.append(ref)
        join = f"d{len(nodes):04d}"
        nodes.append((join, branches or [nodes[-1][0]]))
    return nodes


def dag_fanin(n: int) -> list[tuple[str, list[str]]]:
    roots = [(f"f{i:04d}", []) for i in range(n - 1)]
    return [*roots, (f"f{n - 1:04d}", [ref for ref, _ in roots])]


def dag_sparse(n: int, ancestors: int = 10) -> list[tuple[str, list[str]]]:
    """``n`` stages in which the last one has exactly ``ancestors`` ancestors (a short chain);
    the other stages form a long chain of their own."""
    near = [(f"a{i:04d}", [f"a{i - 1:04d}"] if i else []) for i in range(ancestors)]
    far = [(f"z{i:04d}", [f"z{i - 1:04d}"] if i else []) for i in range(n - ancestors - 1)]
    return [*far, *near, ("target", [f"a{ancestors - 1:04d}"])]


def outputs_of(ref: str, index: int) -> dict[str, Any]:
    """Three output keys, one of them a list every stage appends to."""
    return {f"value_{ref}": index, f"label_{ref}": f"stage {ref}", "items": [ref]}


def dag_workflow(name: str, nodes: list[tuple[str, list[str]]]) -> Workflow:
    stages = []
    for i, (ref, requisites) in enumerate(nodes):
        stage = StageExecution.create("bench", ref, ref, requisite_stage_ref_ids=set(requisites))
        stage.outputs = outputs_of(ref, i)
        stage.status = WorkflowStatus.SUCCEEDED
        stages.append(stage)
    return Workflow.create("dags", name, stages)


def reference_merge(nodes: list[tuple[str, list[str]]], target: str) -> dict[str, Any]:
    """The contract's merge, written independently: ancestors by BFS, Kahn's order with ref-id
    ties (FIFO), later scalars win, lists append the items not yet present."""
    requisites = dict(nodes)
    index = {ref: i for i, (ref, _) in enumerate(nodes)}
    ancestors: set[str] = set()
    frontier = deque(requisites.get(target, []))
    while frontier:
        ref = frontier.popleft()
        if ref not in ancestors and ref != target:
            ancestors.add(ref)
            frontier.extend(requisites.get(ref, []))
    waiting = {ref: len([r for r in requisites[ref] if r in ancestors]) for ref in ancestors}
    children: dict[str, list[str]] = {ref: [] for ref in ancestors}
    for ref in ancestors:
        for r in requisites[ref]:
            if r in ancestors:
                children[r].append(ref)
    queue = deque(sorted(ref for ref, count in waiting.items() if count == 0))
    merged: dict[str, Any] = {}
    while queue:
        ref = queue.popleft()
        for key, value in outputs_of(ref, index[ref]).items():
            if isinstance(merged.get(key), list) and isinstance(value, list):
                merged[key].extend(v for v in value if v not in merged[key])
            else:
                merged[key] = list(value) if isinstance(value, list) else value
        ready = []
        for child in children[ref]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
        queue.extend(sorted(ready))
    return merged


def merge_cases(sizes: Sizes) -> list[tuple[str, list[tuple[str, list[str]]]]]:
    cases = []
    for n in sizes.dag_sizes:
        cases += [(f"merge_chain_{n}", dag_chain(n)), (f"merge_diamond_{n}", dag_diamonds(n))]
        cases.append((f"merge_fanin_{n}", dag_fanin(n)))
    cases.append((f"merge_sparse10_{max(sizes.dag_sizes)}", dag_sparse(max(sizes.dag_sizes))))
    return cases


def w_merge(side: Side, sizes: Sizes, state: State) -> list[Result]:
    store = side.store
    results = []
    cases = [(name, nodes, dag_workflow(name, nodes)) for name, nodes in merge_cases(sizes)]
    side.setup([workflow for _, _, workflow in cases])
    for name, nodes, workflow in cases:
        target = nodes[-1][0]
        expected = reference_merge(nodes, target)
        answers, reps, seconds = _repeat(
            lambda w=workflow, t=target: store.get_merged_ancestor_outputs(w.id, t)
        )
        for answer in answers:
            check(answer == expected, f"{name}: merged outputs differ from the reference")
        results.append(Result(name, reps, seconds, {"ancestors": len(expected["items"])}))
    return results


# -- paged listing --------------------------------------------------------------------------------

PAGE_STATUSES = [
    WorkflowStatus.RUNNING,
    WorkflowStatus.SUCCEEDED,
    WorkflowStatus.TERMINAL,
    WorkflowStatus.CANCELED,
    WorkflowStatus.PAUSED,
]
PAGE_FILTER = {WorkflowStatus.SUCCEEDED, WorkflowStatus.TERMINAL}


def w_page(side: Side, sizes: Sizes, state: State) -> list[Result]:
    store = side.store
    base = 1_700_000_000_000
    dataset = []
    for i in range(sizes.page_workflows):
        workflow = make_workflow("paged", i, sizes.page_stages, sizes.tasks)
        workflow.status = PAGE_STATUSES[i % len(PAGE_STATUSES)]
        # Distinct start times interleaved with the statuses, so the order is fully determined.
        workflow.start_time = base + (i * 7919) % sizes.page_workflows * 1000
        dataset.append(workflow)
    side.setup(dataset)
    meta = [(w.start_time, w.id, w.status) for w in dataset]
    newest = sorted(meta, key=lambda m: (m[0], m[1]), reverse=True)
    results = []
    for name, statuses in (("page", None), ("page_status_filter", PAGE_FILTER)):
        expected = [wid for _, wid, status in newest if statuses is None or status in statuses]
        expected = expected[: sizes.page_size]
        criteria = WorkflowCriteria(page_size=sizes.page_size, statuses=statuses)
        answers, reps, seconds = _repeat(lambda c=criteria: list(store.retrieve_by_application("paged", c)))
        for page in answers:
            check([w.id for w in page] == expected, f"{name}: the page is not the newest {sizes.page_size}")
            check(
                all(len(w.stages) == sizes.page_stages for w in page)
                and all(len(s.tasks) == sizes.tasks for w in page for s in w.stages),
                f"{name}: a workflow of the page came back without all its stages and tasks",
            )
        results.append(Result(name, reps, seconds))
    return results


# -- one stage and its neighbours: what the engine reads per message ------------------------------

#: A known gap (upstream 0.33.1 on PostgreSQL): ``retrieve_stage`` returns the stage's requisites in
#: its partial workflow without their tasks (it loads tasks for the synthetic children only).
REQUISITE_TASKS = "retrieve_stage: requisites without tasks"


def _with_tasks(stage: StageExecution, tasks: int) -> StageExecution:
    for t in range(tasks):
        task = TaskExecution.create(
            f"task {t}", "bench.tasks.Noop", stage_start=t == 0, stage_end=t == tasks - 1
        )
        stage.tasks.append(task)
        task.stage = stage
    return stage


def lineage_workflow(application: str, index: int, stages: int, tasks: int) -> Workflow:
    """``stages`` stages with ``tasks`` tasks each: a braid of top-level stages ``t000``, ``t001``,
    ... each requiring the two before it, where every third one (``t001``, ``t004``, ...) is a
    parent with a synthetic before-stage and after-stage. The first half has run (outputs)."""
    built: list[StageExecution] = []
    top: list[StageExecution] = []
    while len(built) < stages:
        i = len(top)
        stage = StageExecution.create(
            "bench",
            f"Stage {i}",
            f"t{i:03d}",
            context={"index": i, "params": {"retries": 3, "label": f"w{index}"}, "tags": ["a", "b"]},
            requisite_stage_ref_ids={s.ref_id for s in top[-2:]},
        )
        if 2 * len(built) < stages:
            stage.status = WorkflowStatus.SUCCEEDED
            stage.outputs = {"result": stage.ref_id, "items": [i]}
        top.append(stage)
        built.append(_with_tasks(stage, tasks))
        if i % 3 == 1:
            for owner in (SyntheticStageOwner.STAGE_BEFORE, SyntheticStageOwner.STAGE_AFTER):
                if len(built) < stages:
                    child = StageExecution.create_synthetic(
                        "bench-synthetic", f"{owner.name} {i}", stage, owner, context={"parent": stage.ref_id}
                    )
                    built.append(_with_tasks(child, tasks))
    return Workflow.create(application, f"lineage {index}", built)


def fan_workflow(width: int, tasks: int) -> Workflow:
    """A ``width``-wide fan-out / fan-in: ``root``, branches ``b000``... each requiring it, and
    ``join`` requiring every branch; ``join`` is a parent with two synthetic before-stages and two
    after-stages. Every stage has ``tasks`` tasks."""
    root = _with_tasks(StageExecution.create("bench", "root", "root"), tasks)
    branches = [
        _with_tasks(StageExecution.create("bench", f"branch {i}", f"b{i:03d}", {"i": i}, {"root"}), tasks)
        for i in range(width)
    ]
    join = StageExecution.create(
        "bench", "join", "join", requisite_stage_ref_ids={b.ref_id for b in branches}
    )
    synthetic = [
        _with_tasks(
            StageExecution.create_synthetic("bench-synthetic", f"{owner.name} {n}", join, owner), tasks
        )
        for owner in (SyntheticStageOwner.STAGE_BEFORE, SyntheticStageOwner.STAGE_AFTER)
        for n in range(2)
    ]
    return Workflow.create("fan", f"fan {width}", [root, *branches, _with_tasks(join, tasks), *synthetic])


def _keys(stages: Iterable[StageExecution]) -> list[tuple[Any, ...]]:
    return sorted(stage_key(s) for s in stages)


def check_partial(side: Side, workflow: Workflow, original: StageExecution, loaded: StageExecution) -> int:
    """``retrieve_stage``'s answer against the stored workflow: the stage with its tasks, and a
    partial workflow holding exactly it, its requisites and its synthetic children, each as stored
    with its tasks, all pointing at that workflow. Returns how many requisites came back without
    their tasks (allowed only for a side with the ``REQUISITE_TASKS`` gap)."""
    what = f"retrieve_stage({original.ref_id} of a {len(workflow.stages)}-stage workflow)"
    check(stage_key(loaded) == stage_key(original), f"{what}: the stage differs from what was stored")
    check(all(t.stage is loaded for t in loaded.tasks), f"{what}: task.stage is not the stage")
    partial = loaded.execution
    check(
        (partial.id, partial.application, partial.name, partial.status.name)
        == (workflow.id, workflow.application, workflow.name, workflow.status.name),
        f"{what}: the partial workflow is not the stage's workflow",
    )
    requisites = {s.id for s in workflow.stages if s.ref_id in original.requisite_stage_ref_ids}
    children = {s.id for s in workflow.stages if s.parent_stage_id == original.id}
    by_id = {s.id: s for s in partial.stages}
    check(len(by_id) == len(partial.stages), f"{what}: a stage appears twice in the partial workflow")
    check(
        set(by_id) == {original.id} | requisites | children,
        f"{what}: the partial workflow holds {len(by_id)} stages, not the stage, its"
        f" {len(requisites)} requisites and its {len(children)} synthetic children",
    )
    check(by_id[original.id] is loaded, f"{what}: the partial workflow holds another copy of the stage")
    check(all(s.execution is partial for s in partial.stages), f"{what}: a stage is not attached to it")
    stored = {s.id: s for s in workflow.stages}
    without_tasks = 0
    for stage_id, stage in by_id.items():
        if stage_id in requisites and not stage.tasks and REQUISITE_TASKS in side.known_gaps:
            without_tasks += 1
            check(
                stage_key(stage, with_tasks=False) == stage_key(stored[stage_id], with_tasks=False),
                f"{what}: a requisite differs from what was stored",
            )
            continue
        check(stage_key(stage) == stage_key(stored[stage_id]), f"{what}: a related stage differs")
        check(all(t.stage is stage for t in stage.tasks), f"{what}: a related stage's task.stage is wrong")
    return without_tasks


def w_retrieve_stage(side: Side, sizes: Sizes, state: State) -> list[Result]:
    """``retrieve_stage`` on every stage of stored braid workflows (roots, joins, parents with
    synthetic children, synthetic stages), in a shuffled order; every answer checked."""
    cases = []
    for n in sizes.stage_workflow_sizes:
        count = -(-sizes.stage_reads // n)
        cases.append((n, [lineage_workflow("lineage", i, n, sizes.tasks) for i in range(count)]))
    side.setup([w for _, workflows in cases for w in workflows])
    store = side.store
    results = []
    for n, workflows in cases:
        targets = [(w, s) for w in workflows for s in w.stages][: sizes.stage_reads]
        random.Random(n).shuffle(targets)
        found, seconds = _timed((lambda s=s: store.retrieve_stage(s.id)) for _, s in targets)
        without_tasks = sum(
            check_partial(side, w, s, loaded) for (w, s), loaded in zip(targets, found, strict=True)
        )
        extra: dict[str, Any] = {"stages": n}
        if without_tasks:
            extra["note"] = f"{without_tasks} requisites came back in partial workflows without their tasks"
        results.append(Result(f"retrieve_stage_{n}", len(found), seconds, extra))
    try:
        store.retrieve_stage(str(ULID()))
    except ValueError:
        pass
    else:
        raise WrongAnswer("retrieve_stage of an unknown id did not raise ValueError")
    return results


def w_lineage(side: Side, sizes: Sizes, state: State) -> list[Result]:
    """``get_upstream_stages`` / ``get_downstream_stages`` / ``get_synthetic_stages`` on a 10-stage
    braid (2 requisites, 2 downstream stages, a before- and an after-stage) and on the fan
    workflow (the join's ``fan_width`` requisites, the root's ``fan_width`` downstream stages, the
    join's four synthetic stages); each answer equals the stages as stored, with their tasks."""
    braid = lineage_workflow("lineage-small", 0, 10, sizes.tasks)
    fan = fan_workflow(sizes.fan_width, sizes.tasks)
    side.setup([braid, fan])
    store = side.store
    braid_refs = {s.ref_id: s for s in braid.stages}
    join = next(s for s in fan.stages if s.ref_id == "join")
    width = sizes.fan_width

    def upstream(w: Workflow, ref: str) -> list[StageExecution]:
        stage = next(s for s in w.stages if s.ref_id == ref)
        return [s for s in w.stages if s.ref_id in stage.requisite_stage_ref_ids]

    def downstream(w: Workflow, ref: str) -> list[StageExecution]:
        return [s for s in w.stages if ref in s.requisite_stage_ref_ids]

    def synthetic(w: Workflow, parent_id: str) -> list[StageExecution]:
        return [s for s in w.stages if s.parent_stage_id == parent_id]

    cases: list[tuple[str, Callable[[], Any], list[StageExecution]]] = [
        ("upstream_2", lambda: store.get_upstream_stages(braid.id, "t004"), upstream(braid, "t004")),
        (f"upstream_{width}", lambda: store.get_upstream_stages(fan.id, "join"), upstream(fan, "join")),
        ("downstream_2", lambda: store.get_downstream_stages(braid.id, "t003"), downstream(braid, "t003")),
        (f"downstream_{width}", lambda: store.get_downstream_stages(fan.id, "root"), downstream(fan, "root")),
        (
            "synthetic_2",
            lambda: store.get_synthetic_stages(braid.id, braid_refs["t004"].id),
            synthetic(braid, braid_refs["t004"].id),
        ),
        ("synthetic_4", lambda: store.get_synthetic_stages(fan.id, join.id), synthetic(fan, join.id)),
    ]
    results = []
    for name, call, stages in cases:
        size = int(name.rsplit("_", 1)[1])
        check(len(stages) == size, f"{name}: the data set has {len(stages)} such stages, not {size}")
        expected = _keys(stages)
        answers, reps, seconds = _repeat(call)
        for answer in answers:
            check(_keys(answer) == expected, f"{name}: the stages differ from what was stored")
            check(all(t.stage is s for s in answer for t in s.tasks), f"{name}: task.stage is not its stage")
        results.append(Result(name, reps, seconds))
    return results


# -- processed-message marks ----------------------------------------------------------------------

HANDLERS = ("StartStageHandler", "RunTaskHandler", "CompleteStageHandler")


def w_messages(side: Side, sizes: Sizes, state: State) -> list[Result]:
    """``mark_message_processed`` with a fresh ULID per call (each its own unit of work), then
    ``is_message_processed`` on every marked id and on as many never-marked ones."""
    store = side.store
    executions = [w.id for w in state.workflows[:50]] or [str(ULID()) for _ in range(50)]
    marks = [(str(ULID()), HANDLERS[i % 3], executions[i % len(executions)]) for i in range(sizes.marks)]
    answers, seconds = _timed((lambda m=m: store.mark_message_processed(*m)) for m in marks)
    # Upstream returns None; a store that answers must answer True for a fresh id.
    check(all(a is not False for a in answers), "mark_message_processed called a fresh id already marked")
    results = [Result("mark_processed", len(marks), seconds)]
    marked = [m[0] for m in marks]
    random.Random(0).shuffle(marked)
    unknown = [str(ULID()) for _ in range(sizes.marks)]
    for name, ids, expected in (("is_processed_hit", marked, True), ("is_processed_miss", unknown, False)):
        found, seconds = _timed((lambda i=i: store.is_message_processed(i)) for i in ids)
        check(all(f is expected for f in found), f"{name}: is_message_processed did not answer {expected}")
        results.append(Result(name, len(found), seconds))
    again = store.mark_message_processed(*marks[0])
    check(again is not True, "mark_message_processed claimed to make a mark that existed")
    # What upstream's engine calls to warm its de-duplication cache; a store without it is noted.
    listing = getattr(store, "get_processed_message_ids", None)
    if listing is None:
        results[0].extra["note"] = "no get_processed_message_ids: the marks were not listed"
        return results
    listed = listing()
    check(
        listed is not None and len(listed) == len(set(listed)), "processed ids listed twice (or not at all)"
    )
    check(set(listed) == set(marked), "the processed marks are not exactly the ids marked")
    return results


# -- registry -------------------------------------------------------------------------------------

WORKLOADS: dict[str, Callable[[Side, Sizes, State], Result | list[Result]]] = {
    "store": w_store,
    "retrieve": w_retrieve,
    "cas": w_cas,
    "txn": w_txn,
    "queue": w_queue,
    "merge": w_merge,
    "page": w_page,
    "retrieve_stage": w_retrieve_stage,
    "lineage": w_lineage,
    "messages": w_messages,
}
#: What the raw-driver ceiling implements: the store's four hottest calls.
CEILING_WORKLOADS = ("store", "retrieve", "cas", "page")


def run(side: Side, sizes: Sizes, names: Iterable[str]) -> list[dict[str, Any]]:
    state = State()
    out: list[dict[str, Any]] = []
    for name in names:
        produced = WORKLOADS[name](side, sizes, state)
        for result in produced if isinstance(produced, list) else [produced]:
            out.append(result.as_dict())
    return out
