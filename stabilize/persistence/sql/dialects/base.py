"""What differs between databases, behind one small interface chosen once per engine.

Query code asks a profile for a capability (an upsert, an insert that ignores duplicates, whether
``SKIP LOCKED`` exists); it never asks for a dialect's name. ``GenericProfile`` does everything
with portable SQL so an unknown SQLAlchemy dialect still works, only less efficiently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import URL, Connection, Dialect, Table, bindparam, insert, select, tuple_, update
from sqlalchemy.orm import Session

RowValues = dict[str, Any]


class GenericProfile:
    """Portable behaviour; subclasses override only what their database does better."""

    #: SQLAlchemy dialect name this profile serves (``engine.dialect.name``).
    name = "generic"

    def prepare_url(self, url: URL) -> URL:
        """Add driver options the store relies on (a charset, say) when the URL lacks them."""
        return url

    def engine_options(self, url: URL) -> dict[str, Any]:
        """Keyword arguments for ``create_engine``."""
        return {"pool_pre_ping": True}

    def on_connect(self, dbapi_connection: Any) -> None:
        """Per-connection settings, run for every new DBAPI connection."""

    def on_begin(self, connection: Connection) -> bool:
        """Start a transaction the dialect's own way; return False to let the driver do it."""
        return False

    def supports_skip_locked(self, dialect: Dialect) -> bool:
        """Whether ``SELECT ... FOR UPDATE SKIP LOCKED`` works on this server."""
        return False

    def upsert(
        self,
        session: Session,
        table: Table,
        rows: Sequence[RowValues],
        keys: Sequence[str],
        update_columns: Sequence[str],
    ) -> None:
        """Insert ``rows``, or update ``update_columns`` of the rows whose ``keys`` exist."""
        if not rows:
            return
        existing = self._existing_keys(session, table, rows, keys)
        new = [r for r in rows if tuple(r[k] for k in keys) not in existing]
        old = [r for r in rows if tuple(r[k] for k in keys) in existing]
        if new:
            session.execute(insert(table), new)
        if old:
            key_params = {k: f"_key_{k}" for k in keys}

            stmt = (
                update(table)
                .where(*(table.c[k] == bindparam(p) for k, p in key_params.items()))
                .values({c: bindparam(c) for c in update_columns})
            )
            session.execute(stmt, [{**{p: r[k] for k, p in key_params.items()}, **r} for r in old])

    def insert_ignore(
        self, session: Session, table: Table, rows: Sequence[RowValues], keys: Sequence[str]
    ) -> None:
        """Insert the rows whose ``keys`` are not stored yet; leave the others as they are."""
        if not rows:
            return
        existing = self._existing_keys(session, table, rows, keys)
        new = [r for r in rows if tuple(r[k] for k in keys) not in existing]
        if new:
            session.execute(insert(table), new)

    @staticmethod
    def _existing_keys(
        session: Session, table: Table, rows: Sequence[RowValues], keys: Sequence[str]
    ) -> set[tuple[Any, ...]]:
        columns = [table.c[k] for k in keys]
        wanted = [tuple(r[k] for k in keys) for r in rows]
        found = session.execute(select(*columns).where(tuple_(*columns).in_(wanted))).all()
        return {tuple(row) for row in found}
