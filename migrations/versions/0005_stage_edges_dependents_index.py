"""stage edges: the dependents index leads with the requisite

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

``ix_stage_edges_workflow_id_requisite_ref_id`` shared its leading column with the primary key
``(workflow_id, ref_id, requisite_ref_id)``. PostgreSQL's ``ON DELETE CASCADE`` from a stage runs
``DELETE FROM stage_edges WHERE workflow_id = $1 AND ref_id = $2`` once per deleted stage, with a
plan kept for the session; planned while the table was small, both indexes cost the same and the
one that filters by ``workflow_id`` only could win, so every cascade read all of the workflow's
edges: deleting a workflow of 20,000 stages took minutes (past any deadline) instead of a second.
Led by ``requisite_ref_id``, the index serves what it is for (the stages waiting for a ref id,
``queries.DOWNSTREAM``) and can no longer be taken for the primary key's lookups.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_stage_edges_requisite_ref_id_workflow_id",
        "stage_edges",
        ["requisite_ref_id", "workflow_id"],
        unique=False,
    )
    op.drop_index("ix_stage_edges_workflow_id_requisite_ref_id", table_name="stage_edges")


def downgrade() -> None:
    op.create_index(
        "ix_stage_edges_workflow_id_requisite_ref_id",
        "stage_edges",
        ["workflow_id", "requisite_ref_id"],
        unique=False,
    )
    op.drop_index("ix_stage_edges_requisite_ref_id_workflow_id", table_name="stage_edges")
