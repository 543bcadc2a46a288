"""The SQLite queue under upstream Stabilize's name and import path (``stabilize.queue.sqlite``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from stabilize.queue.sql import SqlQueue


class SqliteQueue(SqlQueue):
    """``SqlQueue`` with upstream's constructor: ``SqliteQueue(connection_string, table_name,
    lock_duration, max_attempts)``; the embedded SQLite file by default. Any URL works: the class
    is the one SQL queue, under the name engine code already uses.

    Args:
        connection_string: a SQLite URL or file path (or any other URL).
        table_name: ``queue_messages``, the only queue table (see ``SqlQueue``).
        lock_duration: how long a claimed message stays invisible (default 60 s).
        max_attempts: claims before a message is dead-lettered.
        **options: ``SqlQueue``'s keyword-only options (``operation_timeout``, ...).
    """

    def __init__(
        self,
        connection_string: str = "sqlite:///stabilize.db",
        table_name: str = "queue_messages",
        lock_duration: timedelta | float | None = None,
        max_attempts: int = 10,
        **options: Any,
    ) -> None:
        """Open the queue on ``connection_string`` (``stabilize.db`` in the working directory by
        default); see the class for the arguments.
        """
        super().__init__(connection_string, table_name, lock_duration, max_attempts, **options)


__all__ = ["SqliteQueue"]
