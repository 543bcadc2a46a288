"""Listings: retrieve_by_application / retrieve_by_pipeline_config_id and count_by_application."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stabilize.models import Workflow, WorkflowStatus
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.persistence.store import WorkflowCriteria
from tests.integration.builders import back_references_ok, chain

LISTINGS = ["application", "pipeline_config_id"]


def listing(store: SqlWorkflowStore, by: str, criteria: WorkflowCriteria | None = None) -> list[Workflow]:
    result: Iterator[Workflow]
    if by == "application":
        result = store.retrieve_by_application("listed", criteria)
    else:
        result = store.retrieve_by_pipeline_config_id("cfg-listed", criteria)
    return list(result)


def populate(store: SqlWorkflowStore) -> list[Workflow]:
    """Listed workflows with start times (ties included), statuses and some not started, plus
    workflows of another application / pipeline config that must never show up."""
    plan: list[tuple[int | None, WorkflowStatus]] = [
        (300, WorkflowStatus.SUCCEEDED),
        (None, WorkflowStatus.NOT_STARTED),
        (100, WorkflowStatus.TERMINAL),
        (300, WorkflowStatus.RUNNING),  # tie with the first: id descending decides
        (200, WorkflowStatus.RUNNING),
        (None, WorkflowStatus.BUFFERED),
        (400, WorkflowStatus.SUCCEEDED),
        (200, WorkflowStatus.SUCCEEDED),
        (50, WorkflowStatus.CANCELED),
    ]
    listed: list[Workflow] = []
    for start_time, status in plan:
        wf = chain(2, 2, application="listed")
        wf.pipeline_config_id = "cfg-listed"
        wf.start_time = start_time
        wf.status = status
        store.store(wf)
        listed.append(wf)
        decoy = chain(1, 1, application="other")
        decoy.pipeline_config_id = "cfg-other"
        decoy.start_time = start_time
        store.store(decoy)
    return listed


def newest_first(workflows: list[Workflow]) -> list[str]:
    """The contract's order: not started first, then start time descending, then id descending."""
    ordered = sorted(workflows, key=lambda w: (w.start_time is None, w.start_time or 0, w.id), reverse=True)
    return [w.id for w in ordered]


@pytest.mark.parametrize("by", LISTINGS)
def test_newest_first_with_whole_workflows(store: SqlWorkflowStore, by: str) -> None:
    listed = populate(store)

    page = listing(store, by)

    assert [w.id for w in page] == newest_first(listed)
    assert [w.start_time for w in page][:2] == [None, None]
    assert [w.start_time for w in page][2:] == [400, 300, 300, 200, 200, 100, 50]
    by_id = {w.id: w for w in listed}
    for got in page:
        assert got == by_id[got.id]  # stages and tasks loaded
        assert back_references_ok(got)


@pytest.mark.parametrize("by", LISTINGS)
def test_page_size_limits_and_none_or_zero_means_all(store: SqlWorkflowStore, by: str) -> None:
    listed = populate(store)
    expected = newest_first(listed)

    assert [w.id for w in listing(store, by, WorkflowCriteria(page_size=3))] == expected[:3]
    assert [w.id for w in listing(store, by, WorkflowCriteria(page_size=1))] == expected[:1]
    assert [w.id for w in listing(store, by, WorkflowCriteria(page_size=None))] == expected
    assert [w.id for w in listing(store, by, WorkflowCriteria(page_size=0))] == expected
    assert [w.id for w in listing(store, by, WorkflowCriteria(page_size=100))] == expected


@pytest.mark.parametrize("by", LISTINGS)
def test_default_page_size_is_twenty(store: SqlWorkflowStore, by: str) -> None:
    created: list[Workflow] = []
    for i in range(23):
        wf = chain(1, 0, application="listed")
        wf.pipeline_config_id = "cfg-listed"
        wf.start_time = 1_000 + i
        store.store(wf)
        created.append(wf)

    page = listing(store, by)

    assert [w.id for w in page] == newest_first(created)[:20]
    assert store.count_by_application("listed") == 23


@pytest.mark.parametrize("by", LISTINGS)
def test_statuses_filter(store: SqlWorkflowStore, by: str) -> None:
    listed = populate(store)
    wanted = {WorkflowStatus.RUNNING, WorkflowStatus.NOT_STARTED}

    page = listing(store, by, WorkflowCriteria(statuses=wanted))

    assert [w.id for w in page] == newest_first([w for w in listed if w.status in wanted])
    assert len(page) == 3
    only_one = listing(store, by, WorkflowCriteria(statuses={WorkflowStatus.CANCELED}))
    assert [w.start_time for w in only_one] == [50]
    assert listing(store, by, WorkflowCriteria(statuses={WorkflowStatus.PAUSED})) == []


@pytest.mark.parametrize("by", LISTINGS)
def test_start_time_window_is_inclusive_and_keeps_not_started(store: SqlWorkflowStore, by: str) -> None:
    listed = populate(store)

    def window(after: int | None, before: int | None) -> list[int | None]:
        criteria = WorkflowCriteria(start_time_after=after, start_time_before=before)
        return [w.start_time for w in listing(store, by, criteria)]

    assert window(200, 300) == [None, None, 300, 300, 200, 200]
    assert window(201, 299) == [None, None]
    assert window(300, None) == [None, None, 400, 300, 300]
    assert window(None, 100) == [None, None, 100, 50]
    assert window(None, None) == [w.start_time for w in listing(store, by)]
    assert len(window(None, None)) == len(listed)


@pytest.mark.parametrize("by", LISTINGS)
def test_criteria_combine(store: SqlWorkflowStore, by: str) -> None:
    populate(store)
    criteria = WorkflowCriteria(
        page_size=2,
        statuses={WorkflowStatus.SUCCEEDED, WorkflowStatus.RUNNING},
        start_time_after=200,
        start_time_before=400,
    )

    page = listing(store, by, criteria)

    assert next((w.start_time, w.status) for w in page) == (400, WorkflowStatus.SUCCEEDED)
    assert [w.start_time for w in page] == [400, 300]


def test_unknown_application_and_config_give_nothing(store: SqlWorkflowStore) -> None:
    populate(store)

    assert list(store.retrieve_by_application("nobody")) == []
    assert list(store.retrieve_by_pipeline_config_id("nothing")) == []
    assert store.count_by_application("nobody") == 0


def test_count_by_application(store: SqlWorkflowStore) -> None:
    listed = populate(store)

    assert store.count_by_application("listed") == len(listed)
    assert store.count_by_application("other") == len(listed)
    store.delete(listed[0].id)
    assert store.count_by_application("listed") == len(listed) - 1
