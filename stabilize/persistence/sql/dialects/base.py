"""What differs between databases, behind one small interface chosen once per engine.

Query code asks a profile for a capability (an upsert, an insert that ignores duplicates, whether
``SKIP LOCKED`` exists); it never asks for a dialect's name. ``GenericProfile`` does everything
with portable SQL so an unknown SQLAlchemy dialect still works, only less efficiently.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from enum import Enum
from functools import lru_cache
from typing import Any

from sqlalchemy import URL, Connection, Dialect, Executable, Table, bindparam, insert, select, update

logger = logging.getLogger(__name__)

RowValues = dict[str, Any]


def rowcount(result: Any) -> int:
    """Rows an INSERT, UPDATE or DELETE matched (MySQL dialects count matched, not changed, rows)."""
    return int(result.rowcount)


class Unit(Enum):
    """The kinds of unit of work, each begun the way its dialect does it best (``unit_options``)."""

    #: One statement that reads: it sees one snapshot by itself, so it needs no transaction.
    READ = "read"
    #: Several statements that read: one consistent snapshot for all of them.
    SNAPSHOT = "snapshot"
    #: A transaction that writes.
    WRITE = "write"
    #: One statement that writes: it may commit by itself.
    WRITE_ONE = "write_one"

    @property
    def writes(self) -> bool:
        return self in (Unit.WRITE, Unit.WRITE_ONE)


class GenericProfile:
    """Portable behaviour; subclasses override only what their database does better."""

    #: SQLAlchemy dialect name this profile serves (``engine.dialect.name``).
    name = "generic"
    #: Longest wait, in seconds, for another process's migration to finish before giving up.
    migration_lock_timeout: float = 600.0

    def prepare_url(self, url: URL) -> URL:
        """Add driver options the store relies on (a charset, say) when the URL lacks them."""
        return url

    #: Seconds a pooled connection may sit idle before its next checkout pings it (and replaces
    #: it when the server restarted meanwhile); None for databases without connections to lose.
    #: ``pool_pre_ping`` would ping on every checkout: a round trip per call, a third of a
    #: one-statement call's time on a server.
    ping_after_idle: float | None = 1.0

    def engine_options(self, url: URL) -> dict[str, Any]:
        """Keyword arguments for ``create_engine``."""
        return {}

    def on_connect(self, dbapi_connection: Any) -> None:
        """Per-connection settings, run for every new DBAPI connection."""

    def keeps_thread_connections(self, url: URL) -> bool:
        """Whether each thread keeps one connection for its units of work instead of a pool
        checkout per call: worth it where a call costs as little as the checkout."""
        return False

    def unit_options(self, unit: Unit) -> dict[str, Any]:
        """Execution options for the connection of a unit of work of kind ``unit``. Portable: a
        transaction for every kind (the database's default isolation must give a snapshot
        read one snapshot)."""
        return {}

    #: Kinds of unit whose statement commits by itself (``unit_options`` runs them without a
    #: transaction): a write of this kind whose connection dies may have committed.
    autocommit_units: frozenset[Unit] = frozenset()

    #: Whether ``on_begin`` must run when a transaction begins (an event costs every call).
    begins_itself = False

    def on_begin(self, connection: Connection) -> None:
        """Begin a transaction the dialect's own way, as the connection's options ask (SQLAlchemy's
        ``begin`` event); only called when ``begins_itself``."""

    @contextmanager
    def migration_lock(self, connection: Connection) -> Iterator[None]:
        """Hold this database's migration lock for the block: one migrating process at a time.

        Take it on a connection that has not begun a transaction, before Alembic reads the
        version table, and run the migrations inside the block on the same connection. The
        block's work is committed (rolled back on error) *before* the lock is released, so the
        next holder reads the finished schema and finds nothing left to do. A process that dies
        holding it loses it with its connection. Waits at most ``migration_lock_timeout`` seconds,
        then raises ``SchemaError``.

        The generic profile has no lock: on a dialect without a profile, running one migrator at
        a time is the deployment's job.
        """
        if connection.in_transaction():
            raise RuntimeError(
                "migration_lock needs a connection outside a transaction: the lock must be held "
                "before the migration's transaction reads the version table"
            )
        self._lock_migrations(connection)
        try:
            yield
            if connection.in_transaction():
                connection.commit()
        finally:
            try:
                if connection.in_transaction():
                    connection.rollback()
                self._unlock_migrations(connection)
            except Exception:
                # Never hides the block's own error or outcome: a connection that cannot release
                # the lock is dropped instead, and the server releases a session's locks with it.
                logger.warning("could not release the migration lock; closing the connection", exc_info=True)
                with suppress(Exception):
                    connection.invalidate()

    def _lock_migrations(self, connection: Connection) -> None:
        """Take the migration lock (see ``migration_lock``); may leave a transaction begun."""

    def _unlock_migrations(self, connection: Connection) -> None:
        """Release what ``_lock_migrations`` took; runs after the block's transaction ended."""

    def supports_skip_locked(self, dialect: Dialect) -> bool:
        """Whether ``SELECT ... FOR UPDATE SKIP LOCKED`` works on this server."""
        return False

    def supports_claim_returning(self, dialect: Dialect) -> bool:
        """Whether ``UPDATE ... WHERE id = (SELECT ... FROM the same table) RETURNING`` works,
        so a queue claim is one statement (``queue.claim.ReturningClaimer``)."""
        return False

    #: The dialect's ``INSERT`` construct with ``on_conflict_do_*`` when it writes with data-modifying
    #: CTEs (``INSERT``/``UPDATE ... RETURNING`` inside ``WITH``), so a step of several writes is
    #: one statement (``step``); None where it does not.
    step_insert: Any = None

    #: Whether recursive queries (the ancestors of a stage) should take each step through a
    #: LATERAL subquery, forcing one index probe per row found; for planners that would rather
    #: rescan a whole range at every step (PostgreSQL). Needs LATERAL support.
    lateral_recursion: bool = False

    def is_transient(self, error: BaseException) -> bool:
        """Whether the DBAPI ``error`` means "this transaction lost a race; run it again":
        a deadlock, a serialization failure, a busy database. Decided by driver error code,
        never by message text. Nothing is transient for an unknown dialect."""
        return False

    def is_unreachable(self, error: BaseException) -> bool:
        """Whether the DBAPI ``error`` means the server cannot be reached or went away."""
        return False

    def upsert(
        self,
        connection: Connection,
        table: Table,
        rows: Sequence[RowValues],
        keys: tuple[str, ...],
        update_columns: tuple[str, ...],
    ) -> None:
        """Insert ``rows``, or update ``update_columns`` of the rows whose ``keys`` exist.

        Portable: an UPDATE per row, then an INSERT where it matched nothing. Profiles with a
        native upsert do it in one batched statement.
        """
        update_row, insert_row = _portable_upsert(table, keys, update_columns)
        for row in rows:
            # Only the SET columns and the keys: any other parameter named after a column would
            # be taken as one more value to set.
            params = {**{f"key_{k}": row[k] for k in keys}, **{c: row[c] for c in update_columns}}
            if rowcount(connection.execute(update_row, params)) == 0:
                connection.execute(insert_row, row)

    def insert_ignore(
        self, connection: Connection, table: Table, rows: Sequence[RowValues], keys: tuple[str, ...]
    ) -> int:
        """Insert the rows whose ``keys`` are not stored yet, leaving the others as they are;
        return how many were inserted."""
        exists, insert_row = _portable_insert_ignore(table, keys)
        inserted = 0
        for row in rows:
            if connection.execute(exists, {f"key_{k}": row[k] for k in keys}).first() is None:
                connection.execute(insert_row, row)
                inserted += 1
        return inserted


@lru_cache(maxsize=64)
def _portable_upsert(
    table: Table, keys: tuple[str, ...], update_columns: tuple[str, ...]
) -> tuple[Executable, Executable]:
    update_row = (
        update(table)
        .where(*(table.c[k] == bindparam(f"key_{k}") for k in keys))
        .values({c: bindparam(c, type_=table.c[c].type) for c in update_columns})
    )
    return update_row, insert(table)


@lru_cache(maxsize=64)
def _portable_insert_ignore(table: Table, keys: tuple[str, ...]) -> tuple[Executable, Executable]:
    key_columns = [table.c[k] for k in keys]
    exists = select(*key_columns).where(*(c == bindparam(f"key_{c.key}") for c in key_columns))
    return exists, insert(table).execution_options(preserve_rowcount=True)
