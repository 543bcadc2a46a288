"""How each side is opened: ours, upstream's (stabilize 0.33.1, in its own venv), the raw ceiling.

Imported by ``driver.py`` in whichever interpreter runs it; only the branch of the side being run
imports that side's modules, so upstream's interpreter never touches SQLAlchemy and ours never
touches upstream's package.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from workloads import LOCK_SECONDS, Side


def open_side(side: str, dialect: str, url: str) -> Side:
    if side == "ours":
        return _ours(dialect, url)
    if side == "upstream":
        return _upstream(dialect, url)
    if side == "raw":
        from raw import open_raw

        return Side("raw", open_raw(dialect, url), concurrency_error=_ours_concurrency_error())
    raise ValueError(f"unknown side {side!r}")


def open_queue(side: str, dialect: str, url: str) -> Any:
    """A queue on ``url``; also what each consumer process calls."""
    if side == "ours":
        from stabilize.queue.sql import SqlQueue

        return SqlQueue(url, lock_duration=LOCK_SECONDS)
    if dialect == "sqlite":
        from stabilize.queue.sqlite import SqliteQueue

        return SqliteQueue(url, lock_duration=timedelta(seconds=LOCK_SECONDS))
    from stabilize.queue.postgres import PostgresQueue

    return PostgresQueue(url, lock_duration=timedelta(seconds=LOCK_SECONDS))


def _ours_concurrency_error() -> type[BaseException]:
    from stabilize.errors import ConcurrencyError

    return ConcurrencyError


def _ours(dialect: str, url: str) -> Side:
    from stabilize.persistence.sql.store import SqlWorkflowStore

    store = SqlWorkflowStore(url, create_tables=True)
    return Side(
        "ours",
        store,
        new_queue=lambda: open_queue("ours", dialect, url),
        queue_spec=("ours", dialect, url),
        concurrency_error=_ours_concurrency_error(),
    )


def _upstream(dialect: str, url: str) -> Side:
    from stabilize.errors import ConcurrencyError

    if dialect == "sqlite":
        # Upstream's best SQLite setting, per its own docs: WAL is opt-in (DELETE by default).
        if os.environ.get("STABILIZE_SQLITE_JOURNAL_MODE", "").upper() != "WAL":
            raise RuntimeError("run upstream's SQLite side with STABILIZE_SQLITE_JOURNAL_MODE=WAL")
        from stabilize.persistence.sqlite import SqliteWorkflowStore

        store: Any = SqliteWorkflowStore(url, create_tables=True)
        open_queue("upstream", dialect, url)._create_table()
    elif dialect == "postgresql":
        apply_upstream_migrations(url)
        from stabilize.persistence.postgres import PostgresWorkflowStore

        store = PostgresWorkflowStore(url)
    else:
        raise ValueError(f"upstream has no {dialect} support")
    return Side(
        "upstream",
        store,
        new_queue=lambda: open_queue("upstream", dialect, url),
        queue_spec=("upstream", dialect, url),
        concurrency_error=ConcurrencyError,
    )


def apply_upstream_migrations(url: str) -> None:
    """Upstream's PostgreSQL schema exactly as it ships it: its SQL migration files, in order,
    each one's "migrate: up" part (what its migration CLI runs)."""
    import psycopg
    from stabilize.cli.migrations import extract_up_migration, get_migrations

    with psycopg.connect(url) as conn:
        for _name, content in get_migrations():
            conn.execute(extract_up_migration(content))  # upstream's own shipped DDL
        conn.commit()
