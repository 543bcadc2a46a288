"""The SQLite preset: the embedded default."""

from __future__ import annotations

from stabilize.persistence.sql.store import SqlWorkflowStore


class SqliteWorkflowStore(SqlWorkflowStore):
    """``SqlWorkflowStore`` on a SQLite file (``sqlite:///path``, a bare path) or ``sqlite:///:memory:``."""

    def __init__(
        self, connection_string: str = "sqlite:///stabilize.db", create_tables: bool = False
    ) -> None:
        super().__init__(connection_string, create_tables=create_tables)
