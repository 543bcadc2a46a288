"""Stage operations: compare-and-set updates, adding and removing stages, stage lookups, lineage."""

from __future__ import annotations

from typing import Any

import pytest

from stabilize.errors import ConcurrencyError
from stabilize.models import StageExecution, SyntheticStageOwner, Workflow, WorkflowStatus
from stabilize.models.ids import new_id
from stabilize.persistence.sql.store import SqlWorkflowStore
from tests.integration.builders import (
    back_references_ok,
    count_statements,
    full_workflow,
    snapshot,
    stage,
    stage_row_version,
    task,
    task_row_versions,
    workflow,
    workflow_rows,
)


def stored_stage(
    store: SqlWorkflowStore, status: WorkflowStatus = WorkflowStatus.RUNNING
) -> tuple[Workflow, StageExecution]:
    """A stored two-task stage, as the engine holds it after ``retrieve`` (with its workflow,
    which the stage references only weakly)."""
    wf = workflow(stage("a", tasks=2, status=status), stage("b", {"a"}, tasks=1))
    store.store(wf)
    loaded = store.retrieve(wf.id)
    first = loaded.stage_by_ref_id("a")
    assert first is not None
    return loaded, first


# -- store_stage: compare-and-set -------------------------------------------------------------


def test_store_stage_updates_state_bumps_versions_and_upserts_changed_tasks(store: SqlWorkflowStore) -> None:
    wf, current = stored_stage(store)
    workflow_id = wf.id
    assert current.version == 0
    changed_task, kept_task = current.tasks
    current.status = WorkflowStatus.SUCCEEDED
    current.context = {"changed": ["yes", {"deep": 1}]}
    current.outputs = {"out": "ü"}
    current.start_time, current.end_time = 10, 20
    current.start_time_expiry, current.scheduled_time = 30, 40
    changed_task.status = WorkflowStatus.SUCCEEDED
    changed_task.end_time = 99
    changed_task.set_exception_details({"message": "none"})
    new_task = task("added", loop_start=True)
    current.add_task(new_task)

    store.store_stage(current)

    assert current.version == 1
    assert [t.version for t in current.tasks] == [1, 0, 1]  # the unchanged task's row is left alone
    assert stage_row_version(store.engine, current.id) == 1
    assert task_row_versions(store.engine, current.id) == {t.id: t.version for t in current.tasks}
    loaded = store.retrieve(workflow_id)
    again = loaded.stage_by_ref_id("a")
    assert again is not None
    assert again == current
    assert [t.name for t in again.tasks] == [changed_task.name, kept_task.name, "added"]
    assert again.tasks[0].task_exception_details == {"exception": {"message": "none"}}
    other = loaded.stage_by_ref_id("b")
    assert other is not None and other.version == 0


def test_store_stage_twice_moves_version_each_time(store: SqlWorkflowStore) -> None:
    _, current = stored_stage(store)

    store.store_stage(current)
    store.store_stage(current)

    assert current.version == 2
    assert stage_row_version(store.engine, current.id) == 2
    assert set(task_row_versions(store.engine, current.id).values()) == {0}  # tasks unchanged


def test_store_stage_writes_only_the_tasks_that_changed(store: SqlWorkflowStore) -> None:
    _, current = stored_stage(store)
    current.status = WorkflowStatus.SUCCEEDED
    with count_statements(store.engine) as unchanged:
        store.store_stage(current)
    current.tasks[1].status = WorkflowStatus.SUCCEEDED
    with count_statements(store.engine) as one_changed:
        store.store_stage(current)

    assert not [s for s in unchanged if "tasks" in s]
    assert len([s for s in one_changed if "tasks" in s]) == 1
    assert [t.version for t in current.tasks] == [0, 1]
    assert task_row_versions(store.engine, current.id) == {t.id: t.version for t in current.tasks}
    assert store.retrieve_stage(current.id).tasks[1].status is WorkflowStatus.SUCCEEDED


