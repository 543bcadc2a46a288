"""Ids and times the persistence layer makes itself (fresh message ids, write times).

Its own, not the domain models' helpers: an engine that adopts this store keeps its own
``stabilize.models``, which need not have them.
"""

from __future__ import annotations

import time

from ulid import ULID


def new_id() -> str:
    """A new ULID, as the engine's ids are."""
    return str(ULID())


def now_ms() -> int:
    """The current time in epoch milliseconds, the unit of every time column."""
    return time.time_ns() // 1_000_000
