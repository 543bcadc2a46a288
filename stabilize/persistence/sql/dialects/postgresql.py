"""PostgreSQL through psycopg 3."""

from __future__ import annotations

from typing import Any

from sqlalchemy import URL, ColumnElement, Connection, Dialect, cast, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import OperationalError

from stabilize.persistence.errors import SchemaError
from stabilize.persistence.sql.dialects.base import Bounds, RowLimit, Unit
from stabilize.persistence.sql.dialects.on_conflict import OnConflictProfile

#: The advisory lock key of schema migrations ("stab-mig" as a big-endian int64). Advisory keys
#: are scoped to the current database, so migrations of different databases never wait on each other.
MIGRATION_LOCK_KEY = int.from_bytes(b"stab-mig", "big")
#: SQLSTATE of a lock wait that ran out of ``lock_timeout``.
LOCK_NOT_AVAILABLE = "55P03"

#: serialization_failure, deadlock_detected (PostgreSQL appendix A): the transaction lost a race.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})
#: query_canceled: here, a statement that outlasted statement_timeout.
QUERY_CANCELED = "57014"

# psycopg 3 only records the isolation level and the autocommit mode on the connection (sent
# with the next BEGIN, or not at all): switching them per unit of work costs no round trip.
_UNIT_OPTIONS: dict[Unit, dict[str, Any]] = {
    # One statement sees one snapshot by itself: no BEGIN and COMMIT round trips.
    Unit.READ: {"isolation_level": "AUTOCOMMIT"},
    # READ COMMITTED would give each statement its own snapshot.
    Unit.SNAPSHOT: {"isolation_level": "REPEATABLE READ"},
    Unit.WRITE: {},
    Unit.WRITE_ONE: {"isolation_level": "AUTOCOMMIT"},
}


