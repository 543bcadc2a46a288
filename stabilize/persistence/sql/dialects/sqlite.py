"""SQLite: the embedded default."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import URL, Connection, Table
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from stabilize.persistence.sql.dialects.base import GenericProfile, RowValues

#: Connection execution option that marks a transaction as one that will write.
WRITE_INTENT = "stabilize_write"


def is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or bool(url.query.get("mode") == "memory")


class SqliteProfile(GenericProfile):
    name = "sqlite"

    def engine_options(self, url: URL) -> dict[str, Any]:
        if is_memory(url):
            # One shared connection: otherwise every pooled connection is its own empty database.
            return {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        return {"connect_args": {"check_same_thread": False}}

    def on_connect(self, dbapi_connection: Any) -> None:
        # Take transaction control from the sqlite3 module, which would otherwise BEGIN lazily
        # before the first write and so make a read-then-write transaction unable to upgrade its
        # lock (SQLAlchemy docs: "Serializable isolation / Savepoints / Transactional DDL").
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # WAL: readers do not block the writer and the writer does not block readers.
            cursor.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across application crashes in WAL mode; only an OS crash may
            # lose the last commits, never corrupt the file.
            cursor.execute("PRAGMA synchronous=NORMAL")
            # Foreign keys are off by default in SQLite; cascades depend on them.
            cursor.execute("PRAGMA foreign_keys=ON")
            # Wait for a competing writer instead of failing at once with "database is locked".
            cursor.execute("PRAGMA busy_timeout=30000")
        finally:
            cursor.close()

    def on_begin(self, connection: Connection) -> bool:
        # A writer takes the write lock when it begins, so two writers queue on busy_timeout
        # instead of deadlocking when both try to upgrade a read lock.
        write = connection.get_execution_options().get(WRITE_INTENT, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
        return True

    def upsert(
        self,
        session: Session,
        table: Table,
        rows: Sequence[RowValues],
        keys: Sequence[str],
        update_columns: Sequence[str],
    ) -> None:
        if rows:
            stmt = sqlite_insert(table)
            stmt = stmt.on_conflict_do_update(
                index_elements=list(keys), set_={c: stmt.excluded[c] for c in update_columns}
            )
            session.execute(stmt, list(rows))

    def insert_ignore(
        self, session: Session, table: Table, rows: Sequence[RowValues], keys: Sequence[str]
    ) -> None:
        if rows:
            session.execute(
                sqlite_insert(table).on_conflict_do_nothing(index_elements=list(keys)), list(rows)
            )