@pytest.mark.parametrize("source", ["retrieve", "retrieve_stage", "store", "store_stage"])
def test_every_change_to_a_task_is_written_however_it_was_loaded(
    store: SqlWorkflowStore, source: str
) -> None:
    """Changes made in place (the exception details' dict) or back and forth after the task was
    read or written, through each path that records what its row holds."""
    wf = workflow(stage("a", tasks=3))
    store.store(wf)
    if source == "retrieve":
        loaded = store.retrieve(wf.id).stage_by_ref_id("a")
    elif source == "retrieve_stage":
        loaded = store.retrieve_stage(wf.stages[0].id)
    else:
        loaded = wf.stages[0]
        if source == "store_stage":
            store.store_stage(loaded)
    assert loaded is not None
    first, second, third = loaded.tasks

    first.set_exception_details({"message": "boom"})  # the empty dict, filled in place
    second.name = "renamed"
    third.status = WorkflowStatus.RUNNING
    third.status = WorkflowStatus.NOT_STARTED  # and back: the row need not change
    store.store_stage(loaded)
    first.task_exception_details["exception"]["message"] = "boom again"  # nested, in place
    store.store_stage(loaded)

    again = store.retrieve_stage(loaded.id)
    assert again.tasks[0].task_exception_details == {"exception": {"message": "boom again"}}
    assert again.tasks[1].name == "renamed"
    assert [t.version for t in again.tasks] == [t.version for t in loaded.tasks] == [2, 1, 0]


def test_store_stage_with_matching_expected_phase(store: SqlWorkflowStore) -> None:
    _, current = stored_stage(store, WorkflowStatus.RUNNING)
    current.status = WorkflowStatus.SUCCEEDED

    store.store_stage(current, expected_phase="RUNNING")

    assert current.version == 1
    assert store.retrieve_stage(current.id).status is WorkflowStatus.SUCCEEDED


def test_store_stage_with_mismatched_expected_phase_changes_nothing(store: SqlWorkflowStore) -> None:
    _, current = stored_stage(store, WorkflowStatus.RUNNING)
    before = snapshot(store.engine)
    current.status = WorkflowStatus.SUCCEEDED
    current.tasks[0].status = WorkflowStatus.SUCCEEDED

    with pytest.raises(ConcurrencyError, match=current.id):
        store.store_stage(current, expected_phase="NOT_STARTED")

    assert snapshot(store.engine) == before
    assert current.version == 0
    assert [t.version for t in current.tasks] == [0, 0]


def test_stale_version_raises_and_changes_nothing(store: SqlWorkflowStore) -> None:
    wf, winner = stored_stage(store)
    other_copy = store.retrieve(wf.id)
    loser = other_copy.stage_by_ref_id("a")
    assert loser is not None
    winner.context = {"by": "winner"}
    store.store_stage(winner)
    before = snapshot(store.engine)

    loser.context = {"by": "loser"}
    loser.tasks[1].status = WorkflowStatus.TERMINAL
    loser.add_task(task("late"))
    with pytest.raises(ConcurrencyError, match=loser.id):
        store.store_stage(loser)

    assert snapshot(store.engine) == before
    assert loser.version == 0
    assert [t.version for t in loser.tasks] == [0, 0, 0]
    assert stage_row_version(store.engine, winner.id) == 1
    assert store.retrieve_stage(winner.id).context == {"by": "winner"}


def test_stale_version_with_matching_phase_still_raises(store: SqlWorkflowStore) -> None:
    _, current = stored_stage(store, WorkflowStatus.RUNNING)
    current.version = 7
    before = snapshot(store.engine)

    with pytest.raises(ConcurrencyError):
        store.store_stage(current, expected_phase="RUNNING")

    assert current.version == 7
    assert snapshot(store.engine) == before


# -- adding and removing stages ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["add_stage", "store_stage"])
def test_new_stage_is_inserted_and_comes_last(store: SqlWorkflowStore, method: str) -> None:
    wf = workflow(stage("a", tasks=1), stage("b", {"a"}, tasks=1))
    store.store(wf)
    added = stage("c", {"a", "b"}, tasks=2, context={"k": [1, 2]})
    added.id = "0" * 26  # sorts before every ULID: order must come from addition, not id
    wf.add_stage(added)

    getattr(store, method)(added)

    loaded = store.retrieve(wf.id)
    assert [s.ref_id for s in loaded.stages] == ["a", "b", "c"]
    assert loaded.stages[-1] == added
    assert loaded.stages[-1].requisite_stage_ref_ids == {"a", "b"}
    assert back_references_ok(loaded)
    assert added.version == 0
    assert [s.ref_id for s in store.get_downstream_stages(wf.id, "a")] == ["b", "c"]


