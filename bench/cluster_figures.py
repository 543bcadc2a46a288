"""The closing figures of issue 15, measured on the test clusters (a benchmark, not a test).

    PYTHONPATH=. .venv/bin/python bench/cluster_figures.py [--stages 50] [--repeats 2]

Starts the clusters when they are down (``tests/clusters.py``) and leaves them up. Each figure
runs the reference runner's fan-out / fan-in workflow (``tests/cluster/runs.py``: every task
records its effect in the step's transaction) in throw-away databases:

- steps per second with 3 workers on one Galera node, and with one worker on each of the three
  (a step is a handled message: its processed mark; timed from the first mark to the last, so
  process start-up is left out);
- certification conflicts: errors 1213 the workers' statements met (a SQLAlchemy
  ``handle_error`` listener in each worker), how many the retry layer ran again, and how many
  surfaced as named errors once the reruns were spent;
- a Galera node killed mid-run: seconds from the SIGKILL to the next step committed elsewhere;
- PostgreSQL failover: seconds from crashing the primary to the first step committed on the
  promoted standby (through the multi-host URL), and how long the promotion itself took;
- steps lost (tasks without their effect) and effects duplicated, for every run (must be 0).
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import queue as queue_module
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event, func, select

from stabilize.persistence.errors import TransientError
from stabilize.persistence.ids import now_ms
from stabilize.persistence.sql.engine import dispose_engines, get_engine
from stabilize.persistence.sql.rows import ProcessedMessageRow
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.messages import Message
from stabilize.queue.sql import SqlQueue
from stabilize.runner import Worker
from tests import clusters
from tests.cluster.runs import TASKS, Run, causal, submit_run

MARKS = ProcessedMessageRow.__table__
JOIN_SECONDS = 180.0


# -- a worker process that counts what the retry layer saw ----------------------------------------


def figure_worker(
    url: str, workflow_id: str, lock_seconds: float, outage_seconds: float, results: Any
) -> None:
    """``runner.processes.run_worker`` with counters: errors 1213 its statements met, and the
    transient errors that left a step (reruns spent, or the database gone)."""
    for module in TASKS:
        importlib.import_module(module)
    store = SqlWorkflowStore(url)
    queue = SqlQueue(url, lock_duration=lock_seconds)  # the store's engine: one listener sees both
    conflicts = [0]

    @event.listens_for(store.engine, "handle_error")
    def _count(context: Any) -> None:
        args = getattr(context.original_exception, "args", ())
        if args and args[0] == 1213:
            conflicts[0] += 1

    surfaced: Counter[str] = Counter()

    class CountingWorker(Worker):
        def process(self, message: Message) -> None:
            try:
                super().process(message)
            except TransientError as error:
                surfaced[type(error).__name__] += 1
                raise

    outcome = "ok"
    try:
        CountingWorker(store, queue).run(
            lambda: store.retrieve_execution_summary(workflow_id).status.is_complete,
            outage_seconds=outage_seconds,
        )
    except Exception as error:  # reported: a worker of a killed node is expected to give up
        outcome = type(error).__name__
    results.put((url, conflicts[0], dict(surfaced), outcome))
    dispose_engines()


class Workers:
    """Figure workers of one run, and what they report when they end."""

    def __init__(self, run: Run, urls: list[str], lock_seconds: float = 30.0, outage_seconds: float = 30.0):
        context = multiprocessing.get_context("spawn")
        self.results = context.Queue()
        args = (run.workflow.id, lock_seconds, outage_seconds, self.results)
        self.processes = [context.Process(target=figure_worker, args=(url, *args)) for url in urls]
        for process in self.processes:
            process.start()

    def reports(self) -> list[tuple[str, int, dict[str, int], str]]:
        """Each worker's report, once all have ended (bounded: a worker still running is killed
        and reported as ``hung``)."""
        reports = []
        deadline = time.monotonic() + JOIN_SECONDS
        for _ in self.processes:
            try:
                reports.append(self.results.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue_module.Empty:
                reports.append(("?", 0, {}, "hung"))
        for process in self.processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(10)
        return reports


# -- measuring ----------------------------------------------------------------------------------


def steps(url: str, workflow_id: str) -> tuple[int, int, int]:
    """Processed marks of the workflow: count, first and last ``processed_at`` (ms)."""
    query = select(func.count(), func.min(MARKS.c.processed_at), func.max(MARKS.c.processed_at)).where(
        MARKS.c.execution_id == workflow_id
    )
    with get_engine(url).connect() as connection:
        count, first, last = connection.execute(query).one()
    return int(count), int(first or 0), int(last or 0)


def until_more_steps(url: str, workflow_id: str, than: int, seconds: float = 120.0) -> float:
    """Poll until the workflow has more than ``than`` steps; return the monotonic time then."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if steps(url, workflow_id)[0] > than:
                return time.monotonic()
        except Exception:  # the server is still coming up
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"no step within {seconds:.0f}s")
        time.sleep(0.01)


