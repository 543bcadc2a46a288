"""MySQL 8 and MariaDB through PyMySQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import URL, Dialect, Table
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.orm import Session

from stabilize.persistence.sql.dialects.base import GenericProfile, RowValues


class MysqlProfile(GenericProfile):
    name = "mysql"

    def prepare_url(self, url: URL) -> URL:
        # utf8mb4: the server's "utf8" holds only the basic multilingual plane.
        if "charset" not in url.query:
            url = url.update_query_dict({"charset": "utf8mb4"})
        return url

    def engine_options(self, url: URL) -> dict[str, Any]:
        # READ COMMITTED: no gap locks, so queue claims and inserts of unrelated rows do not
        # block or deadlock each other the way REPEATABLE READ's next-key locks do.
        return {
            "pool_pre_ping": True,
            "pool_size": 5,
            "max_overflow": 10,
            "pool_recycle": 3600,
            "isolation_level": "READ COMMITTED",
        }

    def on_connect(self, dbapi_connection: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            # Strict mode for every table: an over-long value is an error, never silently cut.
            cursor.execute(
                "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
                "NO_ENGINE_SUBSTITUTION'"
            )
        finally:
            cursor.close()

    def supports_skip_locked(self, dialect: Dialect) -> bool:
        version = dialect.server_version_info or (0,)
        is_mariadb = bool(getattr(dialect, "is_mariadb", False))
        return version >= (10, 6) if is_mariadb else version >= (8, 0, 1)

    def upsert(
        self,
        session: Session,
        table: Table,
        rows: Sequence[RowValues],
        keys: Sequence[str],
        update_columns: Sequence[str],
    ) -> None:
        if rows:
            stmt = mysql_insert(table)
            stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in update_columns})
            session.execute(stmt, list(rows))

    def insert_ignore(
        self, session: Session, table: Table, rows: Sequence[RowValues], keys: Sequence[str]
    ) -> None:
        if rows:
            # ON DUPLICATE KEY UPDATE of a key to itself, rather than INSERT IGNORE, which would
            # also swallow errors other than the duplicate key.
            stmt = mysql_insert(table)
            key = keys[0]
            session.execute(stmt.on_duplicate_key_update({key: stmt.inserted[key]}), list(rows))