def test_added_synthetic_stage_round_trips(store: SqlWorkflowStore) -> None:
    parent = stage("p", tasks=1)
    wf = workflow(parent)
    store.store(wf)
    synthetic = StageExecution.create_synthetic(
        "check", "Before p", parent, SyntheticStageOwner.STAGE_BEFORE, context={"x": 1}
    )
    synthetic.add_task(task("check"))

    store.add_stage(synthetic)

    loaded = store.retrieve(wf.id)
    assert loaded.stages[-1] == synthetic
    loaded_parent = loaded.stage_by_ref_id("p")
    assert loaded_parent is not None
    assert loaded_parent.before_stages() == [synthetic]


def test_remove_stage_deletes_the_stage_its_tasks_and_edges(store: SqlWorkflowStore) -> None:
    wf = workflow(stage("a", tasks=1), stage("b", {"a"}, tasks=3), stage("c", {"b"}, tasks=1))
    store.store(wf)
    removed = wf.stages[1]

    store.remove_stage(wf, removed.id)

    assert workflow_rows(store.engine, wf.id) == {"workflows": 1, "stages": 2, "stage_edges": 1, "tasks": 2}
    loaded = store.retrieve(wf.id)
    assert [s.ref_id for s in loaded.stages] == ["a", "c"]
    assert loaded.stages[1].requisite_stage_ref_ids == {"b"}  # the dependent's own edge stays
    with pytest.raises(ValueError, match=removed.id):
        store.retrieve_stage(removed.id)

    again = stage("d", tasks=1)
    wf.add_stage(again)
    store.add_stage(again)
    assert [s.ref_id for s in store.retrieve(wf.id).stages] == ["a", "c", "d"]


# -- retrieve_stage and the graph lookups ------------------------------------------------------


def graph(store: SqlWorkflowStore) -> Workflow:
    """a, b -> c -> d; c has a before and an after synthetic stage; e stands apart."""
    c = stage("c", {"a", "b"}, tasks=2)
    before = StageExecution.create_synthetic("s", "before", c, SyntheticStageOwner.STAGE_BEFORE)
    before.add_task(task("before-task"))
    after = StageExecution.create_synthetic("s", "after", c, SyntheticStageOwner.STAGE_AFTER)
    wf = workflow(
        stage("a", tasks=1),
        stage("e", tasks=1),
        c,
        stage("b", tasks=2),
        stage("d", {"c"}, tasks=1),
        before,
        after,
    )
    store.store(wf)
    return wf


def test_retrieve_stage_comes_with_a_partial_parent(store: SqlWorkflowStore) -> None:
    wf = graph(store)
    c = wf.stage_by_ref_id("c")
    assert c is not None

    loaded = store.retrieve_stage(c.id)

    assert loaded == c
    partial = loaded.execution
    assert partial.id == wf.id
    assert (partial.application, partial.name, partial.status) == (wf.application, wf.name, wf.status)
    # Itself, its direct requisites and its synthetic children, in the order they were added.
    assert [s.ref_id for s in partial.stages] == [
        "a",
        "c",
        "b",
        c.synthetic_stages()[0].ref_id,
        c.synthetic_stages()[1].ref_id,
    ]
    by_id = {s.id: s for s in wf.stages}
    for got in partial.stages:
        assert got == by_id[got.id]  # tasks included
    assert back_references_ok(partial)
    assert sorted(s.ref_id for s in loaded.upstream_stages()) == ["a", "b"]
    assert [s.name for s in loaded.before_stages()] == ["before"]
    assert [s.name for s in loaded.after_stages()] == ["after"]
    assert [t.name for t in loaded.synthetic_stages()[0].tasks] == ["before-task"]


def test_retrieve_stage_keeps_its_partial_parent_alive(store: SqlWorkflowStore) -> None:
    wf = graph(store)
    d = wf.stage_by_ref_id("d")
    assert d is not None

    loaded = store.retrieve_stage(d.id)

    # Nothing else references the partial workflow; the stage must hold it strongly.
    assert loaded.execution.id == wf.id
    assert [s.ref_id for s in loaded.execution.stages] == ["c", "d"]
    assert loaded.tasks[0].stage is loaded


