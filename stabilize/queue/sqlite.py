"""Upstream Stabilize's import path for the SQLite queue (``from stabilize.queue.sqlite import
SqliteQueue``): the dialect-neutral SQL queue, under the name engine code already uses."""

from stabilize.queue.sql import SqliteQueue

__all__ = ["SqliteQueue"]
