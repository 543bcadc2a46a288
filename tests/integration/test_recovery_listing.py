"""``get_all_pending_workflows``: what the engine's recovery reads at start-up (issue 12, item 3).

Every application's workflows, newest first (not started first, then by start time, then id),
filtered by ``statuses`` and the inclusive start-time window (a workflow not started yet is always
inside it), a page of ``page_size`` (None or 0: all), each workflow whole (stages, requisites and
tasks), in a number of statements that does not grow with the page. On every dialect.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stabilize.errors import ValidationError
from stabilize.models import Workflow, WorkflowStatus
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.persistence.store.interface import WorkflowCriteria
from tests.integration.builders import chain, count_statements

RUNNING, SUCCEEDED = WorkflowStatus.RUNNING, WorkflowStatus.SUCCEEDED


@pytest.fixture
def fresh_store(fresh_url: Callable[[], str]) -> SqlWorkflowStore:
    return SqlWorkflowStore(fresh_url(), create_tables=True)


def stored(store: SqlWorkflowStore, application: str, status: WorkflowStatus, start: int | None) -> Workflow:
    made = chain(3, 2, application=application)
    made.status, made.start_time = status, start
    store.store(made)
    return made


def ids(found: list[Workflow]) -> list[str]:
    return [w.id for w in found]


def test_every_application_newest_first_whole(fresh_store: SqlWorkflowStore) -> None:
    store = fresh_store
    old = stored(store, "a", RUNNING, 1_000)
    new = stored(store, "b", RUNNING, 3_000)
    waiting = stored(store, "c", WorkflowStatus.NOT_STARTED, None)
    middle = stored(store, "a", SUCCEEDED, 2_000)
    found = store.get_all_pending_workflows(WorkflowCriteria(page_size=None))
    assert ids(found) == [waiting.id, new.id, middle.id, old.id]
    first = found[1]
    assert [s.ref_id for s in first.stages] == ["s0", "s1", "s2"]
    assert [len(s.tasks) for s in first.stages] == [2, 2, 2]
    assert first.stages[2].requisite_stage_ref_ids == {"s1"}
    assert all(s.execution is first for s in first.stages)


def test_statuses_and_the_window_filter_and_not_started_is_inside(fresh_store: SqlWorkflowStore) -> None:
    store = fresh_store
    early = stored(store, "a", RUNNING, 1_000)
    edge = stored(store, "b", RUNNING, 2_000)
    late = stored(store, "c", RUNNING, 5_000)
    waiting = stored(store, "d", WorkflowStatus.NOT_STARTED, None)
    done = stored(store, "e", SUCCEEDED, 2_500)
    pending = {RUNNING, WorkflowStatus.NOT_STARTED}
    window = WorkflowCriteria(page_size=0, statuses=pending, start_time_after=2_000, start_time_before=4_000)
    assert ids(store.get_all_pending_workflows(window)) == [waiting.id, edge.id]
    running = WorkflowCriteria(page_size=None, statuses={RUNNING})
    assert ids(store.get_all_pending_workflows(running)) == [late.id, edge.id, early.id]
    assert ids(store.get_all_pending_workflows(WorkflowCriteria(page_size=None, statuses={SUCCEEDED}))) == [
        done.id
    ]


def test_a_page_is_bounded_in_rows_and_statements(fresh_store: SqlWorkflowStore) -> None:
    store = fresh_store
    made = [stored(store, f"app{i % 3}", RUNNING, 1_000 + i) for i in range(12)]
    newest = [w.id for w in reversed(made)]
    with count_statements(store.engine) as small:
        assert ids(store.get_all_pending_workflows(WorkflowCriteria(page_size=2))) == newest[:2]
    with count_statements(store.engine) as large:
        assert ids(store.get_all_pending_workflows(WorkflowCriteria(page_size=10))) == newest[:10]
    assert len(large) == len(small) <= 6  # workflows, stages, edges, tasks (+ a snapshot's BEGIN)
    assert len(store.get_all_pending_workflows()) == 12  # default criteria: 20 a page
    assert store.get_all_pending_workflows(WorkflowCriteria(statuses={WorkflowStatus.PAUSED})) == []


def test_a_negative_page_size_is_refused(fresh_store: SqlWorkflowStore) -> None:
    with pytest.raises(ValidationError, match=r"criteria\.page_size"):
        fresh_store.get_all_pending_workflows(WorkflowCriteria(page_size=-1))
