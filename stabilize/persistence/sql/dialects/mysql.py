"""MySQL 8 and MariaDB through PyMySQL."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    URL,
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Dialect,
    Executable,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.schema import CreateTable

from stabilize.persistence.errors import SchemaError
from stabilize.persistence.sql.dialects.base import (
    Bounds,
    GenericProfile,
    RowLimit,
    RowValues,
    Unit,
    json_member_path,
    rowcount,
)

#: Prefix of the migration lock's name; GET_LOCK names are server-wide, so the name adds the
#: database's. Names are limited to 64 characters.
MIGRATION_LOCK_PREFIX = "stabilize.migrate."
_LOCK_NAME_LIMIT = 64

#: ER_LOCK_DEADLOCK: the transaction was rolled back, so running it again is safe.
TRANSIENT_ERROR_CODES = frozenset({1213})
#: ER_LOCK_WAIT_TIMEOUT: a lock wait outlasted innodb_lock_wait_timeout.
LOCK_WAIT_TIMEOUT = 1205
#: ER_STATEMENT_TIMEOUT (MariaDB's max_statement_time), ER_QUERY_TIMEOUT (MySQL 8's
#: max_execution_time): the server stopped a statement at its time bound.
STATEMENT_TIMEOUT_CODES = frozenset({1969, 3024})
#: Can't connect (2002, 2003), server gone away (2006), lost connection (2013), shutting down
#: (1053): client and server error codes of the MySQL protocol; and a Galera node that is not part
#: of the primary component (1047, "WSREP has not yet prepared node for application use").
UNREACHABLE_ERROR_CODES = frozenset({1047, 1053, 2002, 2003, 2006, 2013})
#: ER_DUP_ENTRY.
DUPLICATE_KEY = 1062
#: Bytes a row's documents may take below max_allowed_packet: the statement's own text and its
#: other values travel in the same packet.
PACKET_MARGIN = 64 * 1024
#: What PyMySQL's string escaping (``converters.escape_string``) writes as two bytes.
PYMYSQL_ESCAPED = "\\'\"\x00\n\r\x1a"

#: Connection execution option of a unit that reads several statements (``on_begin``).
SNAPSHOT = "stabilize_snapshot"
#: Under READ COMMITTED each statement reads its own snapshot; a REPEATABLE READ transaction reads
#: one from its first statement on. For the next transaction only: the session stays READ COMMITTED.
_REPEATABLE_READ = text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def _statement_time(bounds: Bounds) -> float:
    """Seconds a statement may run: the attempt's, but longer than the lock wait, which InnoDB
    counts in whole seconds (at least one), so a lock wait is always the first to end."""
    return max(bounds.attempt, bounds.lock_wait_seconds + 0.5)


def _code(error: BaseException) -> object:
    args = getattr(error, "args", ())
    return args[0] if args else None


class MysqlProfile(GenericProfile):
    """MySQL 8 and MariaDB (also Galera clusters): utf8mb4, READ COMMITTED, strict SQL mode, lock and
    statement bounds set per session, and a migration lock by ``GET_LOCK`` (a replicated row on
    Galera).
    """
    name = "mysql"

    def prepare_url(self, url: URL) -> URL:
        """Add ``charset=utf8mb4`` unless the URL names a charset."""
        # utf8mb4: the server's "utf8" holds only the basic multilingual plane.
        if "charset" not in url.query:
            url = url.update_query_dict({"charset": "utf8mb4"})
        return url

    def engine_options(self, url: URL, bounds: Bounds) -> dict[str, Any]:
        """A pool of 5 (+10 overflow) recycled hourly, READ COMMITTED, and PyMySQL's connect, read and
        write timeouts from ``bounds`` where the URL does not set them.
        """
        # READ COMMITTED: no gap locks, so queue claims and inserts of unrelated rows do not
        # block or deadlock each other the way REPEATABLE READ's next-key locks do. PyMySQL's
        # connect_timeout covers the TCP connect only: the handshake and every later read wait
        # on read_timeout, so a server that accepts and never answers fails the attempt too.
        # The read timeout is a second longer than the server's own bounds of the attempt
        # (lock wait, statement time): those end a wait with their own error first, and the
        # connection is dropped only for a server that stopped answering.
        # (Fractions of a second are fine: PyMySQL hands them to socket.settimeout. Rounding up
        # made a silent server's handshake outlast a deadline of 3 s.)
        timeouts = {
            "connect_timeout": bounds.attempt_seconds,
            "read_timeout": _statement_time(bounds) + 1,
            "write_timeout": _statement_time(bounds) + 1,
        }
        return {
            "pool_size": 5,
            "max_overflow": 10,
            "pool_recycle": 3600,
            "pool_timeout": bounds.attempt,
            "isolation_level": "READ COMMITTED",
            "connect_args": {key: value for key, value in timeouts.items() if key not in url.query},
        }

    def on_connect(self, dbapi_connection: Any, bounds: Bounds) -> dict[str, Any]:
        """Set strict SQL mode, the InnoDB lock wait, the largest recursion depth and (MariaDB) the
        statement time, then run the URL's own ``init_command`` again.

        Returns:
            ``max_allowed_packet`` and, on a Galera node, ``galera``: the cluster's state UUID and the
            database's name.
        """
        mariadb = "mariadb" in dbapi_connection.get_server_info().lower()
        wait = bounds.lock_wait_seconds
        settings: list[tuple[str, tuple[Any, ...]]] = [
            # Strict mode for every table: an over-long value is an error, never silently cut.
            (
                "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
                "NO_ENGINE_SUBSTITUTION'",
                (),
            ),
            # A row lock held by another client fails the attempt instead of holding the call.
            ("SET SESSION innodb_lock_wait_timeout = %s", (wait,)),
            # The ancestor query recurses once per generation of ancestors: MariaDB's default
            # limit (1000) ends the recursion silently, MySQL's raises; lift both, so a merge is
            # complete at any depth (a cycle still ends: UNION drops repeated rows).
            (
                "SET SESSION max_recursive_iterations = %s"
                if mariadb
                else "SET SESSION cte_max_recursion_depth = %s",
                (4294967295,),
            ),
        ]
        if mariadb:
            # A statement the server is slow on fails the attempt (MySQL's counterpart bounds
            # SELECTs only, and the read timeout covers a silent server anyway).
            settings.append(("SET SESSION max_statement_time = %s", (_statement_time(bounds),)))
        cursor = dbapi_connection.cursor()
        try:
            for statement, params in settings:
                cursor.execute(statement, params)
            # The user's own init_command (on the URL) runs again after them, so it wins.
            given = getattr(dbapi_connection, "init_command", None)
            if given:
                cursor.execute(given)
            # One query on MySQL and MariaDB alike (MySQL has no wsrep_on variable).
            cursor.execute("SHOW VARIABLES WHERE Variable_name IN ('max_allowed_packet', 'wsrep_on')")
            variables = {name.lower(): value for name, value in cursor.fetchall()}
            facts: dict[str, Any] = {"max_allowed_packet": int(variables["max_allowed_packet"])}
            if str(variables.get("wsrep_on", "OFF")).upper() == "ON":
                # A Galera node: its cluster's identity makes two nodes of one cluster one
                # database (``database_identity``).
                cursor.execute("SHOW STATUS LIKE 'wsrep_cluster_state_uuid'")
                row = cursor.fetchone()
                cursor.execute("SELECT DATABASE()")
                (database,) = cursor.fetchone()
                facts["galera"] = (row[1] if row else "", database)
        finally:
            cursor.close()
        return facts

    watches_sockets = True

    def socket_of(self, dbapi_connection: Any) -> int | None:
        """The PyMySQL connection's socket, for the call watchdog; None if it has none."""
        # PyMySQL's read timeout bounds each read, not a call of several (nor a ping and a
        # reconnect): the watchdog ends whatever is left at the call's deadline. PyMySQL keeps
        # its socket in ``_sock`` and has no public accessor; without one, the read timeout
        # alone bounds the call.
        sock = getattr(dbapi_connection, "_sock", None)
        return None if sock is None else int(sock.fileno())

    def database_identity(self, facts: dict[str, Any]) -> object | None:
        """``("galera", cluster UUID, database)`` on a Galera node, else None."""
        # Galera: every node of a cluster holds the same databases, so a store on one node and a
        # queue on another write one database and a step may be atomic across them.
        galera = facts.get("galera")
        return None if galera is None or not galera[0] else ("galera", *galera)

    def spreads_claims(self, facts: dict[str, Any]) -> bool:
        """True on a Galera node, whose row locks other nodes do not see."""
        # Galera: a row lock is local to its node (SKIP LOCKED skips only this node's), and
        # certification fails one of two nodes that took one row at their COMMIT: consumers
        # pick among the first due rows at random instead of all racing for the head.
        return "galera" in facts

    def document_limit(self, facts: dict[str, Any]) -> RowLimit | None:
        """``max_allowed_packet`` less ``PACKET_MARGIN``, or None before the server's packet size is known."""
        packet = facts.get("max_allowed_packet")
        if packet is None:
            return None
        why = f"the server's max_allowed_packet ({packet} bytes) less {PACKET_MARGIN} for the statement"
        return RowLimit(max(0, int(packet) - PACKET_MARGIN), why, escaped=PYMYSQL_ESCAPED)

    def is_lock_timeout(self, error: BaseException) -> bool:
        """Whether ``error`` is ER_LOCK_WAIT_TIMEOUT (1205)."""
        return _code(error) == LOCK_WAIT_TIMEOUT

    def is_statement_timeout(self, error: BaseException) -> bool:
        """Whether ``error`` is MariaDB's ER_STATEMENT_TIMEOUT (1969) or MySQL's ER_QUERY_TIMEOUT (3024)."""
        return _code(error) in STATEMENT_TIMEOUT_CODES

    def is_transient(self, error: BaseException) -> bool:
        """Whether ``error`` is a deadlock (1213), after which InnoDB has rolled the transaction back."""
        return _code(error) in TRANSIENT_ERROR_CODES

    def is_unreachable(self, error: BaseException) -> bool:
        """Whether ``error`` is one of ``UNREACHABLE_ERROR_CODES`` (connect failures, a server gone
        away, a Galera node outside the primary component).
        """
        return _code(error) in UNREACHABLE_ERROR_CODES

    def lift_bounds(self, connection: Connection) -> None:
        """No statement time limit (MariaDB), a lock wait as long as ``migration_lock_timeout``; commits."""
        self._set_bounds(connection, 0.0, max(1, round(self.migration_lock_timeout)))

    def restore_bounds(self, connection: Connection, bounds: Bounds) -> None:
        """The statement time and lock wait of ``bounds`` again, as ``on_connect`` sets them; commits."""
        self._set_bounds(connection, _statement_time(bounds), bounds.lock_wait_seconds)
        # As at connect (``on_connect``), the user's own init_command on the URL runs after the
        # bounds, so a session variable it sets (innodb_lock_wait_timeout, ...) wins again.
        given = connection.engine.url.query.get("init_command")
        if isinstance(given, str) and given:
            # As given, never %-formatted: the text may hold a % of its own.
            connection.exec_driver_sql(given, execution_options={"no_parameters": True})
            connection.commit()

    def _set_bounds(self, connection: Connection, statement: float, lock_wait: int) -> None:
        if getattr(connection.dialect, "is_mariadb", False):
            connection.execute(text("SET SESSION max_statement_time = :t"), {"t": statement})
        connection.execute(text("SET SESSION innodb_lock_wait_timeout = :t"), {"t": lock_wait})
        connection.commit()

    def _lock_migrations(self, connection: Connection) -> None:
        # GET_LOCK is held by the session, not a transaction: MySQL commits around every DDL
        # statement, so a transaction-scoped lock would end with the first CREATE TABLE.
        name = migration_lock_name(connection.execute(text("SELECT DATABASE()")).scalar())
        wsrep = connection.execute(text("SHOW VARIABLES LIKE 'wsrep_on'")).first()
        if wsrep is not None and str(wsrep[1]).upper() == "ON":
            connection.commit()
            self._lock_migrations_in_cluster(connection, name)
            return
        timeout = max(0, round(self.migration_lock_timeout))
        got = connection.execute(text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": timeout})
        obtained = got.scalar()
        connection.commit()  # the migration's transaction begins after the lock is held
        if obtained != 1:
            reason = "timed out" if obtained == 0 else "failed (the server returned NULL)"
            raise SchemaError(
                f"could not take the migration lock {name!r}: GET_LOCK {reason} after waiting up to "
                f"{timeout} s; another process is migrating this database. Retry when it has finished"
            )
        connection.info["stabilize_migration_lock"] = name

    def _lock_migrations_in_cluster(self, connection: Connection, name: str) -> None:
        """Galera: GET_LOCK locks one node only, so the lock is a row every node sees. Inserting
        it commits on every node or on none (certification fails one of two nodes inserting at
        once: error 1213, or a duplicate key once the other's row replicated); a holder that died
        leaves its row, which a migrator takes over once it is older than the lock's timeout."""
        holder = uuid.uuid4().hex
        timeout = max(0.0, self.migration_lock_timeout)
        deadline = time.monotonic() + timeout
        connection.execute(_CREATE_CLUSTER_LOCK)
        connection.commit()
        while True:
            now = int(time.time() * 1000)
            try:
                connection.execute(_TAKE_CLUSTER_LOCK, {"name": name, "holder": holder, "taken_at": now})
                connection.commit()
            except (IntegrityError, OperationalError) as error:
                connection.rollback()
                if error.orig is None or _code(error.orig) not in (DUPLICATE_KEY, *TRANSIENT_ERROR_CODES):
                    raise
            else:
                connection.info["stabilize_migration_lock"] = (name, holder)
                return
            stale = now - int(timeout * 1000)
            connection.execute(_TAKE_STALE_CLUSTER_LOCK, {"lock_name": name, "stale": stale})
            connection.commit()
            if time.monotonic() >= deadline:
                raise SchemaError(
                    f"could not take the migration lock {name!r} (the cluster-wide row in "
                    f"{CLUSTER_LOCK_TABLE}) within {timeout:g} s; another process is migrating this "
                    "database. Retry when it has finished"
                )
            time.sleep(0.2)  # a migration takes seconds: poll, without holding anything

    def _unlock_migrations(self, connection: Connection) -> None:
        held = connection.info.pop("stabilize_migration_lock", None)
        if isinstance(held, tuple):
            name, holder = held
            connection.execute(_DROP_CLUSTER_LOCK, {"lock_name": name, "lock_holder": holder})
            connection.commit()
        elif held is not None:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": held})
            connection.commit()

    def unit_options(self, unit: Unit) -> dict[str, Any]:
        """Mark snapshot units, which ``on_begin`` makes REPEATABLE READ; every kind runs in a transaction."""
        # Autocommit is no saving here: PyMySQL sends a statement to switch it, and MySQL begins
        # transactions without one; a unit of one statement costs the statement and its COMMIT.
        return {SNAPSHOT: unit is Unit.SNAPSHOT}

    begins_itself = True

    def on_begin(self, connection: Connection) -> None:
        """Make a snapshot unit's transaction REPEATABLE READ, so its statements read one snapshot."""
        if connection.get_execution_options().get(SNAPSHOT):
            connection.execute(_REPEATABLE_READ)

    def supports_skip_locked(self, dialect: Dialect) -> bool:
        """MariaDB 10.6 and MySQL 8.0.1 on."""
        version = dialect.server_version_info or (0,)
        is_mariadb = bool(getattr(dialect, "is_mariadb", False))
        return version >= (10, 6) if is_mariadb else version >= (8, 0, 1)

    def json_has_key(self, document: ColumnElement[Any], key: str) -> ColumnElement[bool] | None:
        """``JSON_CONTAINS_PATH(document, 'one', '$."key"') = 1``."""
        # 1 where the path exists, whatever its value (MariaDB and MySQL docs: JSON_CONTAINS_PATH).
        return func.json_contains_path(document, "one", json_member_path(key)) == 1

    def upsert(
        self,
        connection: Connection,
        table: Table,
        rows: Sequence[RowValues],
        keys: tuple[str, ...],
        update_columns: tuple[str, ...],
    ) -> None:
        """Insert or update all ``rows`` in one executemany of ``INSERT ... ON DUPLICATE KEY UPDATE``;
        ``keys`` are the table's unique key, which MySQL finds itself.
        """
        connection.execute(_upsert_statement(table, update_columns), list(rows))

    def insert_ignore(
        self, connection: Connection, table: Table, rows: Sequence[RowValues], keys: tuple[str, ...]
    ) -> int:
        """Insert each row by ``INSERT ... SELECT ... WHERE NOT EXISTS``; return how many were inserted.
        A duplicate that another client inserted at the same moment counts as not inserted.
        """
        # INSERT ... SELECT ... WHERE NOT EXISTS counts exactly what it inserted (ON DUPLICATE KEY
        # UPDATE would count a duplicate as 1 under SQLAlchemy's FOUND_ROWS, and INSERT IGNORE
        # downgrades more errors than the duplicate key). A concurrent insert of the same key
        # still fails on the key: InnoDB rolls back that statement only, and it counts as 0.
        statement = _insert_if_absent(table, keys)
        inserted = 0
        for row in rows:
            try:
                inserted += rowcount(connection.execute(statement, row))
            except IntegrityError as error:
                if error.orig is None or _code(error.orig) != DUPLICATE_KEY:
                    raise
        return inserted


# Built once per table and columns: building ``inserted`` costs more than the write itself.
@lru_cache(maxsize=64)
def _upsert_statement(table: Table, update_columns: tuple[str, ...]) -> Executable:
    stmt = mysql_insert(table)
    upsert: Executable = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in update_columns})
    return upsert