def longest_pause(url: str, workflow_id: str, since: float, seconds: float) -> float:
    """The longest time without a new step, from ``since`` for ``seconds`` (or until the
    workflow has no more steps to take): steps committed just before a kill show up at once, the
    stall while the cluster evicts the dead node shows as a pause."""
    last_count, last_change, longest = steps(url, workflow_id)[0], since, 0.0
    while (now := time.monotonic()) < since + seconds:
        count = steps(url, workflow_id)[0]
        if count != last_count:
            longest, last_count, last_change = max(longest, now - last_change), count, now
        elif SqlWorkflowStore(url).retrieve_execution_summary(workflow_id).status.is_complete:
            break
        time.sleep(0.01)
    return longest


def galera_urls() -> list[str]:
    name = clusters.create_galera_database()
    urls = clusters.galera_urls(name)
    SqlWorkflowStore(urls[0], create_tables=True)
    return urls


def summarise(reports: list[tuple[str, int, dict[str, int], str]]) -> tuple[int, int, int, list[str]]:
    seen = sum(r[1] for r in reports)
    spent = sum(r[2].get("RaceLost", 0) + r[2].get("TransientError", 0) for r in reports)
    other = sum(sum(r[2].values()) for r in reports) - spent
    return seen, seen - spent, other, [r[3] for r in reports]


def throughput(nodes: list[int], stages: int, directory: Path) -> dict[str, Any]:
    urls = galera_urls()
    try:
        run = submit_run(urls[0], directory, stages)
        workers = Workers(run, [urls[n - 1] for n in nodes])
        reports = workers.reports()
        count, first, last = steps(causal(urls[0]), run.workflow.id)
        lost, duplicated = run.lost_and_duplicated(causal(urls[0]))
        seen, rerun, other, outcomes = summarise(reports)
        return {
            "steps": count,
            "steps/s": count / max(0.001, (last - first) / 1000),
            "1213 seen": seen,
            "rerun": rerun,
            "surfaced": seen - rerun,
            "other transient": other,
            "lost": lost,
            "duplicated": duplicated,
            "workers": outcomes,
        }
    finally:
        dispose_engines()
        clusters.drop_galera_database(urls[0].rsplit("/", 1)[1])


def node_kill(stages: int, directory: Path) -> dict[str, Any]:
    urls = galera_urls()
    name = urls[0].rsplit("/", 1)[1]
    try:
        run = submit_run(urls[0], directory, stages)
        workers = Workers(run, urls, lock_seconds=3.0, outage_seconds=8.0)
        run.wait_for_effects(10, JOIN_SECONDS)
        before = steps(urls[0], run.workflow.id)[0]
        killed = time.monotonic()
        clusters.kill_node(3)
        next_step = until_more_steps(urls[0], run.workflow.id, before)
        stall = longest_pause(urls[0], run.workflow.id, killed, seconds=15.0)
        reports = workers.reports()
        lost, duplicated = run.lost_and_duplicated(causal(urls[0]))
        seen, rerun, other, outcomes = summarise(reports)
        return {
            "kill -> next step (s)": next_step - killed,
            "longest pause between steps, 15 s after the kill (s)": stall,
            "1213 seen": seen,
            "rerun": rerun,
            "other transient": other,
            "lost": lost,
            "duplicated": duplicated,
            "workers": outcomes,
        }
    finally:
        dispose_engines()
        clusters.galera_up()
        clusters.drop_galera_database(name)