class PostgresProfile(OnConflictProfile):
    """PostgreSQL: ``ON CONFLICT`` upserts, autocommit for units of one statement, REPEATABLE READ
    snapshots, bounds as connect-time ``-c`` settings, an advisory migration lock, and single-statement
    steps and claims (data-modifying CTEs, ``RETURNING``, ``SKIP LOCKED``).
    """
    dialect_insert = staticmethod(pg_insert)
    name = "postgresql"

    def engine_options(self, url: URL, bounds: Bounds) -> dict[str, Any]:
        """A pool of 5 (+10 overflow), and libpq connect arguments from ``bounds``: ``options`` with JIT
        off, ``lock_timeout``, ``statement_timeout`` and ``idle_in_transaction_session_timeout``
        (the URL's own ``options`` appended, so they win), the connect timeout and TCP keepalives
        (the URL's keywords, where given, kept).
        """
        # libpq's own parameters (its docs, "Parameter Key Words"); whatever the URL sets wins:
        # its options are appended to ours (a later -c overrides an earlier one), its keywords
        # are left alone.
        wait = bounds.attempt_ms
        settings = [
            # The store's queries are short; the JIT's compile time (tens of ms, triggered by the
            # cost estimates of recursive queries) would dwarf their run time.
            "-c jit=off",
            # A lock held by another client, or a statement the server is slow on, fails the
            # attempt instead of holding the call.
            f"-c lock_timeout={bounds.lock_wait_ms}",
            f"-c statement_timeout={wait}",
            # A transaction whose client vanished mid-way does not keep its locks for long.
            f"-c idle_in_transaction_session_timeout={max(wait * 4, 60_000)}",
        ]
        given = url.query.get("options")
        settings.extend(given if isinstance(given, tuple) else [given] if given else [])
        connect_args: dict[str, Any] = {"options": " ".join(settings)}
        defaults = {
            # The whole connection setup, handshake included (libpq counts in seconds, 2 at least).
            "connect_timeout": max(2, bounds.attempt_seconds),
            # A peer that vanished (a partition: packets dropped, no reset) is found by TCP
            # keepalives within about ``attempt`` seconds while waiting for an answer, and data
            # it never acknowledges aborts the connection after ``attempt`` (tcp_user_timeout).
            "keepalives": 1,
            "keepalives_idle": 1,
            "keepalives_interval": 1,
            "keepalives_count": max(1, bounds.attempt_seconds - 1),
            "tcp_user_timeout": wait,
        }
        connect_args.update({key: value for key, value in defaults.items() if key not in url.query})
        return {
            "pool_size": 5,
            "max_overflow": 10,
            "pool_timeout": bounds.attempt,
            "connect_args": connect_args,
        }

    watches_sockets = True

    def socket_of(self, dbapi_connection: Any) -> int | None:
        """The psycopg connection's socket (``fileno()``), for the call watchdog."""
        # psycopg has no read timeout: a read on a connection whose network went silent waits
        # until TCP gives up, which it never does while something on the path still
        # acknowledges packets (statement_timeout is the server's, and the server may be the
        # silent part). The watchdog ends that wait at the call's deadline.
        fileno: int = dbapi_connection.fileno()
        return fileno

    autocommit_units = frozenset({Unit.READ, Unit.WRITE_ONE})

    def unit_options(self, unit: Unit) -> dict[str, Any]:
        """AUTOCOMMIT for units of one statement, REPEATABLE READ for snapshots, a transaction for writes."""
        return _UNIT_OPTIONS[unit]

    #: Each step of a recursive CTE otherwise hash-joins with every edge of the workflow.
    lateral_recursion = True
    #: Data-modifying statements in WITH (PostgreSQL docs, "7.8.4"): a step is one statement.
    step_insert = staticmethod(pg_insert)

    def supports_skip_locked(self, dialect: Dialect) -> bool:
        """Always: ``SKIP LOCKED`` exists since PostgreSQL 9.5."""
        return True

    def json_has_key(self, document: ColumnElement[Any], key: str) -> ColumnElement[bool] | None:
        """``CAST(document AS JSONB) ? key``: the stored ``json`` text is only read, never rewritten."""
        # The documents are ``json`` (migration 0003), which has no key test; the cast is read
        # only for the test (``?``), the stored text is never rewritten as jsonb.
        has_key: ColumnElement[bool] = cast(document, JSONB).has_key(key)
        return has_key

    def supports_claim_returning(self, dialect: Dialect) -> bool:
        """Always: ``UPDATE ... RETURNING`` with a subquery of the same table works on PostgreSQL."""
        return True

    def lift_bounds(self, connection: Connection) -> None:
        """``statement_timeout`` and ``lock_timeout`` set to 0 (no limit) for the session; commits."""
        connection.execute(text("SET statement_timeout = 0"))
        connection.execute(text("SET lock_timeout = 0"))
        connection.commit()

    def restore_bounds(self, connection: Connection, bounds: Bounds) -> None:
        """``RESET`` both timeouts to the connect-time options (which come from ``bounds``); commits."""
        # RESET returns to the session's start value: the connect-time options (engine_options).
        connection.execute(text("RESET statement_timeout"))
        connection.execute(text("RESET lock_timeout"))
        connection.commit()

    def _lock_migrations(self, connection: Connection) -> None:
        # A session-level advisory lock, taken in a transaction of its own and committed at once:
        # the migration's transaction then begins after the lock is held, so even under
        # REPEATABLE READ its snapshot includes the previous holder's committed schema.
        # lock_timeout (local to this transaction) bounds the wait.
        timeout_ms = str(max(1, int(self.migration_lock_timeout * 1000)))  # 0 would mean "no limit"
        try:
            connection.execute(text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": timeout_ms})
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            connection.rollback()
            raise SchemaError(
                f"could not take the migration lock within {self.migration_lock_timeout:g} s: another "
                "process is migrating this database (pg_advisory_lock "
                f"{MIGRATION_LOCK_KEY}); retry when it has finished"
            ) from exc

    def _unlock_migrations(self, connection: Connection) -> None:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()

    def is_transient(self, error: BaseException) -> bool:
        """Whether ``error``'s SQLSTATE is a serialization failure (40001) or a deadlock (40P01)."""
        return getattr(error, "sqlstate", None) in TRANSIENT_SQLSTATES

    def is_lock_timeout(self, error: BaseException) -> bool:
        """Whether ``error``'s SQLSTATE is lock_not_available (55P03): ``lock_timeout`` ran out."""
        return getattr(error, "sqlstate", None) == LOCK_NOT_AVAILABLE

    def is_statement_timeout(self, error: BaseException) -> bool:
        """Whether ``error``'s SQLSTATE is query_canceled (57014): ``statement_timeout`` ran out."""
        return getattr(error, "sqlstate", None) == QUERY_CANCELED

    def document_limit(self, facts: dict[str, Any]) -> RowLimit | None:
        """1 GB, PostgreSQL's largest field."""
        return RowLimit(1_073_741_823, "PostgreSQL's largest field, 1 GB (its docs: Appendix K, Limits)")

    def is_unreachable(self, error: BaseException) -> bool:
        """Whether ``error`` is a psycopg ``OperationalError`` of a failed connect (no SQLSTATE), a
        connection exception (class 08) or a server shutting down or starting (57P01-57P03).
        """
        # A failed connect has no SQLSTATE; class 08 is "connection exception"; 57P0x is a
        # server shutting down or starting up.
        import psycopg  # the postgres extra; only PostgreSQL errors reach this method

        if not isinstance(error, psycopg.OperationalError):
            return False
        state = error.sqlstate
        return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")
