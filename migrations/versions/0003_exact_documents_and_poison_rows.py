"""exact documents, poison rows, stage ids on queue rows

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

- PostgreSQL documents become ``json`` (text kept as written) instead of ``jsonb``: JSONB stores
  numbers as NUMERIC, so the float 1e16 came back as the int 10000000000000000 and -0.0 as 0.0;
  CONTRACT.md section 7 promises every finite float back as the same float. The other dialects'
  JSON columns already keep the text.
- ``queue_dead_letters.raw_payload``: what a row held when it could not be read as a message (not
  JSON, JSON ``null``, numbers no decoder takes), kept as text; ``payload`` is then JSON ``null``.
- ``queue_messages.stage_id``: the stage a message names, in a column of its own (indexed), so
  ``has_pending_message_for_stage`` compares ids exactly, as every other id comparison does, and
  not text pulled out of the payload (which MariaDB compared with trailing-space padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, column, nullable) of every document column.
DOCUMENTS = [
    ("workflows", "context", False),
    ("workflows", "trigger", False),
    ("workflows", "paused", True),
    ("stages", "context", False),
    ("stages", "outputs", False),
    ("tasks", "task_exception_details", False),
    ("queue_messages", "payload", False),
    ("queue_dead_letters", "payload", False),
]
LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def _retype_documents(to: sa.types.TypeEngine[object], using: str) -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table, column, nullable in DOCUMENTS:
        op.alter_column(
            table,
            column,
            type_=to,
            existing_nullable=nullable,
            postgresql_using=f"{column}::{using}",
        )


def upgrade() -> None:
    # ADD COLUMN needs no table copy on any dialect (nor a live database for --sql on SQLite).
    _retype_documents(postgresql.JSON(), "json")
    op.add_column("queue_dead_letters", sa.Column("raw_payload", LONG_TEXT, nullable=True))
    op.add_column("queue_messages", sa.Column("stage_id", sa.String(length=26), nullable=True))
    op.create_index("ix_queue_messages_stage_id", "queue_messages", ["stage_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_queue_messages_stage_id", table_name="queue_messages")
    with op.batch_alter_table("queue_messages") as batch:
        batch.drop_column("stage_id")
    with op.batch_alter_table("queue_dead_letters") as batch:
        batch.drop_column("raw_payload")
    _retype_documents(postgresql.JSONB(), "jsonb")
