"""One end-to-end run: upstream Stabilize 0.33.1's engine drives workflows with N worker processes.

    tests/compat/.venv-upstream/bin/python bench/e2e_driver.py SPEC.json

``bench/e2e.py`` writes the spec and reads the result; run this by hand only to debug. It runs in
upstream's interpreter: side ``upstream`` on its installed package (its own store and queue),
side ``ours`` with the compatibility test's overlay first on ``PYTHONPATH`` (our ``persistence``
and ``queue`` over upstream's engine). Engine, schema, tasks and stage builders are the
compatibility test's (``tests/compat/engine_driver.py``), imported, not copied.

A run, on one empty database: the schema; ``workers`` processes each open upstream's
``QueueProcessor`` on their own store and queue and report ready; then the clock starts, this
process starts every workflow with ``Orchestrator.start`` while the workers step
``process_one`` (a 5 ms pause when nothing is due), and it polls ``retrieve_execution_summary``
of the oldest unfinished workflow every 20 ms; the clock stops when the last one is complete.
Then the workers stop and report their steps and CPU seconds, and every workflow is read back and checked
(untimed): every stage SUCCEEDED with the trail of stage names the engine's data flow must give.
A wrong answer fails the run, like the store benchmark's ``WrongAnswer``.

The spec: ``{"side", "dialect", "url", "workload", "count", "width", "workers", "bloom_items",
"output", "profile"}``; ``bloom_items`` (optional) sizes the engine's de-duplication bloom filter
(``stabilize.queue.dedup.get_deduplicator``) in every worker; ``profile`` (a directory, optional)
makes worker 0 write a cProfile dump there and every worker count its statements, commits and
round trips (``Counts``).
"""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "compat"))
import engine_driver as compat  # the compatibility test's engine, tasks and builders

#: Seconds a run's workflows may take to complete before the run fails (a hang guard only).
RUN_DEADLINE = 600.0
#: Seconds for the workers to open the engine, and to stop and report.
READY_TIMEOUT = 120.0
#: The pause of a worker whose poll found nothing due, and of the completion poll.
IDLE_PAUSE = 0.005
DONE_POLL = 0.02


# -- the workflows ------------------------------------------------------------------------------


def make_relay() -> type:
    """A task that appends its stage's name to the ``trail`` it received through the engine's
    data flow (ancestor outputs merged into the context) and outputs nothing else: what the
    check reads, with outputs that stay small along a chain and at a wide join."""
    from stabilize.tasks.interface import Task
    from stabilize.tasks.result import TaskResult

    class Relay(Task):
        def execute(self, stage: Any) -> TaskResult:
            trail = list(stage.context.get("trail") or [])
            return TaskResult.success(outputs={"trail": [*trail, stage.name]})

    return Relay


def _stage(ref: str, requisites: set[str] | None = None) -> Any:
    return compat._stage(ref, requisites, task="bench.relay")


def build(workload: str, index: int, width: int) -> tuple[Any, dict[str, list[str]]]:
    """Workflow ``index`` of a workload, and the trail each stage's outputs must end with.

    ``chain``: ``width`` stages, each needing the one before. ``diamond``: a root, ``width``
    branches, a join needing every branch. ``fanout``: a root and ``width`` leaves."""
    if workload == "chain":
        names = [f"s{i}" for i in range(width)]
        stages = [_stage(names[0])] + [_stage(n, {p}) for p, n in itertools.pairwise(names)]
        expected = {n: names[: i + 1] for i, n in enumerate(names)}
    elif workload in ("diamond", "fanout"):
        branches = [f"b{i}" for i in range(width)]
        stages = [_stage("root")] + [_stage(b, {"root"}) for b in branches]
        expected = {"root": ["root"], **{b: ["root", b] for b in branches}}
        if workload == "diamond":
            stages.append(_stage("join", set(branches)))
            # The join's trail: what the engine merged from every branch (lists are unioned in
            # its order), then the join's own name; checked as a set, its order is the engine's.
            expected["join"] = ["root", *branches, "join"]
    else:
        raise ValueError(f"unknown workload {workload!r}")
    return compat._workflow(f"{workload}_{index}", stages), expected


def check(store: Any, workflow_id: str, expected: dict[str, list[str]]) -> None:
    current = store.retrieve(workflow_id)
    if current.status.name != "SUCCEEDED":
        raise AssertionError(f"workflow {current.name} ended {current.status.name}")
    seen = {s.name: s for s in current.stages}
    if set(seen) != set(expected):
        raise AssertionError(f"{current.name}: stages {sorted(seen)}, expected {sorted(expected)}")
    for name, trail in expected.items():
        stage = seen[name]
        got = stage.outputs.get("trail")
        if stage.status.name != "SUCCEEDED":
            raise AssertionError(f"{current.name}.{name} ended {stage.status.name}")
        ok = got == trail if name != "join" else (got and got[-1] == "join" and set(got) == set(trail))
        if not ok:
            raise AssertionError(f"{current.name}.{name}: trail {got}, expected {trail}")


