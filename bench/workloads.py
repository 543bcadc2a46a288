"""The benchmark's workloads: the same code measures our store, upstream's and the raw ceiling.

This module runs inside either interpreter (ours, or upstream's venv), so it imports only the
``stabilize`` API both packages share (models, ``WorkflowCriteria``, two message types) and
reaches everything side-specific through a ``Side`` built by ``adapters.open_side``.

Every workload checks its answers outside the timed region but on every result the timed region
produced: round-trip equality, merged outputs equal to an independent reference, a page equal
to the reference page, no duplicate and no lost queue message. A wrong answer raises
``WrongAnswer`` and the run fails: speed is never bought with a wrong answer.
"""

from __future__ import annotations

import gc
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from stabilize.models.stage import StageExecution
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

    @classmethod
    def small(cls) -> Sizes:
        """A smoke-test size: every workload and check, in seconds."""
        return cls(workflows=20, cas=40, txns=40, messages=60, page_workflows=100, dag_sizes=(10, 100))


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


def canonical(workflow: Workflow) -> tuple[Any, ...]:
    """What a round trip must preserve, independent of the order rows come back in."""
    stages = sorted(
        (
            s.id,
            s.ref_id,
            s.type,
            s.name,
            s.status.name,
            s.context,
            s.outputs,
            sorted(s.requisite_stage_ref_ids),
            s.parent_stage_id,
            s.start_time,
            s.end_time,
            s.version,
            sorted(
                (t.id, t.name, t.implementing_class, t.status.name, t.stage_start, t.stage_end, t.version)
                for t in s.tasks
            ),
        )
        for s in workflow.stages
    )
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


# -- registry -------------------------------------------------------------------------------------

WORKLOADS: dict[str, Callable[[Side, Sizes, State], Result | list[Result]]] = {
    "store": w_store,
    "retrieve": w_retrieve,
    "cas": w_cas,
    "txn": w_txn,
    "queue": w_queue,
    "merge": w_merge,
    "page": w_page,
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
