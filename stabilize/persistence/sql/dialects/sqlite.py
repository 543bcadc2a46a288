"""SQLite: the embedded default."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import URL, Connection, Dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

from stabilize.errors import SchemaError
from stabilize.persistence.sql.dialects.on_conflict import OnConflictProfile
from stabilize.persistence.sql.prepared import Cursor

#: Connection execution option that marks a transaction as one that will write.
WRITE_INTENT = "stabilize_write"


_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED


def _switch_to_wal(cursor: Any) -> None:
    """WAL: readers do not block the writer and the writer does not block readers.

    The switch needs a moment of exclusive access to the file. When several processes open a new
    database together, SQLite answers SQLITE_BUSY at once, without waiting on busy_timeout: the
    lock upgrade would otherwise deadlock. So the switch is retried, with a short back-off, until
    the connection's busy timeout has passed; once one process has switched, the others' pragma
    is a no-op.
    """
    busy_timeout_ms = cursor.execute("PRAGMA busy_timeout").fetchone()[0]
    deadline = time.monotonic() + busy_timeout_ms / 1000
    pause = 0.001
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) not in _BUSY_CODES or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or bool(url.query.get("mode") == "memory")


class SqliteProfile(OnConflictProfile):
    dialect_insert = staticmethod(sqlite_insert)
    name = "sqlite"
    ping_after_idle = None

    def engine_options(self, url: URL) -> dict[str, Any]:
        options: dict[str, Any] = {
            "connect_args": {"check_same_thread": False},
        }
        if is_memory(url):
            # One shared connection: otherwise every pooled connection is its own empty database.
            options["poolclass"] = StaticPool
        else:
            # Each thread keeps a connection (keeps_thread_connections): the pool must never make
            # a thread wait because more threads than its size keep one.
            options["max_overflow"] = -1
        return options

    def keeps_thread_connections(self, url: URL) -> bool:
        # A file: a checkout and check-in cost as much as a small transaction. In memory, all
        # threads share the one connection already.
        return not is_memory(url)

    def on_connect(self, dbapi_connection: Any) -> None:
        # Take transaction control from the sqlite3 module, which would otherwise BEGIN lazily
        # before the first write and so make a read-then-write transaction unable to upgrade its
        # lock (SQLAlchemy docs: "Serializable isolation / Savepoints / Transactional DDL").
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # Wait for a competing writer instead of failing at once with "database is locked".
            cursor.execute("PRAGMA busy_timeout=30000")
            _switch_to_wal(cursor)
            # NORMAL is durable across application crashes in WAL mode; only an OS crash may
            # lose the last commits, never corrupt the file.
            cursor.execute("PRAGMA synchronous=NORMAL")
            # Foreign keys are off by default in SQLite; cascades depend on them.
            cursor.execute("PRAGMA foreign_keys=ON")
            # Reads from the OS page cache through a memory map instead of a read() per page, a
            # 32 MB page cache per connection (the default is 2 MB), and temporary b-trees (sorts,
            # UNION) in memory: the settings upstream Stabilize ships as its "safe" tier.
            cursor.execute("PRAGMA mmap_size=268435456")
            cursor.execute("PRAGMA cache_size=-32000")
            cursor.execute("PRAGMA temp_store=MEMORY")
        finally:
            cursor.close()

    def is_transient(self, error: BaseException) -> bool:
        # SQLITE_BUSY / SQLITE_LOCKED, after busy_timeout has already waited.
        return getattr(error, "sqlite_errorcode", None) in _BUSY_CODES

    def is_unreachable(self, error: BaseException) -> bool:
        # SQLITE_CANTOPEN: the file or its directory cannot be opened.
        return getattr(error, "sqlite_errorcode", None) == 14

    def begin_dbapi(self, cursor: Cursor, write: bool) -> None:
        # The driver's own transaction control is off (on_connect): begin as on_begin does.
        cursor.command("BEGIN IMMEDIATE" if write else "BEGIN")

    def supports_claim_returning(self, dialect: Dialect) -> bool:
        # RETURNING arrived in SQLite 3.35; one UPDATE statement holds the write lock throughout.
        return sqlite3.sqlite_version_info >= (3, 35)

    def dbapi_autocommit(self, dbapi_connection: Any, on: bool) -> bool:
        # Always in autocommit between transactions: the sqlite3 module's own transaction
        # control is off (see on_connect), so nothing needs switching.
        return True

    def on_begin(self, connection: Connection) -> bool:
        # A writer takes the write lock when it begins, so two writers queue on busy_timeout
        # instead of deadlocking when both try to upgrade a read lock.
        write = connection.get_execution_options().get(WRITE_INTENT, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
        return True

    def _lock_migrations(self, connection: Connection) -> None:
        # The lock is the migration's own transaction, begun IMMEDIATE (SQLite's write lock)
        # before Alembic reads the version table; it ends, releasing the lock, when the block
        # commits. busy_timeout is raised for the wait only; pragmas go to the driver connection
        # directly, so that they do not begin a (deferred) transaction of their own.
        raw = connection.connection.driver_connection
        assert raw is not None, "the connection has been invalidated"
        previous = int(raw.execute("PRAGMA busy_timeout").fetchone()[0])
        # The one value written into SQL text: SQLite's PRAGMA takes no bound parameters. It is an
        # int computed here (never caller text), so nothing but digits can reach the statement.
        raw.execute(f"PRAGMA busy_timeout={int(self.migration_lock_timeout * 1000)}")
        try:
            connection.execution_options(**{WRITE_INTENT: True})
            connection.begin()
        except OperationalError as exc:
            if getattr(exc.orig, "sqlite_errorcode", None) not in _BUSY_CODES:
                raise
            raise SchemaError(
                f"could not take the migration lock within {self.migration_lock_timeout:g} s (BEGIN "
                "IMMEDIATE): another process is writing to or migrating this database; retry when it "
                "has finished"
            ) from exc
        finally:
            raw.execute(f"PRAGMA busy_timeout={previous}")
