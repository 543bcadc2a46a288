"""the engine's control flow: stage fields, claims, signals, admission locks

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

What Stabilize's 0.33 engine keeps in its store beyond the first schema (issue 12):

- ``stages``: join and split semantics, multi-instance configuration, deferred-choice group,
  milestone, mutex key and cancel region, written when a stage is added. Existing rows take the
  engine's defaults (AND join and split, no threshold, no conditions).
- ``workflows.queue_table``: the queue table the workflow's messages go to.
- ``stage_claims``: one row per (workflow, claim key), the stage holding it; the engine's mutex and
  deferred choice (``acquire_claim``). Removed with its workflow.
- ``workflow_signals``: signals sent to a stage before it was ready for them, until consumed.
- ``admission_locks``: a row per admission key, locked by the transaction that admits workflows
  of a concurrency-limited pipeline config, so admissions of one key run one at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: (name, type, server default) of each new stage column; a default fills the rows already there.
STAGE_COLUMNS = [
    ("join_type", sa.String(length=32), "AND"),
    ("join_threshold", sa.Integer(), "0"),
    ("split_type", sa.String(length=32), "AND"),
    ("split_conditions", sa.JSON(), "{}"),
    ("mi_config", sa.JSON(), None),
    ("deferred_choice_group", sa.String(length=255), None),
    ("milestone_ref_id", sa.String(length=255), None),
    ("milestone_status", sa.String(length=32), None),
    ("mutex_key", sa.String(length=255), None),
    ("cancel_region", sa.String(length=255), None),
]


def _default(column_type: sa.types.TypeEngine[object], value: str) -> sa.TextClause | str:
    # MySQL 8 takes a default for a JSON column only as an expression in parentheses (MariaDB
    # takes both); SQLite's ADD COLUMN takes no expression, only the literal.
    if isinstance(column_type, sa.JSON) and op.get_context().dialect.name == "mysql":
        return sa.text(f"('{value}')")
    return value


def _table_options() -> dict[str, str]:
    """MariaDB/MySQL: InnoDB, utf8mb4, a binary NO PAD collation (as migration 0001 explains)."""
    context = op.get_context()
    if getattr(context.dialect, "is_mariadb", False):
        collation = "utf8mb4_nopad_bin"
    elif context.as_sql:
        collation = "/*!80000 utf8mb4_0900_bin */ /*M!100202 utf8mb4_nopad_bin */"
    else:
        collation = "utf8mb4_0900_bin"
    options = {"engine": "InnoDB", "charset": "utf8mb4", "collate": collation}
    return {f"{prefix}_{key}": value for prefix in ("mysql", "mariadb") for key, value in options.items()}


def upgrade() -> None:
    # ADD COLUMN copies no table on any dialect (nor needs a live database for --sql on SQLite).
    for name, column_type, default in STAGE_COLUMNS:
        server_default = None if default is None else _default(column_type, default)
        op.add_column(
            "stages",
            sa.Column(name, column_type, nullable=default is None, server_default=server_default),
        )
    op.add_column("workflows", sa.Column("queue_table", sa.String(length=255), nullable=True))

    op.create_table(
        "stage_claims",
        sa.Column("workflow_id", sa.String(length=26), nullable=False),
        sa.Column("claim_key", sa.String(length=255), nullable=False),
        sa.Column("stage_id", sa.String(length=26), nullable=False),
        sa.Column("claimed_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_stage_claims_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workflow_id", "claim_key", name=op.f("pk_stage_claims")),
        **_table_options(),
    )
    op.create_table(
        "workflow_signals",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=26), nullable=False),
        sa.Column("stage_ref_id", sa.String(length=255), nullable=False),
        sa.Column("signal_name", sa.String(length=255), nullable=False),
        sa.Column("signal_data", sa.JSON(), nullable=False),
        sa.Column("consumed", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("consumed_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_workflow_signals_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_signals")),
        **_table_options(),
    )
    op.create_index(
        "ix_workflow_signals_workflow_id_stage_ref_id_consumed",
        "workflow_signals",
        ["workflow_id", "stage_ref_id", "consumed"],
        unique=False,
    )
    op.create_table(
        "admission_locks",
        sa.Column("lock_key", sa.String(length=255), nullable=False),
        sa.Column("locked_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("lock_key", name=op.f("pk_admission_locks")),
        **_table_options(),
    )


def downgrade() -> None:
    op.drop_table("admission_locks")
    # Its index goes with it (MariaDB refuses to drop an index its foreign key uses).
    op.drop_table("workflow_signals")
    op.drop_table("stage_claims")
    # Plain DROP COLUMN (SQLite 3.35+ has it): a batch copy of ``stages`` would drop the old table,
    # and with foreign keys on, that cascades to every task and edge.
    op.drop_column("workflows", "queue_table")
    for name, _, _ in reversed(STAGE_COLUMNS):
        op.drop_column("stages", name)
