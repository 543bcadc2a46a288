"""The PostgreSQL preset."""

from __future__ import annotations

from stabilize.persistence.sql.store import SqlWorkflowStore


class PostgresWorkflowStore(SqlWorkflowStore):
    """``SqlWorkflowStore`` on PostgreSQL; ``postgresql://`` and ``postgres://`` URLs use psycopg 3."""

    def __init__(self, connection_string: str, create_tables: bool = False) -> None:
        super().__init__(connection_string, create_tables=create_tables)
