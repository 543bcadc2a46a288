"""The store's read statements; no Session, no execution here.

Reads select table columns (Core rows, not ORM entities: a row becomes a domain object once, in
``mapping``), and every statement is built once, at import (or once per shape of criteria), with
bound parameters: executing a prebuilt statement skips building it, and SQLAlchemy finds its
compiled form in the engine's cache at once (its cache key is memoized on the statement).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CompoundSelect,
    Select,
    String,
    and_,
    bindparam,
    literal,
    null,
    or_,
    select,
    true,
    type_coerce,
    union_all,
)

from stabilize.persistence.sql.rows import StageEdgeRow, StageRow, TaskRow, WorkflowRow, table_of
from stabilize.persistence.store.interface import WorkflowCriteria

WORKFLOWS = table_of(WorkflowRow)
STAGES = table_of(StageRow)
EDGES = table_of(StageEdgeRow)
TASKS = table_of(TaskRow)


def _ancestors(workflow_id: Any, ref_id: Any, lateral: bool = False) -> Any:
    """Ref ids of every transitive requisite of ``ref_id`` (a recursive CTE over the edges).

    ``UNION`` (not ``UNION ALL``) makes each ancestor appear once, so diamonds stay linear in the
    number of edges and a cycle ends instead of recursing forever. With ``lateral`` each step
    probes the edges of the rows it just found through a LATERAL subquery that the planner cannot
    flatten (``OFFSET 0``), so every step is one primary-key lookup per ancestor: PostgreSQL would
    otherwise hash-join each step with all of the workflow's edges, making a chain of n stages
    cost n times the workflow (see ``GenericProfile.lateral_recursion``).
    """
    seed = select(EDGES.c.requisite_ref_id.label("ref_id")).where(
        EDGES.c.workflow_id == workflow_id, EDGES.c.ref_id == ref_id
    )
    ancestors = seed.cte("ancestors", recursive=True)
    if lateral:
        probe = (
            select(EDGES.c.requisite_ref_id)
            .where(EDGES.c.workflow_id == workflow_id, EDGES.c.ref_id == ancestors.c.ref_id)
            .offset(0)
            .lateral("requisites")
        )
        step = select(probe.c.requisite_ref_id).select_from(ancestors.join(probe, true()))
    else:
        step = (
            select(EDGES.c.requisite_ref_id)
            .join(ancestors, EDGES.c.ref_id == ancestors.c.ref_id)
            .where(EDGES.c.workflow_id == workflow_id)
        )
    return ancestors.union(step)


@lru_cache(maxsize=2)
def ancestor_outputs_and_edges(lateral: bool) -> CompoundSelect[Any]:
    """One round trip for the merge: ``(ref_id, outputs, NULL)`` for each ancestor stage, then
    ``(ref_id, NULL, requisite_ref_id)`` for each requisite edge of an ancestor; only ancestor
    rows are read. Built once per form; parameters: ``workflow_id``, ``ref_id``."""
    workflow_id, ref_id = bindparam("workflow_id", type_=String), bindparam("ref_id", type_=String)
    ancestors = _ancestors(workflow_id, ref_id, lateral)
    found = ancestors.c.ref_id != ref_id
    outputs_column = STAGES.c.outputs.label("outputs")
    no_outputs = type_coerce(null(), STAGES.c.outputs.type)
    same_workflow = (STAGES.c.workflow_id == workflow_id, EDGES.c.workflow_id == workflow_id)
    if lateral:
        # One index probe per ancestor, as in the recursion: PostgreSQL would otherwise hash all
        # of the workflow's stages and edges, however few the ancestors.
        stage = _probe(select(STAGES.c.ref_id, outputs_column), same_workflow[0], STAGES.c.ref_id, ancestors)
        edge = _probe(
            select(EDGES.c.ref_id, EDGES.c.requisite_ref_id), same_workflow[1], EDGES.c.ref_id, ancestors
        )
        outputs = select(stage.c.ref_id, stage.c.outputs, null().label("requisite_ref_id")).select_from(
            ancestors.join(stage, true())
        )
        edges = select(edge.c.ref_id, no_outputs, edge.c.requisite_ref_id).select_from(
            ancestors.join(edge, true())
        )
        return union_all(outputs.where(found), edges.where(found))
    # Joined to the ancestors rather than filtered by ``IN (SELECT ...)``: SQLite runs the join
    # form in half the time on small DAGs, and a sixth less on large ones.
    outputs = (
        select(STAGES.c.ref_id, outputs_column, null().label("requisite_ref_id"))
        .select_from(ancestors.join(STAGES, STAGES.c.ref_id == ancestors.c.ref_id))
        .where(same_workflow[0], found)
    )
    edges = (
        select(EDGES.c.ref_id, no_outputs, EDGES.c.requisite_ref_id)
        .select_from(ancestors.join(EDGES, EDGES.c.ref_id == ancestors.c.ref_id))
        .where(same_workflow[1], found)
    )
    return union_all(outputs, edges)


def _probe(rows: Select[Any], same_workflow: Any, ref: Any, ancestors: Any) -> Any:
    """``rows`` of one ancestor, as a LATERAL subquery the planner cannot flatten (``OFFSET 0``)."""
    return rows.where(same_workflow, ref == ancestors.c.ref_id).offset(0).lateral()


WORKFLOW_BY_ID = select(WORKFLOWS).where(WORKFLOWS.c.id == bindparam("workflow_id"))
WORKFLOW_EXISTS = select(WORKFLOWS.c.id).where(WORKFLOWS.c.id == bindparam("workflow_id"))


class StageSelection:
    """Stages chosen by a condition, with their requisite edges and their tasks: three statements
    built once (at import), whatever the number of stages, run in one snapshot.

    Args:
        condition: which stages, in terms of ``STAGES`` and bound parameters.
        order: how the stages come back.
    """

    def __init__(self, condition: ColumnElement[bool], *order: Any) -> None:
        """Build the three statements (no SQL runs); ``order`` are ``ORDER BY`` terms of the stages."""
        self.stages = select(STAGES).where(condition).order_by(*order)
        self.edges = (
            select(EDGES)
            .join(
                STAGES, and_(STAGES.c.workflow_id == EDGES.c.workflow_id, STAGES.c.ref_id == EDGES.c.ref_id)
            )
            .where(condition)
        )
        self.tasks = (
            select(TASKS)
            .join(STAGES, STAGES.c.id == TASKS.c.stage_id)
            .where(condition)
            .order_by(TASKS.c.stage_id, TASKS.c.position)
        )


_IN_WORKFLOW = STAGES.c.workflow_id == bindparam("workflow_id")
_REF: BindParameter[str] = bindparam("ref_id")

#: A whole workflow, by ``workflow_id``: stages in the order they were added.
WHOLE_WORKFLOW = StageSelection(_IN_WORKFLOW, STAGES.c.position, STAGES.c.id)

#: The direct requisites of ``ref_id`` in ``workflow_id``.
UPSTREAM = StageSelection(
    _IN_WORKFLOW
    & STAGES.c.ref_id.in_(
        select(EDGES.c.requisite_ref_id).where(
            EDGES.c.workflow_id == bindparam("workflow_id"), EDGES.c.ref_id == _REF
        )
    ),
    STAGES.c.position,
    STAGES.c.id,
)
#: The stages of ``workflow_id`` that wait for ``ref_id``.
DOWNSTREAM = StageSelection(
    _IN_WORKFLOW
    & STAGES.c.ref_id.in_(
        select(EDGES.c.ref_id).where(
            EDGES.c.workflow_id == bindparam("workflow_id"), EDGES.c.requisite_ref_id == _REF
        )
    ),
    STAGES.c.position,
    STAGES.c.id,
)
#: The synthetic stages of ``parent_stage_id`` in ``workflow_id``.
SYNTHETIC = StageSelection(
    _IN_WORKFLOW & (STAGES.c.parent_stage_id == bindparam("parent_stage_id")),
    STAGES.c.position,
    STAGES.c.id,
)


def _around_stage() -> StageSelection:
    """``stage_id`` itself, its direct requisites and its synthetic children: ``retrieve_stage``'s
    partial workflow, found from the stage id alone so every statement is built once."""
    stage_id: BindParameter[str] = bindparam("stage_id")
    me = STAGES.alias("me")
    requisites = (
        select(EDGES.c.requisite_ref_id)
        .join(me, and_(me.c.workflow_id == EDGES.c.workflow_id, me.c.ref_id == EDGES.c.ref_id))
        .where(me.c.id == stage_id)
    )
    workflow = select(me.c.workflow_id).where(me.c.id == stage_id).scalar_subquery()
    related = (STAGES.c.workflow_id == workflow) & (
        (STAGES.c.id == stage_id) | (STAGES.c.parent_stage_id == stage_id) | STAGES.c.ref_id.in_(requisites)
    )
    return StageSelection(related, STAGES.c.position, STAGES.c.id)


AROUND_STAGE = _around_stage()
#: The workflow row of ``stage_id``'s workflow.
WORKFLOW_OF_STAGE = (
    select(WORKFLOWS)
    .join(STAGES, STAGES.c.workflow_id == WORKFLOWS.c.id)
    .where(STAGES.c.id == bindparam("stage_id"))
)

#: The same for a page of workflows, by ``workflow_ids`` (an expanding IN list).
_PAGE_IDS: BindParameter[Any] = bindparam("workflow_ids", expanding=True)
PAGE = StageSelection(
    STAGES.c.workflow_id.in_(_PAGE_IDS), STAGES.c.workflow_id, STAGES.c.position, STAGES.c.id
)


def workflow_page(
    column: ColumnElement[str | None] | None, value: str | None, criteria: WorkflowCriteria
) -> tuple[Select[Any], dict[str, Any]]:
    """One page of workflows, newest first (not started, then start time and id descending), of
    those whose ``column`` is ``value`` (None: of every workflow): a statement built once per shape
    of criteria, and its parameters."""
    params: dict[str, Any] = {} if column is None else {"value": value}
    if criteria.statuses:
        params["statuses"] = sorted(s.name for s in criteria.statuses)
    if criteria.start_time_after is not None:
        params["after"] = criteria.start_time_after
    if criteria.start_time_before is not None:
        params["before"] = criteria.start_time_before
    shape = (
        "" if column is None else str(getattr(column, "key", column)),
        bool(criteria.statuses),
        criteria.start_time_after is not None,
        criteria.start_time_before is not None,
        criteria.page_size or 0,
    )
    return _page_statement(*shape), params


@lru_cache(maxsize=256)
def _page_statement(column: str, statuses: bool, after: bool, before: bool, size: int) -> Select[Any]:
    """With a page size, the not-started and the started workflows are each read in index order
    (``(application | pipeline_config_id, start_time, id)``) up to the page size and the two short
    lists merged, so a page never sorts all of an application's workflows."""
    conditions = [WORKFLOWS.c[column] == bindparam("value")] if column else []
    if statuses:
        conditions.append(WORKFLOWS.c.status.in_(bindparam("statuses", expanding=True)))
    not_started = WORKFLOWS.c.start_time.is_(None)
    if after:
        conditions.append(or_(not_started, WORKFLOWS.c.start_time >= bindparam("after")))
    if before:
        conditions.append(or_(not_started, WORKFLOWS.c.start_time <= bindparam("before")))
    if not size:
        return (
            select(WORKFLOWS)
            .where(*conditions)
            .order_by(not_started.desc(), WORKFLOWS.c.start_time.desc(), WORKFLOWS.c.id.desc())
        )
    waiting = (
        select(WORKFLOWS, literal(0).label("started"))
        .where(*conditions, not_started)
        .order_by(WORKFLOWS.c.id.desc())
        .limit(size)
        .subquery()
    )
    running = (
        select(WORKFLOWS, literal(1).label("started"))
        .where(*conditions, WORKFLOWS.c.start_time.is_not(None))
        .order_by(WORKFLOWS.c.start_time.desc(), WORKFLOWS.c.id.desc())
        .limit(size)
        .subquery()
    )
    both = union_all(select(waiting), select(running)).subquery()
    return (
        select(*(both.c[c.key] for c in WORKFLOWS.columns))
        .order_by(both.c.started, both.c.start_time.desc(), both.c.id.desc())
        .limit(size)
    )


__all__ = [
    "AROUND_STAGE",
    "DOWNSTREAM",
    "PAGE",
    "SYNTHETIC",
    "UPSTREAM",
    "WHOLE_WORKFLOW",
    "WORKFLOW_BY_ID",
    "WORKFLOW_EXISTS",
    "WORKFLOW_OF_STAGE",
    "StageSelection",
    "ancestor_outputs_and_edges",
    "workflow_page",
]
