"""What differs between databases, behind one small interface chosen once per engine.

Query code asks a profile for a capability (an upsert, an insert that ignores duplicates, whether
``SKIP LOCKED`` exists); it never asks for a dialect's name. ``GenericProfile`` does everything
with portable SQL so an unknown SQLAlchemy dialect still works, only less efficiently.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    URL,
    ColumnElement,
    Connection,
    Dialect,
    Executable,
    Table,
    bindparam,
    insert,
    select,
    update,
)

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
        """Whether a unit of this kind writes (``WRITE`` or ``WRITE_ONE``)."""
        return self in (Unit.WRITE, Unit.WRITE_ONE)


#: The default deadline of a public call of the store or the queue, in seconds.
DEFAULT_OPERATION_TIMEOUT = 10.0


@dataclass(frozen=True)
class Bounds:
    """How long a call may take, and so how long each of its waits may.

    ``operation`` bounds a whole public call: connecting, network reads, lock waits and the
    reruns of its unit of work together. One attempt of a unit gets at most ``attempt`` for each
    of its waits (connect, a lock, a read), half the call's: a unit runs again only while another
    attempt still fits in what is left (``units.Database``).
    """

    operation: float = DEFAULT_OPERATION_TIMEOUT

    def __post_init__(self) -> None:
        """Refuse an ``operation`` that is not a number of seconds between 0.5 and 3600.

        Raises:
            ValueError: naming ``operation_timeout``, for a bool, a non-number or one out of range.
        """
        if isinstance(self.operation, bool) or not isinstance(self.operation, int | float):
            raise ValueError(f"operation_timeout: must be seconds, got {self.operation!r}")
        if not 0.5 <= self.operation <= 3600:
            raise ValueError(
                f"operation_timeout: must be between 0.5 and 3600 seconds, got {self.operation!r}"
            )

    @property
    def attempt(self) -> float:
        """Seconds one wait of one attempt may take."""
        return self.operation / 2

    @property
    def attempt_ms(self) -> int:
        """``attempt`` in whole milliseconds, rounded down (at least 1), for settings counted in ms."""
        return max(1, int(self.attempt * 1000))

    @property
    def attempt_seconds(self) -> int:
        """``attempt`` rounded up to whole seconds (drivers and servers that count in seconds)."""
        return max(1, math.ceil(self.attempt))

    @property
    def lock_wait(self) -> float:
        """Seconds a wait for another client's lock may take: shorter than the statement and
        network bounds of the attempt, so a lock wait ends first and is reported as one
        (``LockTimeoutError``), not as a slow statement or a silent server."""
        return self.attempt * 0.8

    @property
    def lock_wait_ms(self) -> int:
        """``lock_wait`` in whole milliseconds, rounded down (at least 1), for settings counted in ms."""
        return max(1, int(self.lock_wait * 1000))

    @property
    def lock_wait_seconds(self) -> int:
        """``lock_wait`` in whole seconds, rounded down (at least 1)."""
        return max(1, math.floor(self.lock_wait))


@dataclass(frozen=True)
class RowLimit:
    """The most bytes of text and JSON one row may hold on a database, and where that comes from.

    ``escaped``: the characters the driver sends as two bytes, where the limit counts what goes
    over the wire (PyMySQL writes values into the statement's text, a quote or backslash escaped
    by a backslash: a JSON string of quotes takes four bytes a character there, not two).
    """

    bytes: int
    why: str
    escaped: str = ""

    def size(self, text: str) -> int:
        """The bytes ``text`` takes against this limit."""
        size = len(text.encode("utf-8", "surrogatepass"))
        for char in self.escaped:
            size += text.count(char)
        return size


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

    def engine_options(self, url: URL, bounds: Bounds) -> dict[str, Any]:
        """Keyword arguments for ``create_engine``: the driver's timeouts derived from ``bounds``,
        added to (never replacing) what the user put on the URL."""
        return {"pool_timeout": bounds.attempt}

    def on_connect(self, dbapi_connection: Any, bounds: Bounds) -> dict[str, Any]:
        """Per-connection settings, run for every new DBAPI connection (lock waits bounded by
        ``bounds.attempt``); returns what was learned of the server (``server facts``)."""
        return {}

    #: Whether calls run under the watchdog (``watchdog``), which shuts down the sockets
    #: ``socket_of`` names when a call outlives its deadline.
    watches_sockets = False

    def socket_of(self, dbapi_connection: Any) -> int | None:
        """The file descriptor of the socket a new DBAPI connection talks through, for the call
        watchdog (``watchdog``) to shut down when a call outlives its deadline; None where the
        driver's own timeouts suffice or there is no socket."""
        return None

    def database_identity(self, facts: dict[str, Any]) -> object | None:
        """What makes two engines one database, from their connections' ``facts`` (a cluster's
        identity and the database's name); None: only the same engine is the same database."""
        return None

    def spreads_claims(self, facts: dict[str, Any]) -> bool:
        """Whether queue consumers should pick among the first due rows at random rather than
        lock the earliest (a cluster whose row locks are local to each node)."""
        return False

    def document_limit(self, facts: dict[str, Any]) -> RowLimit | None:
        """How many bytes of text and JSON one row may hold (its values together), or None for no
        known limit; ``facts`` is what ``on_connect`` learned of the server."""
        return None

    def is_lock_timeout(self, error: BaseException) -> bool:
        """Whether the DBAPI ``error`` is a lock wait that outlasted its bound."""
        return False

    def is_statement_timeout(self, error: BaseException) -> bool:
        """Whether the DBAPI ``error`` is a statement the server stopped at its time bound."""
        return False

    def shares_one_connection(self, url: URL) -> bool:
        """Whether every thread uses the engine's one connection (an in-memory SQLite
        database): then units of work must run one at a time."""
        return False

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

    def lift_bounds(self, connection: Connection) -> None:
        """Lift the call bounds ``on_connect`` set on this connection's session (statement and
        lock-wait timeouts), for a migration's DDL. Runs outside a transaction and leaves none
        open; ``restore_bounds`` undoes it."""

    def restore_bounds(self, connection: Connection, bounds: Bounds) -> None:
        """Set the session's call bounds again after ``lift_bounds``; same rules."""

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

    #: Whether a text column may hold bytes that are not valid UTF-8 (SQLite checks no encoding;
    #: the servers refuse such text): a read of any row must then take the column as bytes,
    #: since the driver fails the whole statement on text it cannot decode (``StoredText``).
    text_holds_any_bytes: bool = False

    #: Whether recursive queries (the ancestors of a stage) should take each step through a
    #: LATERAL subquery, forcing one index probe per row found; for planners that would rather
    #: rescan a whole range at every step (PostgreSQL). Needs LATERAL support.
    lateral_recursion: bool = False

    def json_has_key(self, document: ColumnElement[Any], key: str) -> ColumnElement[bool] | None:
        """A condition true where the JSON object ``document`` has the top-level ``key`` (whatever
        its value, JSON null included), or None where the dialect has no such test: then the
        caller reads the documents and looks in Python. ``key`` is the caller's constant."""
        return None

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


def json_member_path(key: str) -> str:
    """The SQL/JSON path of a top-level member, ``$."key"`` (SQLite's and MySQL's JSON functions
    read quoted member names alike); a key that would need escaping is refused."""
    if '"' in key or "\\" in key:
        raise ValueError(f"JSON key {key!r} needs escaping in a path")
    return f'$."{key}"'


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