def test_retrieve_stage_of_an_initial_stage(store: SqlWorkflowStore) -> None:
    wf = graph(store)
    e = wf.stage_by_ref_id("e")
    assert e is not None

    loaded = store.retrieve_stage(e.id)

    assert [s.ref_id for s in loaded.execution.stages] == ["e"]


def test_retrieve_stage_raises_value_error_when_missing(store: SqlWorkflowStore) -> None:
    graph(store)
    missing = new_id()

    with pytest.raises(ValueError, match=missing):
        store.retrieve_stage(missing)


def test_get_upstream_downstream_and_synthetic_stages(store: SqlWorkflowStore) -> None:
    wf = graph(store)
    by_ref = {s.ref_id: s for s in wf.stages}
    c = by_ref["c"]

    upstream = store.get_upstream_stages(wf.id, "c")
    downstream = store.get_downstream_stages(wf.id, "c")
    synthetic = store.get_synthetic_stages(wf.id, c.id)

    assert upstream == [by_ref["a"], by_ref["b"]]  # order of addition, with their tasks
    assert downstream == [by_ref["d"]]
    assert synthetic == c.synthetic_stages()
    assert [s.synthetic_stage_owner for s in synthetic] == [
        SyntheticStageOwner.STAGE_BEFORE,
        SyntheticStageOwner.STAGE_AFTER,
    ]
    for got in upstream + downstream + synthetic:
        assert all(t.stage is got for t in got.tasks)
    assert [len(s.tasks) for s in upstream] == [1, 2]

    assert store.get_upstream_stages(wf.id, "a") == []
    assert store.get_downstream_stages(wf.id, "d") == []
    assert store.get_synthetic_stages(wf.id, by_ref["a"].id) == []
    assert store.get_upstream_stages(wf.id, "nope") == []
    assert store.get_upstream_stages(new_id(), "c") == []


def test_graph_lookups_stay_inside_one_workflow(store: SqlWorkflowStore) -> None:
    first = graph(store)
    second = graph(store)  # the same ref ids in another workflow

    upstream = store.get_upstream_stages(first.id, "c")
    downstream = store.get_downstream_stages(second.id, "c")

    assert {s.id for s in upstream} == {s.id for s in first.stages if s.ref_id in ("a", "b")}
    assert [s.id for s in downstream] == [s.id for s in second.stages if s.ref_id == "d"]
    c = second.stage_by_ref_id("c")
    assert c is not None
    assert [s.ref_id for s in store.retrieve_stage(c.id).execution.stages][:3] == ["a", "c", "b"]


def test_full_workflow_lookups(store: SqlWorkflowStore) -> None:
    wf = full_workflow()
    store.store(wf)
    deploy = wf.stage_by_ref_id("deploy")
    assert deploy is not None

    assert [s.ref_id for s in store.get_upstream_stages(wf.id, "deploy")] == ["test", "build", "approval"]
    assert [s.ref_id for s in store.get_downstream_stages(wf.id, "build")] == ["test", "deploy"]
    assert [s.ref_id for s in store.get_synthetic_stages(wf.id, deploy.id)] == [
        "deploy-before",
        "deploy-after",
    ]


# -- get_merged_ancestor_outputs -----------------------------------------------------------------


def dag(store: SqlWorkflowStore, spec: dict[str, tuple[set[str], dict[str, Any]]]) -> Workflow:
    """Store a workflow from {ref: (requisites, outputs)}, stages added in the spec's order."""
    wf = workflow(*(stage(ref, reqs, outputs=outputs) for ref, (reqs, outputs) in spec.items()))
    store.store(wf)
    return wf


def test_merge_of_a_diamond(store: SqlWorkflowStore) -> None:
    wf = dag(
        store,
        {
            "d": ({"b", "c"}, {"x": "d", "own": True}),
            "c": ({"a"}, {"x": "c", "items": [4, 1], "only_c": {"nested": [1]}}),
            "b": ({"a"}, {"x": "b", "items": [2, 3]}),
            "a": (set(), {"x": "a", "items": [1, 2], "only_a": "a"}),
            "after": ({"d"}, {"x": "after"}),
        },
    )

    # Kahn order a, b, c: scalars take the last value, lists gain the items not yet present.
    assert store.get_merged_ancestor_outputs(wf.id, "d") == {
        "x": "c",
        "items": [1, 2, 3, 4],
        "only_a": "a",
        "only_c": {"nested": [1]},
    }
    assert store.get_merged_ancestor_outputs(wf.id, "b") == {"x": "a", "items": [1, 2], "only_a": "a"}
    assert store.get_merged_ancestor_outputs(wf.id, "a") == {}
    assert store.get_merged_ancestor_outputs(wf.id, "after") == {
        "x": "d",
        "items": [1, 2, 3, 4],
        "only_a": "a",
        "only_c": {"nested": [1]},
        "own": True,
    }


