"""The SQLite preset: the embedded default."""

from __future__ import annotations

from typing import Any

from stabilize.persistence.sql.store import SqlWorkflowStore


class SqliteWorkflowStore(SqlWorkflowStore):
    """``SqlWorkflowStore`` on a SQLite file (``sqlite:///path``, a bare path) or
    ``sqlite:///:memory:``, with upstream Stabilize's constructor (``connection_string=``,
    ``create_tables=``).

    Args:
        connection_string: the database URL or file path.
        create_tables: upgrade the schema to the newest migration first.
        **options: ``SqlWorkflowStore``'s keyword-only options (``operation_timeout``, ...).
    """

    def __init__(
        self, connection_string: str = "sqlite:///stabilize.db", create_tables: bool = False, **options: Any
    ) -> None:
        """Open the store on ``connection_string`` (``stabilize.db`` in the working directory by
        default); see the class for the arguments.
        """
        super().__init__(connection_string, create_tables=create_tables, **options)
