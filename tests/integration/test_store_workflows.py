"""Whole-workflow operations: store/retrieve round trips, summaries, state changes, delete."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from stabilize.errors import DatabaseUnavailableError, DuplicateError
from stabilize.models import StageExecution, TaskExecution, Workflow, WorkflowStatus
from stabilize.models.ids import new_id, now_ms
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.persistence.store import WorkflowNotFoundError
from tests.integration.builders import (
    back_references_ok,
    chain,
    full_workflow,
    set_paused,
    snapshot,
    stage,
    task,
    workflow,
    workflow_rows,
)

# -- round trip -----------------------------------------------------------------------------


def test_every_field_round_trips(store: SqlWorkflowStore) -> None:
    original = full_workflow()
    store.store(original)

    loaded = store.retrieve(original.id)

    # Dataclass equality covers every field of the workflow, its trigger and paused details,
    # every stage (requisite sets, synthetic owner, versions) and every task.
    assert loaded == original
    # Read from the database, not handed back from memory: a graph of its own, linked to itself,
    # whose documents are not the original's (changing one leaves the other as it was).
    assert back_references_ok(loaded)
    assert all(got is not want for got, want in zip(loaded.stages, original.stages, strict=True))
    loaded.context["rich"]["numbers"].append("changed")
    loaded.stages[1].outputs["artifacts"].append("c.tar")
    assert original.context["rich"]["numbers"][-1] == 123456.789
    assert original.stages[1].outputs["artifacts"] == ["a.tar", "b.tar"]
    assert store.retrieve(original.id) == original
    loaded = store.retrieve(original.id)
    assert loaded.trigger == original.trigger
    assert loaded.paused == original.paused
    for got, want in zip(loaded.stages, original.stages, strict=True):
        assert got == want
        assert got.tasks == want.tasks
        assert got.requisite_stage_ref_ids == want.requisite_stage_ref_ids
        assert isinstance(got.requisite_stage_ref_ids, set)


def test_stages_come_back_in_order_added_and_tasks_in_stage_order(store: SqlWorkflowStore) -> None:
    original = full_workflow()
    store.store(original)

    loaded = store.retrieve(original.id)

    assert [s.ref_id for s in loaded.stages] == [
        "test",
        "build",
        "deploy",
        "deploy-before",
        "deploy-after",
        "approval",
    ]
    # The stage ids were chosen to sort opposite to the order of addition.
    assert [s.id for s in loaded.stages] != sorted(s.id for s in loaded.stages)
    build = loaded.stage_by_ref_id("build")
    assert build is not None
    assert [t.name for t in build.tasks] == ["prepare", "loop", "finish"]
    assert [t.id for t in build.tasks] == sorted((t.id for t in build.tasks), reverse=True)


def test_retrieve_sets_back_references(store: SqlWorkflowStore) -> None:
    original = full_workflow()
    store.store(original)

    loaded = store.retrieve(original.id)

    assert back_references_ok(loaded)
    deploy = loaded.stage_by_ref_id("deploy")
    assert deploy is not None
    assert [s.ref_id for s in deploy.before_stages()] == ["deploy-before"]
    assert [s.ref_id for s in deploy.after_stages()] == ["deploy-after"]
    assert sorted(s.ref_id for s in deploy.upstream_stages()) == ["approval", "build", "test"]
    before = loaded.stage_by_ref_id("deploy-before")
    assert before is not None and before.parent() is deploy


def test_defaults_round_trip(store: SqlWorkflowStore) -> None:
    original = Workflow.create("app", "plain", [StageExecution.create("t", "only", "a")])
    original.stages[0].add_task(TaskExecution.create("t", "tasks.T"))
    store.store(original)

    loaded = store.retrieve(original.id)

    assert loaded == original
    assert loaded.paused is None
    assert loaded.start_time is None
    assert loaded.stages[0].synthetic_stage_owner is None
    assert loaded.stages[0].parent_stage_id is None


def test_workflow_without_stages_round_trips(store: SqlWorkflowStore) -> None:
    original = workflow()
    store.store(original)

    loaded = store.retrieve(original.id)

    assert loaded == original
    assert loaded.stages == []


def test_retrieve_execution_summary_has_no_stages(store: SqlWorkflowStore) -> None:
    original = full_workflow()
    store.store(original)

    summary = store.retrieve_execution_summary(original.id)

    assert summary.stages == []
    without_stages = copy.copy(original)
    without_stages.stages = []
    assert summary == without_stages


# -- storing an id twice --------------------------------------------------------------------


def test_storing_an_existing_workflow_id_raises_and_writes_nothing(store: SqlWorkflowStore) -> None:
    original = full_workflow()
    store.store(original)
    before = snapshot(store.engine)

    again = workflow(stage("fresh", tasks=2), stage("other", {"fresh"}), name="changed")
    again.id = original.id
    with pytest.raises(DuplicateError, match=original.id):
        store.store(again)

    assert snapshot(store.engine) == before
    assert store.retrieve(original.id) == original


def test_storing_a_stage_id_of_another_workflow_raises_and_writes_nothing(store: SqlWorkflowStore) -> None:
    first = chain(2, 1)
    store.store(first)
    before = snapshot(store.engine)

    clash = workflow(stage("a", tasks=1), stage("b", tasks=1))
    clash.stages[1].id = first.stages[0].id
    with pytest.raises(DuplicateError, match=clash.id):
        store.store(clash)

    assert snapshot(store.engine) == before
    assert not store.exists(clash.id)


def test_storing_a_task_id_of_another_workflow_raises_and_writes_nothing(store: SqlWorkflowStore) -> None:
    first = chain(1, 2)
    store.store(first)
    before = snapshot(store.engine)

    clash = workflow(stage("a", tasks=2))
    clash.stages[0].tasks[1].id = first.stages[0].tasks[0].id
    with pytest.raises(DuplicateError):
        store.store(clash)

    assert snapshot(store.engine) == before


# -- not found ------------------------------------------------------------------------------

UNKNOWN_CALLS: dict[str, Callable[[SqlWorkflowStore, str], object]] = {
    "retrieve": lambda s, i: s.retrieve(i),
    "retrieve_execution_summary": lambda s, i: s.retrieve_execution_summary(i),
    "pause": lambda s, i: s.pause(i, "me"),
    "resume": lambda s, i: s.resume(i),
    "cancel": lambda s, i: s.cancel(i, "me", "why"),
    "update_status": lambda s, i: s.update_status(workflow(id=i, status=WorkflowStatus.RUNNING)),
}


@pytest.mark.parametrize("call", list(UNKNOWN_CALLS))
def test_unknown_workflow_raises_not_found(store: SqlWorkflowStore, call: str) -> None:
    store.store(chain(1, 1))  # another workflow exists
    before = snapshot(store.engine)
    missing = new_id()

    with pytest.raises(WorkflowNotFoundError, match=missing) as caught:
        UNKNOWN_CALLS[call](store, missing)

    assert caught.value.execution_id == missing
    assert snapshot(store.engine) == before


def test_exists(store: SqlWorkflowStore) -> None:
    stored = chain(1, 0)
    store.store(stored)

    assert store.exists(stored.id) is True
    assert store.exists(new_id()) is False
    store.delete(stored.id)
    assert store.exists(stored.id) is False


def test_is_healthy_on_a_live_database(store: SqlWorkflowStore) -> None:
    assert store.is_healthy() is True


UNREACHABLE = {
    "pg_down": "postgresql://postgres@127.0.0.1:1/nowhere",
    "mysql_down": "mysql://root@127.0.0.1:1/nowhere",
    "sqlite_down": "sqlite:////nonexistent-stabilize-dir/sub/db.sqlite",
}


@pytest.mark.parametrize("target", list(UNREACHABLE))
def test_unreachable_database_is_unhealthy_and_exists_propagates(target: str) -> None:
    unreachable = SqlWorkflowStore(UNREACHABLE[target])

    assert unreachable.is_healthy() is False
    with pytest.raises(DatabaseUnavailableError, match="unavailable"):
        unreachable.exists(new_id())


# -- pause, resume, cancel, update_status ------------------------------------------------------


def test_pause_sets_status_and_details(store: SqlWorkflowStore) -> None:
    stored = chain(1, 1, application="pausing")
    stored.status = WorkflowStatus.RUNNING
    store.store(stored)
    earliest = now_ms()

    store.pause(stored.id, "operator")

    loaded = store.retrieve(stored.id)
    assert loaded.status is WorkflowStatus.PAUSED
    assert loaded.paused is not None
    assert loaded.paused.paused_by == "operator"
    assert loaded.paused.pause_time is not None and earliest <= loaded.paused.pause_time <= now_ms()
    assert loaded.paused.resume_time is None
    assert loaded.paused.paused_ms == 0
    assert loaded.paused.is_paused
    # Nothing else moved.
    loaded.status, loaded.paused = stored.status, stored.paused
    assert loaded == stored


def test_resume_records_resume_time_and_paused_duration(store: SqlWorkflowStore) -> None:
    stored = chain(1, 0)
    store.store(stored)
    store.pause(stored.id, "operator")
    pause_time = now_ms() - 5_000  # make the pause measurably long without waiting
    set_paused(
        store.engine,
        stored.id,
        {"paused_by": "operator", "pause_time": pause_time, "resume_time": None, "paused_ms": 0},
    )

    store.resume(stored.id)

    loaded = store.retrieve(stored.id)
    assert loaded.status is WorkflowStatus.RUNNING
    assert loaded.paused is not None
    assert loaded.paused.paused_by == "operator"
    assert loaded.paused.pause_time == pause_time
    assert loaded.paused.resume_time is not None
    assert loaded.paused.paused_ms == loaded.paused.resume_time - pause_time
    assert loaded.paused.paused_ms >= 5_000
    assert not loaded.paused.is_paused


def test_resume_of_a_workflow_never_paused_sets_running(store: SqlWorkflowStore) -> None:
    stored = chain(1, 0)
    store.store(stored)

    store.resume(stored.id)

    loaded = store.retrieve(stored.id)
    assert loaded.status is WorkflowStatus.RUNNING
    assert loaded.paused is None


def test_cancel_sets_cancellation_fields(store: SqlWorkflowStore) -> None:
    stored = chain(1, 0)
    stored.status = WorkflowStatus.RUNNING
    store.store(stored)

    store.cancel(stored.id, "alice", "no longer needed — ✗")
    store.cancel(stored.id, "alice", "no longer needed — ✗")  # the same values again is no error

    loaded = store.retrieve(stored.id)
    assert loaded.is_canceled is True
    assert loaded.canceled_by == "alice"
    assert loaded.cancellation_reason == "no longer needed — ✗"
    assert loaded.status is WorkflowStatus.RUNNING


def test_update_status_writes_the_running_state(store: SqlWorkflowStore) -> None:
    stored = chain(2, 1)
    store.store(stored)

    stored.pause("someone")
    stored.resume()
    stored.update_status(WorkflowStatus.TERMINAL)
    stored.start_time = 1_000
    stored.end_time = 2_000
    stored.cancel("carol", "reason")
    store.update_status(stored)
    store.update_status(stored)  # unchanged values are no error (MySQL counts changed rows)

    loaded = store.retrieve(stored.id)
    assert loaded == stored
    assert loaded.status is WorkflowStatus.TERMINAL
    assert (loaded.start_time, loaded.end_time) == (1_000, 2_000)
    assert loaded.paused == stored.paused
    assert (loaded.is_canceled, loaded.canceled_by, loaded.cancellation_reason) == (True, "carol", "reason")


# -- delete ---------------------------------------------------------------------------------


def test_delete_removes_workflow_stages_tasks_and_edges(store: SqlWorkflowStore) -> None:
    doomed = full_workflow()
    kept = full_workflow()
    store.store(doomed)
    store.store(kept)
    kept_rows = workflow_rows(store.engine, kept.id)
    assert workflow_rows(store.engine, doomed.id) == kept_rows
    assert all(count > 0 for count in kept_rows.values())

    store.delete(doomed.id)

    assert workflow_rows(store.engine, doomed.id) == {
        "workflows": 0,
        "stages": 0,
        "stage_edges": 0,
        "tasks": 0,
    }
    assert workflow_rows(store.engine, kept.id) == kept_rows
    assert store.retrieve(kept.id) == kept
    with pytest.raises(WorkflowNotFoundError):
        store.retrieve(doomed.id)
    for stage_ in doomed.stages:
        with pytest.raises(ValueError):
            store.retrieve_stage(stage_.id)


def test_workflow_objects_are_not_changed_by_store(store: SqlWorkflowStore) -> None:
    original = full_workflow()
    original.stages[0].add_task(task("extra"))
    reference = copy.deepcopy(original)

    store.store(original)

    assert original == reference
    assert back_references_ok(original)
