"""``runs list`` without a filter: the newest runs of every application, through the store's pages."""

from __future__ import annotations

from sqlalchemy import select

from stabilize.models.workflow import Workflow
from stabilize.persistence.sql.rows import WorkflowRow
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.persistence.store.interface import WorkflowCriteria


def newest_first(workflow: Workflow) -> tuple[bool, int, str]:
    """The store's listing order as a sort key: not started first, then start time, then id, both
    descending (sort with ``reverse=True``)."""
    return (workflow.start_time is None, workflow.start_time or 0, workflow.id)


def all_workflows(store: SqlWorkflowStore, criteria: WorkflowCriteria) -> list[Workflow]:
    """One page across applications: each application's own newest page (the store's
    ``retrieve_by_application``), merged in the same order and cut to the page size."""
    with store.engine.connect() as connection:
        applications = connection.scalars(select(WorkflowRow.application).distinct()).all()
    merged: list[Workflow] = []
    for application in applications:
        merged.extend(store.retrieve_by_application(application, criteria))
    merged.sort(key=newest_first, reverse=True)
    return merged[: criteria.page_size] if criteria.page_size else merged
