"""The ancestor merge is complete at any depth, on every dialect (issue 11, CONTRACT.md sections 4
and 7): a chain longer than every server's default recursion limit (MariaDB's
``max_recursive_iterations`` is 1000, and ended the recursive CTE without an error) merges every
ancestor's outputs, never a silent part of them."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from stabilize.models import Workflow
from stabilize.persistence.sql.store import SqlWorkflowStore
from tests.conftest import FILE_OR_SERVER_DIALECTS
from tests.integration.builders import chain, count_statements, workflow_rows


def _deep_chain(stages: int) -> Workflow:
    """s0 <- s1 <- ... <- s{stages-1}: every stage an output key of its own, and a list every
    stage adds its ref to (list onto list appends), so a missing ancestor shows in both."""
    workflow = chain(stages, 0)
    for i, stage in enumerate(workflow.stages):
        stage.outputs = {f"out{i}": i, "path": [stage.ref_id], "last": i}
    return workflow


def _assert_complete(merged: dict[str, object], stages: int) -> None:
    """Every ancestor of the last stage (all stages but it) is in the merge, in chain order."""
    ancestors = stages - 1
    keys = {key for key in merged if key.startswith("out")}
    missing = sorted(set(f"out{i}" for i in range(ancestors)) - keys, key=lambda k: int(k[3:]))
    assert not missing, f"{len(missing)} of {ancestors} ancestors missing, e.g. {missing[:3]}"
    assert len(keys) == ancestors  # the stage's own outputs are not included
    assert merged["path"] == [f"s{i}" for i in range(ancestors)]  # Kahn's order: the chain's
    assert merged["last"] == ancestors - 1  # the nearest ancestor is merged last


#: Seconds a call on a 20,000-stage workflow may take: storing it is one transaction of some
#: 40,000 rows, which takes a few seconds on a loaded machine, near the default deadline of 10.
DEADLINE = 60.0


def _patient_store(dialect: str, url: str, fresh_url: Callable[[], str]) -> SqlWorkflowStore:
    """A store with the longer deadline on the test's database; an in-memory one is its engine's
    own, so that dialect gets a new shared-cache database, migrated by the store."""
    if dialect == "sqlite_memory":
        return SqlWorkflowStore(fresh_url(), operation_timeout=DEADLINE, create_tables=True)
    return SqlWorkflowStore(url, operation_timeout=DEADLINE)


@pytest.mark.parametrize("stages", [1_200, 20_000])
def test_the_merge_of_a_deep_chain_includes_every_ancestor(
    dialect: str, url: str, fresh_url: Callable[[], str], stages: int
) -> None:
    store = _patient_store(dialect, url, fresh_url)
    workflow = _deep_chain(stages)
    store.store(workflow)  # one call: the workflow, its stages and edges in one transaction
    try:
        started = time.monotonic()
        with count_statements(store.engine) as statements:
            merged = store.get_merged_ancestor_outputs(workflow.id, f"s{stages - 1}")
        elapsed = time.monotonic() - started

        _assert_complete(merged, stages)
        assert len(statements) == 1  # one recursive statement, whatever the depth
        print(f"merged {stages - 1} ancestors in {elapsed:.2f} s")  # the figure of issue 11's note
    finally:
        store.delete(workflow.id)  # one cascade, instead of the next test's table-wide deletes


def test_a_stage_halfway_down_a_deep_chain_merges_its_own_ancestors_only(store: SqlWorkflowStore) -> None:
    workflow = _deep_chain(1_200)
    store.store(workflow)

    merged = store.get_merged_ancestor_outputs(workflow.id, "s1100")

    _assert_complete(merged, 1_101)
    assert "out1100" not in merged and "out1101" not in merged


@pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS)
def test_a_20000_stage_workflow_is_deleted_after_a_small_one(url: str) -> None:
    """A cascade from each deleted stage looks up that stage's edges; on PostgreSQL the lookup's
    plan is kept for the session, so it must stay a primary-key probe however small the table was
    when it was planned (migration 0005). It read every edge of the workflow per stage before:
    deleting 20,000 stages outlasted the deadline."""
    store = SqlWorkflowStore(url, operation_timeout=DEADLINE)
    small = _deep_chain(1_200)
    store.store(small)
    store.delete(small.id)  # plans the cascade's lookups while the table is small
    big = _deep_chain(20_000)
    store.store(big)

    store.delete(big.id)  # raised OperationTimeoutError after DEADLINE / 2 before

    assert not store.exists(big.id)
    assert workflow_rows(store.engine, big.id) == {"workflows": 0, "stages": 0, "stage_edges": 0, "tasks": 0}
