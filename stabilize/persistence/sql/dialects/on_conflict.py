"""``INSERT ... ON CONFLICT``: the upsert PostgreSQL and SQLite share, in one batched statement."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Table

from stabilize.persistence.sql.dialects.base import GenericProfile, RowValues
from stabilize.persistence.sql.prepared import Cursor, Prepared

#: The dialect's ``insert`` (``sqlalchemy.dialects.postgresql.insert`` or its SQLite twin).
DialectInsert = Callable[[Table], Any]


class OnConflictProfile(GenericProfile):
    """Upserts through the dialect's ``on_conflict_do_update`` / ``on_conflict_do_nothing``."""

    dialect_insert: DialectInsert

    def upsert(
        self,
        cursor: Cursor,
        table: Table,
        rows: Sequence[RowValues],
        keys: tuple[str, ...],
        update_columns: tuple[str, ...],
    ) -> None:
        cursor.run_many(_upsert(type(self).dialect_insert, table, keys, update_columns), rows)

    def insert_ignore(
        self, cursor: Cursor, table: Table, rows: Sequence[RowValues], keys: tuple[str, ...]
    ) -> None:
        cursor.run_many(_insert_ignore(type(self).dialect_insert, table, keys), rows)


# Built once per table and columns: building ``excluded`` costs more than the write itself.
@lru_cache(maxsize=64)
def _upsert(
    dialect_insert: DialectInsert, table: Table, keys: tuple[str, ...], update_columns: tuple[str, ...]
) -> Prepared:
    stmt = dialect_insert(table)
    set_ = {c: stmt.excluded[c] for c in update_columns}
    return Prepared(stmt.on_conflict_do_update(index_elements=list(keys), set_=set_))


@lru_cache(maxsize=64)
def _insert_ignore(dialect_insert: DialectInsert, table: Table, keys: tuple[str, ...]) -> Prepared:
    return Prepared(dialect_insert(table).on_conflict_do_nothing(index_elements=list(keys)))
