"""A lock another client holds and never lets go of ends the call in bounded time (issue 11,
CONTRACT.md section 6b).

The holder is another connection: on PostgreSQL and MariaDB it holds the row lock of a stage or
a workflow (``SELECT ... FOR UPDATE``); on a SQLite file it holds the write lock
(``BEGIN IMMEDIATE``); on an in-memory SQLite database, whose threads share one connection,
another thread's open transaction holds it. The store's write raises ``LockTimeoutError`` within
the deadline and writes nothing; once the holder lets go, the same call succeeds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Connection, create_engine, select
from sqlalchemy.pool import NullPool

from stabilize.errors import LockTimeoutError
from stabilize.models import Workflow, WorkflowStatus
from stabilize.persistence.sql.engine import normalize_url
from stabilize.persistence.sql.rows import StageRow, WorkflowRow
from stabilize.persistence.sql.store import SqlWorkflowStore
from tests.conftest import DIALECTS
from tests.faults.timing import bounded
from tests.integration.builders import chain

pytestmark = pytest.mark.parametrize("dialect", DIALECTS, indirect=True)

#: The calls' deadline (the store's ``operation_timeout``).
DEADLINE = 3.0
#: Seconds the holder thread may wait for the test to let it go.
HOLD_LIMIT = 60


@contextmanager
def holding(url: str, dialect: str, store: SqlWorkflowStore, row: type, row_id: str) -> Iterator[None]:
    """Hold the lock a write of ``row_id`` (a row of ``row``) needs, until the block ends."""
    if dialect == "sqlite_memory":
        with held_by_another_thread(store):
            yield
        return
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            take(connection, dialect, row, row_id)
            try:
                yield
            finally:
                connection.rollback()
    finally:
        engine.dispose()


def take(connection: Connection, dialect: str, row: type, row_id: str) -> None:
    if dialect == "sqlite_file":
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # SQLite's one write lock, for the file
    else:
        key = row.id  # type: ignore[attr-defined]
        locked = connection.execute(select(key).where(key == row_id).with_for_update()).scalar_one()
        assert locked == row_id


@contextmanager
def held_by_another_thread(store: SqlWorkflowStore) -> Iterator[None]:
    """An in-memory database has one connection for every thread: another thread's open
    transaction holds it (and the database's write lock with it)."""
    began, release = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def hold() -> None:
        try:
            with store.transaction() as txn:
                txn.workflow_status("")  # a call that answers begins the database transaction now
                began.set()
                assert release.wait(HOLD_LIMIT)
        except BaseException as error:
            failed.append(error)
            began.set()

    holder = threading.Thread(target=hold, name="lock holder", daemon=True)
    holder.start()
    assert began.wait(HOLD_LIMIT) and not failed, failed
    try:
        yield
    finally:
        release.set()
        holder.join(HOLD_LIMIT)
        assert not holder.is_alive() and not failed, failed


@pytest.fixture
def bounded_store(url: str) -> Iterator[SqlWorkflowStore]:
    # An engine of its own (engines are shared per URL and deadline): for ``sqlite:///:memory:``
    # that is a database of its own, so the store migrates it.
    store = SqlWorkflowStore(url, create_tables=True, operation_timeout=DEADLINE)
    try:
        yield store
    finally:
        store.close()


def stored(store: SqlWorkflowStore) -> Workflow:
    workflow = chain(2, 2)
    store.store(workflow)
    return workflow


def test_a_stage_write_waiting_on_a_held_row_lock_fails_in_time_then_succeeds(
    url: str, dialect: str, bounded_store: SqlWorkflowStore
) -> None:
    store = bounded_store
    workflow = stored(store)
    stage = workflow.stages[0]
    stage.status = WorkflowStatus.RUNNING
    stage.context = {**stage.context, "written": True}

    with holding(url, dialect, store, StageRow, stage.id):
        call = bounded(f"{dialect} stuck lock: store_stage", lambda: store.store_stage(stage), DEADLINE)

        assert isinstance(call.error, LockTimeoutError), call.error
        assert call.seconds < DEADLINE + 1.5
        assert stage.version == 0  # the object is as it was, like the row
    found = store.retrieve_stage(stage.id)
    assert (found.version, found.status, found.context) == (0, WorkflowStatus.NOT_STARTED, {"i": 0})

    store.store_stage(stage)  # the holder let go: the very same call goes through

    found = store.retrieve_stage(stage.id)
    assert (found.version, found.status, found.context) == (1, WorkflowStatus.RUNNING, stage.context)
    assert stage.version == 1


def test_a_workflow_update_waiting_on_a_held_row_lock_fails_in_time_then_succeeds(
    url: str, dialect: str, bounded_store: SqlWorkflowStore
) -> None:
    store = bounded_store
    workflow = stored(store)
    workflow.status = WorkflowStatus.RUNNING
    update: Callable[[], None] = lambda: store.update_status(workflow)  # noqa: E731

    with holding(url, dialect, store, WorkflowRow, workflow.id):
        call = bounded(f"{dialect} stuck lock: update_status", update, DEADLINE)

        assert isinstance(call.error, LockTimeoutError), call.error
        assert call.seconds < DEADLINE + 1.5
    assert store.retrieve_execution_summary(workflow.id).status == WorkflowStatus.NOT_STARTED

    update()

    assert store.retrieve_execution_summary(workflow.id).status == WorkflowStatus.RUNNING
