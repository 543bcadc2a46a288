"""Threads that race on one database: each runs its own call, lined up by a Barrier.

Every wait is bounded and fails instead of hanging; what a thread returns or raises is its
outcome, for the test to judge (a lost race may surface as ``TransientError``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

import pytest

from stabilize.errors import TransientError
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.persistence.store.transaction import StoreTransaction
from tests.conftest import FILE_OR_SERVER_DIALECTS

T = TypeVar("T")

#: Races run where each thread has a connection of its own. On ``sqlite:///:memory:`` every
#: thread shares the StaticPool's one connection, and nothing serialises them: one thread's
#: unit commits (or BEGINs inside) another's open transaction, and a broken race can lose the
#: whole in-memory database for the later tests of the process. That is a bug of the in-memory
#: dialect, shown deterministically by ``test_answering_transaction::
#: test_a_held_transaction_is_invisible_to_other_threads_until_it_ends[sqlite_memory]``.
RACING = pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS, indirect=True)

#: Seconds any thread may wait at the Barrier, and to finish: far beyond what a race takes.
DEADLINE = 60
#: The racers' deadline per call: an engine of their own (engines are cached by URL and this
#: bound), with lock waits that outlast a loaded machine's slowest race.
RACE_TIMEOUT = 30.0


@contextmanager
def racers(url: str, count: int) -> Iterator[list[SqlWorkflowStore]]:
    """``count`` stores of their own on ``url``, sharing an engine apart from the tests': the
    connections a race opens are closed after it, so no later test finds the tests' pool
    holding more connections than its own calls left there."""
    stores = [SqlWorkflowStore(url, operation_timeout=RACE_TIMEOUT) for _ in range(count)]
    try:
        yield stores
    finally:
        stores[0].engine.dispose()


def warm(txn: StoreTransaction, dialect: str) -> None:
    """Begin ``txn``'s database transaction before the Barrier where beginning takes no lock (the
    servers): the racers then meet with their connections and transactions ready, and race on
    the call itself, not on who connected first. On SQLite, beginning takes the write lock, so
    there the racers begin in the race."""
    if dialect in ("postgresql", "mariadb"):
        assert txn.workflow_status("") == (None, False)


class Outcome(Generic[T]):
    """What one thread's work returned, or what it raised."""

    def __init__(self) -> None:
        self.value: T | None = None
        self.error: BaseException | None = None
        self.done = False


def race(threads: int, work: Callable[[int, threading.Barrier], T]) -> list[Outcome[T]]:
    """Run ``work(index, barrier)`` in ``threads`` threads at once; ``barrier`` is for each to
    wait on right before the call that races. Returns each thread's outcome, by index."""
    barrier = threading.Barrier(threads, timeout=DEADLINE)
    outcomes: list[Outcome[T]] = [Outcome() for _ in range(threads)]

    def run(index: int) -> None:
        outcome = outcomes[index]
        try:
            outcome.value = work(index, barrier)
        except BaseException as error:  # judged by the test
            outcome.error = error
            barrier.abort()  # the others must not wait for a thread that will never come
        outcome.done = True

    started = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(DEADLINE * 2)
        assert not thread.is_alive(), "a racing thread did not finish in time"
    assert all(outcome.done for outcome in outcomes)
    return outcomes


def unexpected(outcomes: list[Outcome[T]]) -> list[BaseException]:
    """The errors that are not a lost race (``TransientError``): each is a failure. The
    ``BrokenBarrierError`` of threads another thread's failure let down come last."""
    errors = [o.error for o in outcomes if o.error is not None and not isinstance(o.error, TransientError)]
    return sorted(errors, key=lambda error: isinstance(error, threading.BrokenBarrierError))
