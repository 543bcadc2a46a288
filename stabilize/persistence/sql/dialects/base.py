"""What differs between databases, behind one small interface chosen once per engine.

Query code asks a profile for a capability (an upsert, an insert that ignores duplicates, whether
``SKIP LOCKED`` exists); it never asks for a dialect's name. ``GenericProfile`` does everything
with portable SQL so an unknown SQLAlchemy dialect still works, only less efficiently.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import Any

from sqlalchemy import URL, Connection, Dialect, Table, bindparam, insert, select, update

from stabilize.persistence.sql.prepared import Cursor, Prepared

logger = logging.getLogger(__name__)

RowValues = dict[str, Any]


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
        """Whether each thread keeps one pooled connection for the hot paths (``dbapi``) instead
        of a checkout per call: worth it where a call costs as little as the checkout."""
        return False

    def begin_dbapi(self, cursor: Cursor, write: bool) -> None:
        """Begin a transaction on a driver cursor (``dbapi.transaction``); by default the driver
        begins one itself before the first statement."""

    def dbapi_autocommit(self, dbapi_connection: Any, on: bool) -> bool:
        """Switch the driver connection's autocommit mode if that costs no round trip; return
        whether it did (``dbapi.transaction`` then sends no BEGIN or COMMIT)."""
        return False

    def on_begin(self, connection: Connection) -> bool:
        """Start a transaction the dialect's own way; return False to let the driver do it."""
        return False

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

    #: Isolation level for the store's read-only calls on a READ COMMITTED database, where every
    #: statement reads its own snapshot in or out of a transaction: "AUTOCOMMIT" then saves each
    #: read its BEGIN and ROLLBACK round trips. None: reads run in a transaction (SQLite's gives
    #: one snapshot for all of a call's queries).
    read_isolation: str | None = None

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
        cursor: Cursor,
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
            if cursor.run(update_row, {**{f"key_{k}": row[k] for k in keys}, **row}) == 0:
                cursor.run(insert_row, row)

    def insert_ignore(
        self, cursor: Cursor, table: Table, rows: Sequence[RowValues], keys: tuple[str, ...]
    ) -> None:
        """Insert the rows whose ``keys`` are not stored yet; leave the others as they are."""
        exists, insert_row = _portable_insert_ignore(table, keys)
        for row in rows:
            if not cursor.fetch(exists, {f"key_{k}": row[k] for k in keys}):
                cursor.run(insert_row, row)


@lru_cache(maxsize=64)
def _portable_upsert(
    table: Table, keys: tuple[str, ...], update_columns: tuple[str, ...]
) -> tuple[Prepared, Prepared]:
    update_row = (
        update(table)
        .where(*(table.c[k] == bindparam(f"key_{k}") for k in keys))
        .values({c: bindparam(c, type_=table.c[c].type) for c in update_columns})
    )
    return Prepared(update_row), Prepared(insert(table))


@lru_cache(maxsize=64)
def _portable_insert_ignore(table: Table, keys: tuple[str, ...]) -> tuple[Prepared, Prepared]:
    key_columns = [table.c[k] for k in keys]
    exists = select(*key_columns).where(*(c == bindparam(f"key_{c.key}") for c in key_columns))
    return Prepared(exists), Prepared(insert(table))