@lru_cache(maxsize=64)
def _insert_if_absent(table: Table, keys: tuple[str, ...]) -> Executable:
    columns = [c.key for c in table.columns]
    values = select(*(bindparam(c, type_=table.c[c].type) for c in columns)).where(
        ~exists().where(*(table.c[k] == bindparam(k) for k in keys))
    )
    statement: Executable = (
        insert(table).from_select(columns, values).execution_options(preserve_rowcount=True)
    )
    return statement


#: Galera's migration lock: a row per database, replicated to every node (see
#: ``_lock_migrations_in_cluster``). Not a table of the models (``migrations/env.py`` skips it).
CLUSTER_LOCK_TABLE = "stabilize_migration_lock"
_CLUSTER_LOCK = Table(
    CLUSTER_LOCK_TABLE,
    MetaData(),
    Column("name", String(64), primary_key=True),
    Column("holder", String(32), nullable=False),
    Column("taken_at", BigInteger, nullable=False),
    mysql_engine="InnoDB",
)
_CREATE_CLUSTER_LOCK = CreateTable(_CLUSTER_LOCK, if_not_exists=True)
_TAKE_CLUSTER_LOCK = insert(_CLUSTER_LOCK)
_TAKE_STALE_CLUSTER_LOCK = delete(_CLUSTER_LOCK).where(
    _CLUSTER_LOCK.c.name == bindparam("lock_name"), _CLUSTER_LOCK.c.taken_at < bindparam("stale")
)
_DROP_CLUSTER_LOCK = delete(_CLUSTER_LOCK).where(
    _CLUSTER_LOCK.c.name == bindparam("lock_name"), _CLUSTER_LOCK.c.holder == bindparam("lock_holder")
)


def migration_lock_name(database: str | None) -> str:
    """The GET_LOCK name that serializes migrations of ``database`` (at most 64 characters)."""
    name = MIGRATION_LOCK_PREFIX + (database or "")
    if len(name) > _LOCK_NAME_LIMIT:
        digest = hashlib.sha256((database or "").encode()).hexdigest()
        name = MIGRATION_LOCK_PREFIX + digest[: _LOCK_NAME_LIMIT - len(MIGRATION_LOCK_PREFIX)]
    return name
