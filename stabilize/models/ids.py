"""Identifier and clock helpers shared by the domain models."""

from __future__ import annotations

import time

from ulid import ULID


def new_id() -> str:
    """A new ULID: sortable by creation time, which keeps id order meaningful in listings."""
    return str(ULID())


def now_ms() -> int:
    """The current time in epoch milliseconds, the unit of every time field."""
    return time.time_ns() // 1_000_000