def pg_failover(stages: int, directory: Path) -> dict[str, Any]:
    clusters.pg_pair_up()
    urls = clusters.pg_pair_urls(clusters.create_pg_database())
    try:
        SqlWorkflowStore(urls.multi_host, create_tables=True)
        run = submit_run(urls.multi_host, directory, stages)
        workers = Workers(run, [urls.multi_host] * 3, lock_seconds=3.0, outage_seconds=30.0)
        run.wait_for_effects(8, JOIN_SECONDS)
        clusters.stop_primary()  # returns once the primary's processes are gone
        crashed, crashed_ms = time.monotonic(), now_ms()
        clusters.promote_standby()
        promoted = time.monotonic()
        reports = workers.reports()
        # The first step after the crash: every step is a processed mark stamped as its step
        # commits, and none can commit between the crash and the promotion.
        query = select(func.min(MARKS.c.processed_at)).where(
            MARKS.c.execution_id == run.workflow.id, MARKS.c.processed_at > crashed_ms
        )
        with get_engine(urls.standby).connect() as connection:
            first_ms = int(connection.execute(query).scalar_one())
        first_step = crashed + (first_ms - crashed_ms) / 1000
        lost, duplicated = run.lost_and_duplicated(urls.standby)
        return {
            "crash -> first step on the promoted standby (s)": first_step - crashed,
            "of which promotion (s)": promoted - crashed,
            "promoted -> first step (s)": first_step - promoted,
            "lost": lost,
            "duplicated": duplicated,
            "workers": [r[3] for r in reports],
            "transient errors in steps": sum(sum(r[2].values()) for r in reports),
        }
    finally:
        dispose_engines()
        clusters.reset_pair()


def show(title: str, figures: dict[str, Any]) -> None:
    print(f"{title}:")
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"  {key:{width}} {value:.2f}" if isinstance(value, float) else f"  {key:{width}} {value}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", type=int, default=50, help="stages of the fan-out workflow")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each throughput figure")
    parser.add_argument(
        "--only", nargs="*", choices=["throughput", "kill", "failover"], help="measure these figures only"
    )
    args = parser.parse_args(argv)
    clusters.galera_up()
    directory = Path(tempfile.mkdtemp(prefix="cluster-figures-"))
    figures: list[tuple[str, str, Callable[[], dict[str, Any]]]] = []
    for repeat in range(1, args.repeats + 1):
        for nodes, title in (([1, 1, 1], "3 workers on node 1"), ([1, 2, 3], "a worker on each node")):
            figures.append(
                (
                    "throughput",
                    f"Galera, {title} (run {repeat})",
                    lambda nodes=nodes: throughput(nodes, args.stages, directory),  # type: ignore[misc]
                )
            )
    figures.append(("kill", "Galera, node 3 killed mid-run", lambda: node_kill(args.stages, directory)))
    figures.append(
        (
            "failover",
            "PostgreSQL failover mid-run (multi-host URL)",
            lambda: pg_failover(args.stages, directory),
        ),
    )
    figures = [figure for figure in figures if not args.only or figure[0] in args.only]
    bad = 0
    for _, title, measure in figures:
        result = measure()
        show(title, result)
        bad += result["lost"] + result["duplicated"]
    print(f"steps lost + effects duplicated over every run: {bad} (must be 0)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
