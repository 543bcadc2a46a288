"""PostgreSQL through psycopg 3."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import URL, Dialect, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from stabilize.persistence.sql.dialects.base import GenericProfile, RowValues


class PostgresProfile(GenericProfile):
    name = "postgresql"

    def engine_options(self, url: URL) -> dict[str, Any]:
        return {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 10}

    def supports_skip_locked(self, dialect: Dialect) -> bool:
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
            stmt = pg_insert(table)
            stmt = stmt.on_conflict_do_update(
                index_elements=list(keys), set_={c: stmt.excluded[c] for c in update_columns}
            )
            session.execute(stmt, list(rows))

    def insert_ignore(
        self, session: Session, table: Table, rows: Sequence[RowValues], keys: Sequence[str]
    ) -> None:
        if rows:
            session.execute(pg_insert(table).on_conflict_do_nothing(index_elements=list(keys)), list(rows))
