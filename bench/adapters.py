"""How each side is opened: ours, upstream's (stabilize 0.33.1, in its own venv), the raw ceiling.

Imported by ``driver.py`` in whichever interpreter runs it; only the branch of the side being run
imports that side's modules, so upstream's interpreter never touches SQLAlchemy and ours never
touches upstream's package.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from workloads import LOCK_SECONDS, REQUISITE_TASKS, Side


def open_side(side: str, dialect: str, url: str) -> Side:
    if side == "ours":
        opened = _ours(dialect, url)
    elif side == "upstream":
        opened = _upstream(dialect, url)
    elif side == "raw":
        from raw import open_raw

        opened = Side("raw", open_raw(dialect, url), concurrency_error=_ours_concurrency_error())
    else:
        raise ValueError(f"unknown side {side!r}")
    opened.analyze = lambda: analyze(dialect, url)
    return opened


def analyze(dialect: str, url: str) -> None:
    """ANALYZE the database with a driver both interpreters have, the same for every side."""
    if dialect == "sqlite":
        import sqlite3

        connection = sqlite3.connect(url.split("///", 1)[1])
        connection.execute("ANALYZE")
        connection.close()
    elif dialect == "postgresql":
        import psycopg

        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("ANALYZE")
    else:  # MySQL / MariaDB: ours only, so SQLAlchemy is there
        from sqlalchemy import inspect, text

        from stabilize.persistence.sql.engine import get_engine

        engine = get_engine(url)
        with engine.connect() as connection:
            tables = ", ".join(inspect(connection).get_table_names())
            connection.execute(text(f"ANALYZE TABLE {tables}"))  # table names from the catalog


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

    # A generous deadline: the bench measures throughput on a loaded machine, not time bounds.
    store = SqlWorkflowStore(url, create_tables=True, operation_timeout=120)

    def load(workflows: list[Any]) -> None:
        """Data sets in transactions of 200 workflows (setup, untimed; store() is timed apart)."""
        for start in range(0, len(workflows), 200):
            with store.transaction() as txn:
                for workflow in workflows[start : start + 200]:
                    txn.store_workflow(workflow)

    return Side(
        "ours",
        store,
        new_queue=lambda: open_queue("ours", dialect, url),
        queue_spec=("ours", dialect, url),
        concurrency_error=_ours_concurrency_error(),
        load=load,
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
        # Its PostgreSQL retrieve_stage loads tasks for the synthetic children only (its SQLite
        # one, through get_upstream_stages, loads the requisites' tasks too).
        known_gaps=frozenset({REQUISITE_TASKS}) if dialect == "postgresql" else frozenset(),
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
