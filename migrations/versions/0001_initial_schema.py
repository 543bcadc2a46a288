"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-29

Every table of the store and the queue. Times are epoch-ms BIGINTs; JSON documents are JSONB
on PostgreSQL. Written out in full here (no ORM import): a migration freezes the schema of its day.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: MySQL/MariaDB TEXT holds 64 KiB only; the other dialects' TEXT is unbounded.
LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


#: Offline SQL (``--sql``) for a ``mysql://`` URL, whose server may be MySQL 8 or MariaDB: each
#: server runs only its own executable comment (MySQL runs ``/*!80000 ...*/`` and skips ``/*M!``;
#: MariaDB skips MySQL's 5.7+ version comments and runs ``/*M!100202 ...*/``), so one script
#: applies on both. See the servers' "executable comments" documentation.
EITHER_SERVER_COLLATION = "/*!80000 utf8mb4_0900_bin */ /*M!100202 utf8mb4_nopad_bin */"


def mysql_options() -> dict[str, str]:
    """InnoDB; utf8mb4 for all of Unicode; a binary NO PAD collation so ids and ref ids compare
    exactly, as on the other dialects ('a' != 'A', and 'a' != 'a ', which PAD SPACE collations
    such as utf8mb4_bin call equal): utf8mb4_nopad_bin on MariaDB, utf8mb4_0900_bin on MySQL 8,
    which has no utf8mb4_nopad_bin. Other dialects ignore these options."""
    context = op.get_context()
    if getattr(context.dialect, "is_mariadb", False):
        collation = "utf8mb4_nopad_bin"
    elif context.as_sql:  # offline: no server to ask which one this is
        collation = EITHER_SERVER_COLLATION
    else:
        collation = "utf8mb4_0900_bin"
    options = {"engine": "InnoDB", "charset": "utf8mb4", "collate": collation}
    # The same options under both prefixes: a mariadb:// URL reads only the mariadb_ ones.
    return {f"{prefix}_{key}": value for prefix in ("mysql", "mariadb") for key, value in options.items()}


