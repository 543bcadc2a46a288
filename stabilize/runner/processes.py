"""Worker processes: each a fresh interpreter ('spawn') with its own engine and connections."""

from __future__ import annotations

import importlib
import multiprocessing
from collections.abc import Sequence
from multiprocessing.process import BaseProcess

from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.sql import SqlQueue
from stabilize.runner.worker import Worker

#: The modules that register the demo's tasks; callers add their own.
DEMO_TASKS = ("stabilize.runner.demo",)


def run_worker(
    url: str, workflow_id: str, imports: Sequence[str] = DEMO_TASKS, lock_seconds: float = 30.0
) -> int:
    """A worker process's body: import the task modules, then run until the workflow is finished."""
    for module in imports:
        importlib.import_module(module)
    store = SqlWorkflowStore(url)
    queue = SqlQueue(url, lock_duration=lock_seconds)
    return Worker(store, queue).run(lambda: store.retrieve_execution_summary(workflow_id).status.is_complete)


def start_workers(
    url: str,
    workflow_id: str,
    count: int,
    imports: Sequence[str] = DEMO_TASKS,
    lock_seconds: float = 30.0,
) -> list[BaseProcess]:
    """Start ``count`` worker processes for one workflow; the caller joins them."""
    context = multiprocessing.get_context("spawn")
    processes: list[BaseProcess] = [
        context.Process(target=run_worker, args=(url, workflow_id, tuple(imports), lock_seconds), daemon=True)
        for _ in range(count)
    ]
    for process in processes:
        process.start()
    return processes
