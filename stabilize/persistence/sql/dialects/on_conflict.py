"""``INSERT ... ON CONFLICT``: the upsert PostgreSQL and SQLite share, in one batched statement."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Executable, Table

from stabilize.persistence.sql.dialects.base import GenericProfile, RowValues, rowcount

#: The dialect's ``insert`` (``sqlalchemy.dialects.postgresql.insert`` or its SQLite twin).
DialectInsert = Callable[[Table], Any]


class OnConflictProfile(GenericProfile):
    """Upserts through the dialect's ``on_conflict_do_update`` / ``on_conflict_do_nothing``."""

    dialect_insert: DialectInsert

    def upsert(
        self,
        connection: Connection,
        table: Table,
        rows: Sequence[RowValues],
        keys: tuple[str, ...],
        update_columns: tuple[str, ...],
    ) -> None:
        """Insert or update all ``rows`` in one executemany of ``INSERT ... ON CONFLICT (keys) DO UPDATE``."""
        connection.execute(_upsert(type(self).dialect_insert, table, keys, update_columns), list(rows))

    def insert_ignore(
        self, connection: Connection, table: Table, rows: Sequence[RowValues], keys: tuple[str, ...]
    ) -> int:
        """Insert each row with ``ON CONFLICT (keys) DO NOTHING``; return how many were inserted."""
        statement = _insert_ignore(type(self).dialect_insert, table, keys)
        return sum(rowcount(connection.execute(statement, row)) for row in rows)


# Built once per table and columns: building ``excluded`` costs more than the write itself.
@lru_cache(maxsize=64)
def _upsert(
    dialect_insert: DialectInsert, table: Table, keys: tuple[str, ...], update_columns: tuple[str, ...]
) -> Executable:
    stmt = dialect_insert(table)
    set_ = {c: stmt.excluded[c] for c in update_columns}
    upsert: Executable = stmt.on_conflict_do_update(index_elements=list(keys), set_=set_)
    return upsert


@lru_cache(maxsize=64)
def _insert_ignore(dialect_insert: DialectInsert, table: Table, keys: tuple[str, ...]) -> Executable:
    # Its row count tells an insert from a duplicate (``preserve_rowcount``: SQLAlchemy keeps an
    # INSERT's row count only when asked).
    statement = dialect_insert(table).on_conflict_do_nothing(index_elements=list(keys))
    ignore: Executable = statement.execution_options(preserve_rowcount=True)
    return ignore
