"""queue claim indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

The claim query reads ``WHERE deliver_at <= :now ORDER BY deliver_at, id LIMIT 1``; an index on
exactly ``(deliver_at, id)`` serves it as one range scan on every dialect, with no sort step
(PostgreSQL would otherwise add an incremental sort on ``id``). ``execution_id`` gets an index
for ``has_pending_message_for_execution`` and ``purge_workflow``, which recovery calls per
workflow.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_queue_messages_deliver_at_id", "queue_messages", ["deliver_at", "id"], unique=False)
    op.drop_index("ix_queue_messages_deliver_at", table_name="queue_messages")
    op.create_index("ix_queue_messages_execution_id", "queue_messages", ["execution_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_queue_messages_execution_id", table_name="queue_messages")
    op.create_index("ix_queue_messages_deliver_at", "queue_messages", ["deliver_at"], unique=False)
    op.drop_index("ix_queue_messages_deliver_at_id", table_name="queue_messages")