def upgrade() -> None:
    op.create_table(
        "processed_messages",
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("handler_type", sa.String(length=255), nullable=True),
        sa.Column("execution_id", sa.String(length=26), nullable=True),
        sa.Column("processed_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_processed_messages")),
        **mysql_options(),
    )
    op.create_index(
        "ix_processed_messages_processed_at", "processed_messages", ["processed_at"], unique=False
    )

    op.create_table(
        "queue_dead_letters",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("message_type", sa.String(length=255), nullable=False),
        sa.Column("payload", JSON_DOCUMENT, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.String(length=26), nullable=True),
        sa.Column("task_id", sa.String(length=26), nullable=True),
        sa.Column("last_error", LONG_TEXT, nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("failed_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_dead_letters")),
        sa.UniqueConstraint("message_id", name=op.f("uq_queue_dead_letters_message_id")),
        **mysql_options(),
    )
    op.create_index("ix_queue_dead_letters_failed_at", "queue_dead_letters", ["failed_at"], unique=False)

    op.create_table(
        "queue_messages",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("message_type", sa.String(length=255), nullable=False),
        sa.Column("payload", JSON_DOCUMENT, nullable=False),
        sa.Column("deliver_at", sa.BigInteger(), nullable=False),
        sa.Column("locked_until", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.String(length=26), nullable=True),
        sa.Column("task_id", sa.String(length=26), nullable=True),
        sa.Column("last_error", LONG_TEXT, nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_messages")),
        sa.UniqueConstraint("message_id", name=op.f("uq_queue_messages_message_id")),
        **mysql_options(),
    )
    op.create_index("ix_queue_messages_deliver_at", "queue_messages", ["deliver_at"], unique=False)
    op.create_index("ix_queue_messages_task_id", "queue_messages", ["task_id"], unique=False)

    op.create_table(
        "workflows",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("application", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("context", JSON_DOCUMENT, nullable=False),
        sa.Column("trigger", JSON_DOCUMENT, nullable=False),
        sa.Column("start_time", sa.BigInteger(), nullable=True),
        sa.Column("end_time", sa.BigInteger(), nullable=True),
        sa.Column("start_time_expiry", sa.BigInteger(), nullable=True),
        sa.Column("is_canceled", sa.Boolean(), nullable=False),
        sa.Column("canceled_by", sa.String(length=255), nullable=True),
        sa.Column("cancellation_reason", LONG_TEXT, nullable=True),
        sa.Column("paused", JSON_DOCUMENT, nullable=True),
        sa.Column("pipeline_config_id", sa.String(length=255), nullable=True),
        sa.Column("is_limit_concurrent", sa.Boolean(), nullable=False),
        sa.Column("max_concurrent_executions", sa.Integer(), nullable=False),
        sa.Column("keep_waiting_pipelines", sa.Boolean(), nullable=False),
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("config_version", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflows")),
        **mysql_options(),
    )
    op.create_index(
        "ix_workflows_application_start_time", "workflows", ["application", "start_time"], unique=False
    )
    op.create_index(
        "ix_workflows_pipeline_config_id_start_time",
        "workflows",
        ["pipeline_config_id", "start_time"],
        unique=False,
    )
    op.create_index("ix_workflows_status_end_time", "workflows", ["status", "end_time"], unique=False)

    op.create_table(
        "stages",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("workflow_id", sa.String(length=26), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("ref_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("context", JSON_DOCUMENT, nullable=False),
        sa.Column("outputs", JSON_DOCUMENT, nullable=False),
        sa.Column("parent_stage_id", sa.String(length=26), nullable=True),
        sa.Column("synthetic_stage_owner", sa.String(length=32), nullable=True),
        sa.Column("start_time", sa.BigInteger(), nullable=True),
        sa.Column("end_time", sa.BigInteger(), nullable=True),
        sa.Column("start_time_expiry", sa.BigInteger(), nullable=True),
        sa.Column("scheduled_time", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_stages_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stages")),
        **mysql_options(),
    )
    op.create_index("ix_stages_parent_stage_id", "stages", ["parent_stage_id"], unique=False)
    op.create_index("ix_stages_workflow_id_position", "stages", ["workflow_id", "position"], unique=False)
    op.create_index("uq_stages_workflow_id_ref_id", "stages", ["workflow_id", "ref_id"], unique=True)

    op.create_table(
        "stage_edges",
        sa.Column("workflow_id", sa.String(length=26), nullable=False),
        sa.Column("ref_id", sa.String(length=255), nullable=False),
        sa.Column("requisite_ref_id", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id", "ref_id"],
            ["stages.workflow_id", "stages.ref_id"],
            name=op.f("fk_stage_edges_workflow_id_stages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workflow_id", "ref_id", "requisite_ref_id", name=op.f("pk_stage_edges")),
        **mysql_options(),
    )
    op.create_index(
        "ix_stage_edges_workflow_id_requisite_ref_id",
        "stage_edges",
        ["workflow_id", "requisite_ref_id"],
        unique=False,
    )

    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("stage_id", sa.String(length=26), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("implementing_class", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("start_time", sa.BigInteger(), nullable=True),
        sa.Column("end_time", sa.BigInteger(), nullable=True),
        sa.Column("stage_start", sa.Boolean(), nullable=False),
        sa.Column("stage_end", sa.Boolean(), nullable=False),
        sa.Column("loop_start", sa.Boolean(), nullable=False),
        sa.Column("loop_end", sa.Boolean(), nullable=False),
        sa.Column("task_exception_details", JSON_DOCUMENT, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["stage_id"], ["stages.id"], name=op.f("fk_tasks_stage_id_stages"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        **mysql_options(),
    )
    op.create_index("ix_tasks_stage_id_position", "tasks", ["stage_id", "position"], unique=False)


def downgrade() -> None:
    # Indexes and constraints go with their tables; children before parents.
    op.drop_table("tasks")
    op.drop_table("stage_edges")
    op.drop_table("stages")
    op.drop_table("workflows")
    op.drop_table("queue_messages")
    op.drop_table("queue_dead_letters")
    op.drop_table("processed_messages")