def test_merge_follows_fifo_kahn_order_not_a_priority_order(store: SqlWorkflowStore) -> None:
    # Roots a and m; z needs a, b needs m; t needs z and b. Kahn with a FIFO queue visits
    # a, m, z, b (z became ready first), so b's value wins. A smallest-ready-first order
    # (a, m, b, z) or a sort by depth then ref id would let z win instead.
    wf = dag(
        store,
        {
            "t": ({"z", "b"}, {"k": "own"}),
            "b": ({"m"}, {"k": "b"}),
            "z": ({"a"}, {"k": "z"}),
            "m": (set(), {"k": "m", "m_only": 1}),
            "a": (set(), {"k": "a"}),
        },
    )

    assert store.get_merged_ancestor_outputs(wf.id, "t") == {"k": "b", "m_only": 1}


def test_merge_ties_break_by_ref_id_not_insertion_order(store: SqlWorkflowStore) -> None:
    wf = dag(
        store,
        {
            "zeta": (set(), {"k": "zeta", "l": ["z"]}),
            "alpha": (set(), {"k": "alpha", "l": ["a"]}),
            "mid": (set(), {"k": "mid", "l": ["m", "a"]}),
            "join": ({"zeta", "alpha", "mid"}, {}),
        },
    )

    assert store.get_merged_ancestor_outputs(wf.id, "join") == {"k": "zeta", "l": ["a", "m", "z"]}


def test_merge_replaces_across_types_and_whole_dicts(store: SqlWorkflowStore) -> None:
    wf = dag(
        store,
        {
            "a": (set(), {"v": [1], "cfg": {"x": 1}, "s": "str"}),
            "b": ({"a"}, {"v": "scalar", "cfg": {"y": 2}, "s": ["now", "a", "list"]}),
            "c": ({"b"}, {"v": [2], "s": ["list", "more"]}),
            "d": ({"c"}, {}),
        },
    )

    assert store.get_merged_ancestor_outputs(wf.id, "d") == {
        "v": [2],
        "cfg": {"y": 2},
        "s": ["now", "a", "list", "more"],
    }


def test_merge_reads_only_ancestors_of_one_workflow(store: SqlWorkflowStore) -> None:
    spec: dict[str, tuple[set[str], dict[str, Any]]] = {
        "root": (set(), {"k": "root", "l": [1]}),
        "side": (set(), {"k": "side", "side": True}),  # not an ancestor of "leaf"
        "mid": ({"root"}, {"l": [2]}),
        "leaf": ({"mid", "missing"}, {"k": "leaf"}),  # "missing" names no stage
    }
    wf = dag(store, spec)
    other = dag(store, {ref: (reqs, {"k": "other " + ref}) for ref, (reqs, _) in spec.items()})

    assert store.get_merged_ancestor_outputs(wf.id, "leaf") == {"k": "root", "l": [1, 2]}
    assert store.get_merged_ancestor_outputs(other.id, "leaf") == {"k": "other mid"}
    assert store.get_merged_ancestor_outputs(wf.id, "unknown") == {}
    assert store.get_merged_ancestor_outputs(new_id(), "leaf") == {}


def test_merge_over_a_long_chain(store: SqlWorkflowStore) -> None:
    spec: dict[str, tuple[set[str], dict[str, Any]]] = {
        f"s{i:02d}": ({f"s{i - 1:02d}"} if i else set(), {"last": i, "all": [i], f"k{i}": i})
        for i in range(30)
    }
    wf = dag(store, spec)

    merged = store.get_merged_ancestor_outputs(wf.id, "s29")

    assert merged["last"] == 28
    assert merged["all"] == list(range(29))
    assert {k for k in merged if k.startswith("k")} == {f"k{i}" for i in range(29)}
