"""Dialect-neutral entry points: a URL in, a store or a queue out."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from stabilize.persistence.sql.engine import normalize_url
from stabilize.persistence.sql.store import SqlWorkflowStore

if TYPE_CHECKING:
    from stabilize.queue.sql import SqlQueue


def detect_backend(connection_string: str) -> str:
    """The database family a connection string points at: ``sqlite``, ``postgresql``, ``mysql``..."""
    name = normalize_url(connection_string).get_backend_name()
    return "mysql" if name == "mariadb" else name


def create_repository(
    connection_string: str, create_tables: bool = False, *, operation_timeout: float | None = None
) -> SqlWorkflowStore:
    """The workflow store for any SQLAlchemy URL (or a SQLite file path); ``operation_timeout``
    is the deadline of every call, in seconds (default 10, see ``SqlWorkflowStore``)."""
    return SqlWorkflowStore(
        connection_string, create_tables=create_tables, operation_timeout=operation_timeout
    )


def create_queue(
    connection_string: str,
    table_name: str = "queue_messages",
    lock_duration: timedelta | None = None,
    max_attempts: int = 10,
    *,
    operation_timeout: float | None = None,
) -> SqlQueue:
    """The SQL queue for any SQLAlchemy URL, sharing the store's engine for the same URL (and
    ``operation_timeout``)."""
    from stabilize.queue.sql import SqlQueue

    return SqlQueue(
        connection_string,
        table_name=table_name,
        lock_duration=lock_duration,
        max_attempts=max_attempts,
        operation_timeout=operation_timeout,
    )
