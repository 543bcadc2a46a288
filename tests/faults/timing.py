"""Calls that must end in bounded time: each runs in a thread of its own, and the test fails if
the thread is still running past the bound (instead of the whole run hanging on it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import pytest

T = TypeVar("T")

#: What a bounded call may take beyond its deadline before the test gives up on it: error
#: handling, a reconnect's connect timeout, a loaded two-core machine.
MARGIN = 4.0


@dataclass
class Timed(Generic[T]):
    """What a call returned or raised, and how long it took."""

    value: T | None
    error: BaseException | None
    seconds: float


def bounded(label: str, call: Callable[[], T], deadline: float, margin: float = MARGIN) -> Timed[T]:
    """Run ``call`` and return what it did; fail the test if it is still running after
    ``deadline + margin`` seconds. Prints the time it took (``pytest -s`` shows the figures)."""
    outcome: list[Timed[T]] = []

    def run() -> None:
        start = time.monotonic()
        try:
            value = call()
        except BaseException as error:  # judged by the test
            outcome.append(Timed(None, error, time.monotonic() - start))
        else:
            outcome.append(Timed(value, None, time.monotonic() - start))

    thread = threading.Thread(target=run, name=f"bounded: {label}", daemon=True)
    thread.start()
    thread.join(deadline + margin)
    if thread.is_alive():
        pytest.fail(
            f"{label}: still running {deadline + margin:g} s after it began (deadline {deadline:g} s)"
        )
    done = outcome[0]
    what = "returned" if done.error is None else f"raised {type(done.error).__name__}"
    print(f"\n[time-to-fail] {label}: {what} after {done.seconds:.2f} s (deadline {deadline:g} s)")
    return done
