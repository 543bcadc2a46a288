"""The PostgreSQL preset."""

from __future__ import annotations

from typing import Any

from stabilize.persistence.sql.store import SqlWorkflowStore


class PostgresWorkflowStore(SqlWorkflowStore):
    """``SqlWorkflowStore`` on PostgreSQL (``postgresql://`` and ``postgres://`` URLs use
    psycopg 3), with upstream Stabilize's constructor (``connection_string=``, ``create_tables=``).

    Args:
        connection_string: the database URL.
        create_tables: upgrade the schema to the newest migration first.
        **options: ``SqlWorkflowStore``'s keyword-only options (``operation_timeout``, ...).
    """

    def __init__(self, connection_string: str, create_tables: bool = False, **options: Any) -> None:
        """Open the store on ``connection_string``; see the class for the arguments."""
        super().__init__(connection_string, create_tables=create_tables, **options)
