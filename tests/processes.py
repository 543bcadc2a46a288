"""Worker processes that start together, for the tests that race processes against each other."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any


def run_together(
    target: Callable[..., None], args: Sequence[tuple[Any, ...]], results_each: int, timeout: float = 600
) -> list[Any]:
    """Run ``target(*args[i], barrier, results)`` in one spawned process per ``args`` entry and
    return every item the workers put on ``results`` (``results_each`` per worker). The barrier
    lets the workers start each race together. A worker that has not exited once its results are
    in is killed; every worker must exit with 0."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(args))
    results = context.Queue()
    workers = [context.Process(target=target, args=(*a, barrier, results)) for a in args]
    for worker in workers:
        worker.start()
    try:
        collected = [results.get(timeout=timeout) for _ in range(len(workers) * results_each)]
    finally:
        for worker in workers:
            worker.join(120)
            if worker.is_alive():
                worker.kill()
    assert [worker.exitcode for worker in workers] == [0] * len(workers)
    return collected
