"""SQLite files: each thread keeps one pooled connection for the hot paths (``dbapi``).

More threads than the pool's size all work at once, nothing waits on the pool, a transaction
nested in a thread's own uses a connection of its own, and every kept connection goes back to the
pool when its thread ends.
"""

from __future__ import annotations

import gc
import threading

import pytest

from stabilize.models import WorkflowStatus
from stabilize.persistence.sql import dbapi
from stabilize.persistence.sql.store import SqlWorkflowStore
from tests.integration.builders import chain

pytestmark = pytest.mark.parametrize("dialect", ["sqlite_file"])

THREADS = 24  # more than the pool's 5 connections plus 10 overflow


def test_more_threads_than_the_pool_holds_all_work_and_give_back_their_connections(
    store: SqlWorkflowStore,
) -> None:
    pool = store.engine.pool
    before = pool.checkedout()  # type: ignore[attr-defined]
    start = threading.Barrier(THREADS, timeout=60)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            workflow = chain(2, 1)
            start.wait()
            store.store(workflow)
            stage = workflow.stages[0]
            stage.status = WorkflowStatus.RUNNING
            store.store_stage(stage, expected_phase="NOT_STARTED")
            assert store.retrieve(workflow.id).stages[0].version == 1
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[0]
    assert pool.checkedout() >= before + THREADS  # type: ignore[attr-defined]  # kept while alive

    del threads, thread
    gc.collect()  # the finished threads' objects go; their kept connections with them
    assert pool.checkedout() == before  # type: ignore[attr-defined]


def test_a_transaction_nested_in_a_threads_own_uses_another_connection(store: SqlWorkflowStore) -> None:
    workflow = chain(1, 1)
    with dbapi.transaction(store.engine, write=False) as outer:
        store.store(workflow)  # a write while this thread's kept connection is in a read
        assert outer.cursor.dbapi_connection is not None
    assert store.exists(workflow.id)
