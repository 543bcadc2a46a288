"""The PostgreSQL queue under upstream Stabilize's name and import path (``stabilize.queue.postgres``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from stabilize.queue.sql import SqlQueue


class PostgresQueue(SqlQueue):
    """``SqlQueue`` with upstream's constructor: ``PostgresQueue(connection_string, table_name,
    lock_duration, max_attempts)``; ``postgresql://`` and ``postgres://`` URLs use psycopg 3.

    Args:
        connection_string: a PostgreSQL URL (or any other URL: the class is the one SQL queue).
        table_name: ``queue_messages``, the only queue table (see ``SqlQueue``).
        lock_duration: how long a claimed message stays invisible (default 60 s).
        max_attempts: claims before a message is dead-lettered.
        **options: ``SqlQueue``'s keyword-only options (``operation_timeout``, ...).
    """

    def __init__(
        self,
        connection_string: str,
        table_name: str = "queue_messages",
        lock_duration: timedelta | float | None = None,
        max_attempts: int = 10,
        **options: Any,
    ) -> None:
        """Open the queue on ``connection_string``; see the class for the arguments."""
        super().__init__(connection_string, table_name, lock_duration, max_attempts, **options)


__all__ = ["PostgresQueue"]
