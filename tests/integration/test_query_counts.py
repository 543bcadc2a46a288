"""A workflow and a page of workflows load in a small, constant number of statements.

The counts are printed (run with ``-s`` to see them); the asserted bound is the exact number the
store needs today, so a query per stage, per task or per workflow fails at once.
"""

from __future__ import annotations

import pytest

from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.persistence.store import WorkflowCriteria
from tests.integration.builders import chain, count_statements

#: Statements of one ``retrieve`` / one page: the workflow row(s), stages, edges, tasks, plus the
#: statement that begins the snapshot where the dialect sends one itself: SQLite's ``BEGIN``,
#: MariaDB's ``SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`` (see the dialect profiles).
SNAPSHOT_BEGIN = {"sqlite_file": 1, "sqlite_memory": 1, "postgresql": 0, "mariadb": 1}


def statements(dialect: str) -> int:
    return 4 + SNAPSHOT_BEGIN[dialect]


def test_retrieve_runs_a_constant_number_of_statements(store: SqlWorkflowStore, dialect: str) -> None:
    small = chain(10, 3)
    large = chain(100, 3)
    store.store(small)
    store.store(large)

    with count_statements(store.engine) as small_sql:
        loaded_small = store.retrieve(small.id)
    with count_statements(store.engine) as large_sql:
        loaded_large = store.retrieve(large.id)

    print(
        f"\n[{dialect}] retrieve: 10 stages x 3 tasks = {len(small_sql)} statements, "
        f"100 stages x 3 tasks = {len(large_sql)} statements"
    )
    assert loaded_small == small
    assert loaded_large == large
    assert len(large_sql) == len(small_sql) == statements(dialect)


def test_a_page_runs_a_constant_number_of_statements(store: SqlWorkflowStore, dialect: str) -> None:
    for i in range(50):
        wf = chain(4, 3, application="paged")
        wf.start_time = 1_000 + i
        store.store(wf)
    few = chain(4, 3, application="few")
    store.store(few)

    with count_statements(store.engine) as page_sql:
        page = list(store.retrieve_by_application("paged", WorkflowCriteria(page_size=20)))
    with count_statements(store.engine) as single_sql:
        single = list(store.retrieve_by_application("few", WorkflowCriteria(page_size=20)))
    with count_statements(store.engine) as all_sql:
        everything = list(store.retrieve_by_application("paged", WorkflowCriteria(page_size=None)))

    print(
        f"\n[{dialect}] retrieve_by_application: page of 20 of 50 = {len(page_sql)} statements, "
        f"page of 1 = {len(single_sql)}, all 50 = {len(all_sql)}"
    )
    assert len(page) == 20
    assert len(single) == 1
    assert len(everything) == 50
    assert all(len(w.stages) == 4 and all(len(s.tasks) == 3 for s in w.stages) for w in page)
    assert len(page_sql) == len(single_sql) == len(all_sql) == statements(dialect)


@pytest.mark.parametrize("n_stages", [1, 30])
def test_retrieve_stage_and_lookups_do_not_grow_with_the_workflow(
    store: SqlWorkflowStore, dialect: str, n_stages: int
) -> None:
    wf = chain(n_stages + 2, 3)
    store.store(wf)
    target = wf.stages[n_stages]

    with count_statements(store.engine) as stage_sql:
        store.retrieve_stage(target.id)
    with count_statements(store.engine) as upstream_sql:
        store.get_upstream_stages(wf.id, target.ref_id)
    with count_statements(store.engine) as merged_sql:
        store.get_merged_ancestor_outputs(wf.id, target.ref_id)

    print(
        f"\n[{dialect}] {n_stages + 2} stages: retrieve_stage = {len(stage_sql)}, "
        f"get_upstream_stages = {len(upstream_sql)}, get_merged_ancestor_outputs = {len(merged_sql)}"
    )
    extra = SNAPSHOT_BEGIN[dialect]
    assert len(stage_sql) == 4 + extra  # workflow, stages, edges, tasks
    assert len(upstream_sql) == 3 + extra  # stages, edges, tasks
    assert len(merged_sql) == 1  # ancestor outputs and their edges, in one statement, no BEGIN
