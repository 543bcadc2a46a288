"""SQLite files: each thread keeps one connection for its units of work (``units.Database``).

More threads than the pool's size all work at once, nothing waits on the pool, a unit nested in a
thread's own uses a connection of its own, and every kept connection goes back to the pool when
its thread ends.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

import pytest
from sqlalchemy import Connection, event, select

from stabilize.models import WorkflowStatus
from stabilize.persistence.sql.dialects import Unit
from stabilize.persistence.sql.rows import WorkflowRow
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


def test_a_unit_nested_in_a_threads_own_uses_another_connection(store: SqlWorkflowStore) -> None:
    workflow = chain(1, 1)
    writers: list[Connection] = []

    def record(connection: Connection, *_args: Any) -> None:
        writers.append(connection)

    def outer(connection: Connection) -> bool:
        event.listen(store.engine, "before_cursor_execute", record)
        try:
            store.store(workflow)  # a write while this thread's kept connection is in a unit
        finally:
            event.remove(store.engine, "before_cursor_execute", record)
        assert writers and all(writer is not connection for writer in writers)
        return (
            connection.execute(select(WorkflowRow.id).where(WorkflowRow.id == workflow.id)).first()
            is not None
        )

    assert store._db.run(outer, Unit.SNAPSHOT)