# -- counting statements (profile runs only) ------------------------------------------------------


class Counts:
    """What this process asked of the database, counted at the DBAPI driver both sides share, so
    the counts compare: SQLite through the ``sqlite3`` module's trace callback (every statement
    the library runs, its own BEGINs and COMMITs included), PostgreSQL at psycopg 3's cursor and
    connection (a statement, the BEGIN psycopg sends before the first statement of a transaction,
    a COMMIT or ROLLBACK of an open one: each one round trip). MariaDB (ours only): SQLAlchemy's
    statement and commit events."""

    statements = 0
    commits = 0
    #: Client-server round trips (PostgreSQL; elsewhere the statements and commits).
    round_trips = 0

    @classmethod
    def snapshot(cls) -> dict[str, int]:
        return {"statements": cls.statements, "commits": cls.commits, "round_trips": cls.round_trips}

    @classmethod
    def install(cls, dialect: str) -> None:
        if dialect == "sqlite":
            cls._trace_sqlite3()
        elif dialect == "postgresql":
            cls._count_psycopg()
        else:
            cls._count_sqlalchemy()

    @classmethod
    def _trace_sqlite3(cls) -> None:
        import sqlite3
        import sqlite3.dbapi2

        original = sqlite3.dbapi2.connect

        def trace(sql: str) -> None:
            word = sql.lstrip()[:8].upper()
            if word.startswith(("COMMIT", "END")):
                cls.commits += 1
            elif not word.startswith(("BEGIN", "ROLLBACK")):
                cls.statements += 1
            cls.round_trips += 1

        def connect(*args: Any, **kwargs: Any) -> Any:
            connection = original(*args, **kwargs)
            connection.set_trace_callback(trace)
            return connection

        # Upstream calls sqlite3.connect, SQLAlchemy sqlite3.dbapi2.connect (looked up per connect).
        sqlite3.connect = sqlite3.dbapi2.connect = connect  # a profile run's probe, never a measured one

    @classmethod
    def _count_psycopg(cls) -> None:
        import psycopg
        from psycopg import pq

        idle = pq.TransactionStatus.IDLE
        execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany
        commit, rollback = psycopg.Connection.commit, psycopg.Connection.rollback

        def statement(cursor: Any) -> None:
            connection = cursor.connection
            if not connection.autocommit and connection.pgconn.transaction_status == idle:
                cls.round_trips += 1  # the BEGIN psycopg sends first
            cls.statements += 1
            cls.round_trips += 1

        def counted_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
            statement(self)
            return execute(self, *args, **kwargs)

        def counted_executemany(self: Any, *args: Any, **kwargs: Any) -> Any:
            statement(self)  # one pipeline: counted as one round trip
            return executemany(self, *args, **kwargs)

        def counted_commit(self: Any) -> Any:
            if self.pgconn.transaction_status != idle:  # psycopg sends nothing otherwise
                cls.commits += 1
                cls.round_trips += 1
            return commit(self)

        def counted_rollback(self: Any) -> Any:
            if self.pgconn.transaction_status != idle:
                cls.round_trips += 1
            return rollback(self)

        psycopg.Cursor.execute = counted_execute  # type: ignore[method-assign]
        psycopg.Cursor.executemany = counted_executemany  # type: ignore[method-assign]
        psycopg.Connection.commit = counted_commit  # type: ignore[method-assign]
        psycopg.Connection.rollback = counted_rollback  # type: ignore[method-assign]

    @classmethod
    def _count_sqlalchemy(cls) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        def on_statement(*_args: Any) -> None:
            cls.statements += 1
            cls.round_trips += 1

        def on_commit(*_args: Any) -> None:
            cls.commits += 1
            cls.round_trips += 1

        event.listen(Engine, "before_cursor_execute", on_statement)
        event.listen(Engine, "commit", on_commit)


# -- the workers ----------------------------------------------------------------------------------


