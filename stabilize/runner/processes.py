"""Worker processes: each a fresh interpreter ('spawn') with its own engine and connections.

A worker stops cleanly on SIGTERM or SIGINT: it finishes the step it is in (one atomic
transaction), acks its message, and returns, so no message is left locked. A Ctrl-C on a
terminal reaches every process of the foreground group; the workers are started with SIGINT
ignored until their handler is in place, so none dies with a traceback while it starts.
"""

from __future__ import annotations

import importlib
import multiprocessing
import signal
import threading
import time
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from typing import Any

from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.messages import Message
from stabilize.queue.sql import SqlQueue
from stabilize.runner.worker import OUTAGE_SECONDS, Worker

#: The modules that register the demo's tasks; callers add their own.
DEMO_TASKS = ("stabilize.runner.demo",)

#: How long ``stop_workers`` waits for workers to finish their steps before killing them.
STOP_SECONDS = 15.0


class _StoppingQueue(SqlQueue):
    """The queue as a stopping worker sees it: nothing more to poll once ``stopping`` is set."""

    def __init__(self, url: str, stopping: threading.Event, **options: Any) -> None:
        super().__init__(url, **options)
        self._stopping = stopping

    def poll_one(self) -> Message | None:
        """The next message, or None once the worker is stopping."""
        return None if self._stopping.is_set() else super().poll_one()


def run_worker(
    url: str,
    workflow_id: str,
    imports: Sequence[str] = DEMO_TASKS,
    lock_seconds: float = 30.0,
    outage_seconds: float = OUTAGE_SECONDS,
) -> int:
    """A worker process's body: import the task modules, then run until the workflow is finished
    or the process is asked to stop (SIGTERM, SIGINT); it fails once the database has failed
    every call for ``outage_seconds`` (``Worker.run``)."""
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stopping.set())
    for module in imports:
        importlib.import_module(module)
    store = SqlWorkflowStore(url)
    queue = _StoppingQueue(url, stopping, lock_duration=lock_seconds)
    finished = lambda: stopping.is_set() or store.retrieve_execution_summary(workflow_id).status.is_complete  # noqa: E731
    return Worker(store, queue).run(finished, outage_seconds=outage_seconds)


def start_workers(
    url: str,
    workflow_id: str,
    count: int,
    imports: Sequence[str] = DEMO_TASKS,
    lock_seconds: float = 30.0,
    outage_seconds: float = OUTAGE_SECONDS,
) -> list[BaseProcess]:
    """Start ``count`` worker processes for one workflow; the caller joins (or stops) them."""
    context = multiprocessing.get_context("spawn")
    arguments = (url, workflow_id, tuple(imports), lock_seconds, outage_seconds)
    processes: list[BaseProcess] = [
        context.Process(target=run_worker, args=arguments, daemon=True) for _ in range(count)
    ]
    # Children inherit an ignored SIGINT until run_worker installs its handler (Python installs
    # its KeyboardInterrupt handler only where SIGINT is not ignored at startup).
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for process in processes:
            process.start()
    finally:
        signal.signal(signal.SIGINT, previous)
    return processes


def stop_workers(processes: Sequence[BaseProcess], timeout: float = STOP_SECONDS) -> list[BaseProcess]:
    """Ask every worker to finish its step and exit (SIGTERM), wait up to ``timeout`` seconds in
    all, then kill the ones still running; return those (their messages' locks lapse later)."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    stubborn = [p for p in processes if p.is_alive()]
    for process in stubborn:
        process.kill()
        process.join()
    return stubborn
