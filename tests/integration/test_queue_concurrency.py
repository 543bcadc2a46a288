"""Competing consumers: 4 threads, and separately 4 processes, drain 2,000 messages.

Every message must be delivered, none to two consumers while its lock holds (the lock here
outlasts the test, so that means: exactly once), and the queue must be empty at the end. Runs on
the dialects another process can open; every wait is bounded and fails instead of hanging.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from stabilize.queue import SqlQueue, StartWorkflow
from tests.conftest import FILE_OR_SERVER_DIALECTS
from tests.processes import run_together

MESSAGES = 2_000
CONSUMERS = 4
LOCK = timedelta(minutes=10)  # far beyond the test: any second delivery is a duplicate
DEADLINE = 120  # seconds for one drain, far above the slowest dialect's few seconds

pytestmark = pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS, indirect=True)

Delivery = tuple[str, int]  # message id, attempt


def fill(url: str) -> set[str]:
    """Queue the messages in one transaction (``push`` joining the caller's connection)."""
    queue = SqlQueue(url)
    messages = [StartWorkflow(execution_id=f"e{i}") for i in range(MESSAGES)]
    with queue.engine.begin() as connection:
        for message in messages:
            queue.push(message, connection=connection)
    return {m.message_id for m in messages}


def drain(url: str, start: Any) -> list[Delivery]:
    """One consumer: claim and ack until nothing is due; ``start`` lines the consumers up."""
    queue = SqlQueue(url, lock_duration=LOCK)
    start.wait(DEADLINE)
    seen: list[Delivery] = []
    while (message := queue.poll_one()) is not None:
        seen.append((message.message_id, message.attempts))
        queue.ack(message)
    return seen


def _drain_in_child(url: str, start: Any, results: Any) -> None:
    results.put(drain(url, start))


def check(expected: set[str], deliveries: list[list[Delivery]], queue: SqlQueue) -> None:
    flat = [d for consumer in deliveries for d in consumer]
    twice = [mid for mid, n in Counter(mid for mid, _ in flat).items() if n > 1]
    assert twice == [], f"{len(twice)} messages were delivered to more than one consumer"
    assert {mid for mid, _ in flat} == expected, "some messages were never delivered"
    assert {attempt for _, attempt in flat} == {1}
    assert queue.size() == 0
    assert queue.dlq_size() == 0


def test_four_threads_share_the_work_without_duplicates(url: str) -> None:
    expected = fill(url)
    start = threading.Barrier(CONSUMERS)
    results: list[list[Delivery]] = [[] for _ in range(CONSUMERS)]

    def run(index: int) -> None:
        results[index] = drain(url, start)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(CONSUMERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
        assert not thread.is_alive(), "a consumer thread did not finish in time"
    check(expected, results, SqlQueue(url))


def test_four_processes_share_the_work_without_duplicates(url: str) -> None:
    expected = fill(url)
    deliveries = run_together(_drain_in_child, [(url,)] * CONSUMERS, results_each=1, timeout=DEADLINE)
    assert all(deliveries), "a consumer got nothing: the work was not shared"
    check(expected, deliveries, SqlQueue(url))