def worker(spec: dict[str, Any], number: int, ready: Any, go: Any, stop: Any, results: Any) -> None:
    """One worker process: upstream's processor on its own store and queue, stepped until ``stop``."""
    out: dict[str, Any] = {"worker": number, "steps": 0, "idle": 0, "raised": 0}
    log = compat.ErrorLog()
    logging.getLogger("stabilize").addHandler(log)
    logging.getLogger("stabilize").setLevel(logging.WARNING)
    profile = spec.get("profile")
    profiler = None
    try:
        if profile:
            Counts.install(compat_dialect(spec["dialect"]))
        if spec.get("bloom_items"):
            from stabilize.queue.dedup import get_deduplicator

            # The engine's de-duplication filter, made here at the size the spec asks for (its
            # processor takes the process's one filter): at its default 100,000 items, working out
            # its fill ratio costs ~60 ms of pure Python per message, alike on both sides.
            get_deduplicator(expected_items=spec["bloom_items"])
        registry = compat.build_registry({"bench.relay": make_relay()})
        engine = compat.open_engine(
            spec["side"], compat_dialect(spec["dialect"]), spec["url"], registry, create=False
        )
        ready.put(number)
        go.wait(READY_TIMEOUT)
        if profile and number == 0:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        before = Counts.snapshot()
        cpu = time.process_time()
        while not stop.is_set():
            try:
                processed = engine.processor.process_one()
            except Exception as exc:  # rescheduled by the engine; counted, and the run goes on
                log.add(exc, "raised by QueueProcessor.process_one")
                out["raised"] += 1
                processed = True
            if processed:
                out["steps"] += 1
            else:
                out["idle"] += 1
                stop.wait(IDLE_PAUSE)
        out["cpu"] = time.process_time() - cpu
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(Path(profile) / f"worker{number}.prof"))
        out["counts"] = {key: value - before[key] for key, value in Counts.snapshot().items()}
        compat.close_engine(engine)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-3000:]}"
    out["engine_errors"] = [
        {k: e.get(k) for k in ("type", "message", "count", "where")} for e in log.errors.values()
    ]
    results.put(out)


def compat_dialect(dialect: str) -> str:
    """The compatibility driver's name for a bench dialect (``mysql`` is its ``mariadb``)."""
    return "mariadb" if dialect == "mysql" else dialect


# -- a run ------------------------------------------------------------------------------------------


def run(spec: dict[str, Any]) -> dict[str, Any]:
    side, dialect = spec["side"], compat_dialect(spec["dialect"])
    compat.create_schema(side, dialect, spec["url"])
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    go, stop = context.Event(), context.Event()
    processes = [
        context.Process(target=worker, args=(spec, n, ready, go, stop, results), daemon=True)
        for n in range(spec["workers"])
    ]
    for process in processes:
        process.start()
    reports: list[dict[str, Any]] = []
    try:
        registry = compat.build_registry({"bench.relay": make_relay()})
        client = compat.open_engine(side, dialect, spec["url"], registry, create=False)
        built = [build(spec["workload"], i, spec["width"]) for i in range(spec["count"])]
        for _ in processes:
            ready.get(timeout=READY_TIMEOUT)
        began = time.perf_counter()
        go.set()
        for workflow, _expected in built:
            client.orchestrator.start(workflow)
        deadline = time.monotonic() + RUN_DEADLINE
        for workflow, _expected in built:
            while not client.store.retrieve_execution_summary(workflow.id).status.is_complete:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{workflow.name} not complete after {RUN_DEADLINE:.0f} s")
                time.sleep(DONE_POLL)
        wall = time.perf_counter() - began
    finally:
        stop.set()
        go.set()
        for _ in processes:
            try:
                reports.append(results.get(timeout=READY_TIMEOUT))
            except Exception:
                break
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    failed = [r["error"] for r in reports if "error" in r]
    if failed:
        raise RuntimeError("a worker failed: " + failed[0])
    for workflow, expected in built:
        check(client.store, workflow.id, expected)
    compat.close_engine(client)
    stages = sum(len(w.stages) for w, _ in built)
    out: dict[str, Any] = {
        "workload": spec["workload"],
        "workers": spec["workers"],
        "workflows": spec["count"],
        "stages": stages,
        "seconds": wall,
        "steps": sum(r["steps"] for r in reports),
        "idle_polls": sum(r["idle"] for r in reports),
        # The workers' own CPU seconds from the start to the stop (this process's not counted).
        "cpu_seconds": sum(r["cpu"] for r in reports),
        "raised": sum(r["raised"] for r in reports),
        "engine_errors": [e for r in reports for e in r["engine_errors"]],
    }
    if spec.get("profile"):
        out["counts"] = {key: sum(r["counts"][key] for r in reports) for key in Counts.snapshot()}
    return out


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    try:
        out: dict[str, Any] = {"result": run(spec)}
    except Exception as exc:
        out = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-4000:]}
    Path(spec["output"]).write_text(json.dumps(out, default=repr))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
