"""PostgreSQL through psycopg 3."""

from __future__ import annotations

from typing import Any

from sqlalchemy import URL, Connection, Dialect, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import OperationalError

from stabilize.errors import SchemaError
from stabilize.persistence.sql.dialects.base import Unit
from stabilize.persistence.sql.dialects.on_conflict import OnConflictProfile

#: The advisory lock key of schema migrations ("stab-mig" as a big-endian int64). Advisory keys
#: are scoped to the current database, so migrations of different databases never wait on each other.
MIGRATION_LOCK_KEY = int.from_bytes(b"stab-mig", "big")
#: SQLSTATE of a lock wait that ran out of ``lock_timeout``.
LOCK_NOT_AVAILABLE = "55P03"

#: serialization_failure, deadlock_detected, lock_not_available (PostgreSQL appendix A).
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
CONNECT_TIMEOUT_SECONDS = 5

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
    dialect_insert = staticmethod(pg_insert)
    name = "postgresql"

    def engine_options(self, url: URL) -> dict[str, Any]:
        # connect_timeout: an unreachable server fails the call in seconds instead of hanging.
        # jit=off: the store's queries are short; the JIT's compile time (tens of ms, triggered by
        # the cost estimates of recursive queries) would dwarf their run time.
        return {
            "pool_size": 5,
            "max_overflow": 10,
            "pool_timeout": 10,
            "connect_args": {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "options": "-c jit=off"},
        }

    autocommit_units = frozenset({Unit.READ, Unit.WRITE_ONE})

    def unit_options(self, unit: Unit) -> dict[str, Any]:
        return _UNIT_OPTIONS[unit]

    #: Each step of a recursive CTE otherwise hash-joins with every edge of the workflow.
    lateral_recursion = True
    #: Data-modifying statements in WITH (PostgreSQL docs, "7.8.4"): a step is one statement.
    step_insert = staticmethod(pg_insert)

    def supports_skip_locked(self, dialect: Dialect) -> bool:
        return True

    def supports_claim_returning(self, dialect: Dialect) -> bool:
        return True

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
        return getattr(error, "sqlstate", None) in TRANSIENT_SQLSTATES

    def is_unreachable(self, error: BaseException) -> bool:
        # A failed connect has no SQLSTATE; class 08 is "connection exception"; 57P0x is a
        # server shutting down or starting up.
        import psycopg  # the postgres extra; only PostgreSQL errors reach this method

        if not isinstance(error, psycopg.OperationalError):
            return False
        state = error.sqlstate
        return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")
