"""Statement builders shared by the store's methods; no Session, no execution here."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select

from stabilize.persistence.sql.rows import StageEdgeRow, StageRow, TaskRow, WorkflowRow
from stabilize.persistence.store.interface import WorkflowCriteria


def ancestor_refs(workflow_id: str, ref_id: str) -> Select[str]:
    """Ref ids of every transitive requisite of ``ref_id`` (a recursive CTE over the edges).

    ``UNION`` (not ``UNION ALL``) makes each ancestor appear once, so diamonds stay linear in the
    number of edges and a cycle ends instead of recursing forever.
    """
    edge = StageEdgeRow.__table__
    seed = select(edge.c.requisite_ref_id.label("ref_id")).where(
        edge.c.workflow_id == workflow_id, edge.c.ref_id == ref_id
    )
    ancestors = seed.cte("ancestors", recursive=True)
    step = (
        select(edge.c.requisite_ref_id)
        .join(ancestors, edge.c.ref_id == ancestors.c.ref_id)
        .where(edge.c.workflow_id == workflow_id)
    )
    ancestors = ancestors.union(step)
    return select(ancestors.c.ref_id).where(ancestors.c.ref_id != ref_id)


def ancestor_outputs(workflow_id: str, ref_id: str) -> Select[str, dict[str, Any]]:
    refs = ancestor_refs(workflow_id, ref_id).subquery()
    return select(StageRow.ref_id, StageRow.outputs).where(
        StageRow.workflow_id == workflow_id, StageRow.ref_id.in_(select(refs.c.ref_id))
    )


def ancestor_edges(workflow_id: str, ref_id: str) -> Select[str, str]:
    refs = ancestor_refs(workflow_id, ref_id).subquery()
    return select(StageEdgeRow.ref_id, StageEdgeRow.requisite_ref_id).where(
        StageEdgeRow.workflow_id == workflow_id, StageEdgeRow.ref_id.in_(select(refs.c.ref_id))
    )


def upstream_filter(workflow_id: str, ref_id: str) -> ColumnElement[bool]:
    requisites = select(StageEdgeRow.requisite_ref_id).where(
        StageEdgeRow.workflow_id == workflow_id, StageEdgeRow.ref_id == ref_id
    )
    return and_(StageRow.workflow_id == workflow_id, StageRow.ref_id.in_(requisites))


def downstream_filter(workflow_id: str, ref_id: str) -> ColumnElement[bool]:
    dependents = select(StageEdgeRow.ref_id).where(
        StageEdgeRow.workflow_id == workflow_id, StageEdgeRow.requisite_ref_id == ref_id
    )
    return and_(StageRow.workflow_id == workflow_id, StageRow.ref_id.in_(dependents))


def stages_where(condition: ColumnElement[bool]) -> Select[StageRow]:
    return select(StageRow).where(condition).order_by(StageRow.workflow_id, StageRow.position, StageRow.id)


def edges_of_stages(condition: ColumnElement[bool]) -> Select[StageEdgeRow]:
    """The requisite edges of the stages matching ``condition`` (joined, not one query each)."""
    return (
        select(StageEdgeRow)
        .join(
            StageRow,
            and_(StageRow.workflow_id == StageEdgeRow.workflow_id, StageRow.ref_id == StageEdgeRow.ref_id),
        )
        .where(condition)
    )


def tasks_of_stages(condition: ColumnElement[bool]) -> Select[TaskRow]:
    return (
        select(TaskRow)
        .join(StageRow, StageRow.id == TaskRow.stage_id)
        .where(condition)
        .order_by(TaskRow.stage_id, TaskRow.position)
    )


def workflow_page(
    column: ColumnElement[str | None], value: str, criteria: WorkflowCriteria
) -> Select[WorkflowRow]:
    """One page of workflows, newest first: not started, then start time and id descending."""
    stmt = select(WorkflowRow).where(column == value)
    if criteria.statuses:
        stmt = stmt.where(WorkflowRow.status.in_(sorted(s.name for s in criteria.statuses)))
    not_started = WorkflowRow.start_time.is_(None)
    if criteria.start_time_after is not None:
        stmt = stmt.where(or_(not_started, WorkflowRow.start_time >= criteria.start_time_after))
    if criteria.start_time_before is not None:
        stmt = stmt.where(or_(not_started, WorkflowRow.start_time <= criteria.start_time_before))
    stmt = stmt.order_by(not_started.desc(), WorkflowRow.start_time.desc(), WorkflowRow.id.desc())
    if criteria.page_size:
        stmt = stmt.limit(criteria.page_size)
    return stmt


__all__ = [
    "ancestor_edges",
    "ancestor_outputs",
    "ancestor_refs",
    "downstream_filter",
    "edges_of_stages",
    "stages_where",
    "tasks_of_stages",
    "upstream_filter",
    "workflow_page",
]
