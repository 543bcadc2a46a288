"""SQLite: the embedded default."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import URL, ColumnElement, Connection, Dialect, func
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

from stabilize.persistence.errors import SchemaError
from stabilize.persistence.sql.dialects.base import Bounds, RowLimit, Unit, json_member_path
from stabilize.persistence.sql.dialects.on_conflict import OnConflictProfile

#: Connection execution option: the statement that begins a transaction (``on_begin``); None
#: for a unit of one statement, which SQLite runs as a transaction of its own.
BEGIN = "stabilize_begin"
_BEGIN_OF: dict[Unit, dict[str, Any]] = {
    Unit.READ: {BEGIN: None},
    # A read transaction sees one snapshot (WAL) from its first read to its end.
    Unit.SNAPSHOT: {BEGIN: "BEGIN"},
    # A writer takes the write lock when it begins, so two writers queue on busy_timeout instead
    # of deadlocking when both try to upgrade a read lock.
    Unit.WRITE: {BEGIN: "BEGIN IMMEDIATE"},
    Unit.WRITE_ONE: {BEGIN: None},
}


SQLITE_BUSY, SQLITE_LOCKED = 5, 6
#: A WAL read transaction that tried to write on an older snapshot than the database's: no
#: waiting helps, running it again on a fresh snapshot does.
SQLITE_BUSY_SNAPSHOT = 517
_BUSY_CODES = (SQLITE_BUSY, SQLITE_LOCKED)


def _primary_code(error: BaseException) -> int | None:
    """The primary result code of a sqlite3 error. The module reports the extended code
    (SQLITE_LOCKED_SHAREDCACHE is 262, SQLITE_BUSY_SNAPSHOT 517), whose low byte is the primary
    one (SQLite docs: "Result and Error Codes")."""
    code = getattr(error, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


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
            if _primary_code(exc) not in _BUSY_CODES or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def is_memory(url: URL) -> bool:
    """Whether ``url`` names an in-memory database (no file, ``:memory:`` or ``mode=memory``)."""
    return url.database in (None, "", ":memory:") or bool(url.query.get("mode") == "memory")


class SqliteProfile(OnConflictProfile):
    """SQLite: ``ON CONFLICT`` upserts, WAL, foreign keys on, the busy timeout as the lock bound,
    ``BEGIN IMMEDIATE`` for writes (and as the migration lock), one shared connection for an
    in-memory database and one kept connection per thread for a file.
    """
    dialect_insert = staticmethod(sqlite_insert)
    name = "sqlite"
    ping_after_idle = None
    #: Any writer of the file can put any bytes in a TEXT column.
    text_holds_any_bytes = True

    def engine_options(self, url: URL, bounds: Bounds) -> dict[str, Any]:
        """``check_same_thread`` off and the busy timeout from ``bounds`` (a URL's ``?timeout=`` wins);
        a ``StaticPool`` for an in-memory database, an unbounded pool overflow for a file.
        """
        connect_args: dict[str, Any] = {"check_same_thread": False}
        if "timeout" not in url.query:
            # The sqlite3 module's busy timeout: how long a statement waits for another
            # connection's lock before SQLITE_BUSY. A URL's ``?timeout=`` wins.
            connect_args["timeout"] = bounds.attempt
        options: dict[str, Any] = {"connect_args": connect_args}
        if is_memory(url):
            # One shared connection: otherwise every pooled connection is its own empty database.
            options["poolclass"] = StaticPool
        else:
            # Each thread keeps a connection (keeps_thread_connections): the pool must never make
            # a thread wait because more threads than its size keep one.
            options["max_overflow"] = -1
        return options

    def shares_one_connection(self, url: URL) -> bool:
        """True for an in-memory database, which is one connection (``StaticPool``)."""
        return is_memory(url)

    def keeps_thread_connections(self, url: URL) -> bool:
        """True for a file database; an in-memory one shares its single connection anyway."""
        # A file: a checkout and check-in cost as much as a small transaction. In memory, all
        # threads share the one connection already.
        return not is_memory(url)

    def on_connect(self, dbapi_connection: Any, bounds: Bounds) -> dict[str, Any]:
        """Take transaction control from the sqlite3 module and set WAL, ``synchronous=NORMAL``,
        foreign keys, a memory map, a 32 MB page cache and in-memory temporary storage.

        Returns:
            No facts: SQLite has no server to learn about.
        """
        # Take transaction control from the sqlite3 module, which would otherwise BEGIN lazily
        # before the first write and so make a read-then-write transaction unable to upgrade its
        # lock (SQLAlchemy docs: "Serializable isolation / Savepoints / Transactional DDL").
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # The busy timeout (waiting for a competing writer instead of failing at once with
            # "database is locked") is the connection's ``timeout`` (``engine_options``).
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
        return {}

    def is_transient(self, error: BaseException) -> bool:
        """Whether ``error`` is SQLITE_LOCKED (a shared-cache table lock) or SQLITE_BUSY_SNAPSHOT,
        which clear on a rerun."""
        # SQLITE_LOCKED: a table lock of the shared cache (in-memory databases), which no busy
        # timeout waits for.
        return (
            _primary_code(error) == SQLITE_LOCKED
            or getattr(error, "sqlite_errorcode", None) == SQLITE_BUSY_SNAPSHOT
        )

    def is_lock_timeout(self, error: BaseException) -> bool:
        """Whether ``error`` is SQLITE_BUSY: the busy timeout ran out waiting for the write lock."""
        # SQLITE_BUSY after the busy timeout has waited: another connection held the write lock.
        # (Writers take it at BEGIN IMMEDIATE and readers never upgrade, so BUSY is no deadlock.)
        return _primary_code(error) == SQLITE_BUSY and not self.is_transient(error)

    def document_limit(self, facts: dict[str, Any]) -> RowLimit | None:
        """1,000,000,000 bytes, SQLite's default ``SQLITE_MAX_LENGTH``."""
        return RowLimit(1_000_000_000, "SQLite's SQLITE_MAX_LENGTH, the bytes of one row (its default)")

    def is_unreachable(self, error: BaseException) -> bool:
        """Whether ``error`` is SQLITE_CANTOPEN (14): the file or its directory cannot be opened."""
        # SQLITE_CANTOPEN: the file or its directory cannot be opened.
        return _primary_code(error) == 14

    def supports_claim_returning(self, dialect: Dialect) -> bool:
        """Whether the linked SQLite has ``RETURNING`` (3.35 on)."""
        # RETURNING arrived in SQLite 3.35; one UPDATE statement holds the write lock throughout.
        return sqlite3.sqlite_version_info >= (3, 35)

    def json_has_key(self, document: ColumnElement[Any], key: str) -> ColumnElement[bool] | None:
        """``json_type(document, '$."key"') IS NOT NULL``: true for a member holding JSON null too."""
        # json_type is SQL NULL only for a missing member ('null' for a JSON null), unlike
        # json_extract, which is NULL for both (SQLite docs: "The json_type() function").
        return func.json_type(document, json_member_path(key)).is_not(None)

    autocommit_units = frozenset({Unit.READ, Unit.WRITE_ONE})

    def unit_options(self, unit: Unit) -> dict[str, Any]:
        """The ``BEGIN`` statement for the unit's kind: none (the statement commits by itself) for one
        statement, ``BEGIN`` for a snapshot, ``BEGIN IMMEDIATE`` for a write.
        """
        return _BEGIN_OF[unit]

    #: The sqlite3 module's own transaction control is off (``on_connect``): SQLAlchemy's
    #: ``begin`` event sends BEGIN (SQLAlchemy docs: "Serializable isolation / Savepoints").
    begins_itself = True

    def on_begin(self, connection: Connection) -> None:
        """Send the ``BEGIN`` the connection's options name (``BEGIN`` when they name none), or nothing
        for a unit of one statement.
        """
        # Connections without the option (Alembic's, a caller's own) begin as a reader would.
        begin = connection.get_execution_options().get(BEGIN, "BEGIN")
        if begin is not None:
            connection.exec_driver_sql(begin)

    def _lock_migrations(self, connection: Connection) -> None:
        # The lock is the migration's own transaction, begun IMMEDIATE (SQLite's write lock)
        # before Alembic reads the version table; it ends, releasing the lock, when the block
        # commits. Each BEGIN IMMEDIATE waits up to the connection's busy timeout; it is tried
        # again until ``migration_lock_timeout`` has passed.
        connection.execution_options(**{BEGIN: "BEGIN IMMEDIATE"})
        deadline = time.monotonic() + self.migration_lock_timeout
        while True:
            try:
                connection.begin()
                return
            except OperationalError as exc:
                if connection.in_transaction():
                    connection.rollback()
                if exc.orig is None or _primary_code(exc.orig) not in _BUSY_CODES:
                    raise
                if time.monotonic() >= deadline:
                    raise SchemaError(
                        f"could not take the migration lock within {self.migration_lock_timeout:g} s "
                        "(BEGIN IMMEDIATE): another process is writing to or migrating this database; "
                        "retry when it has finished"
                    ) from exc
