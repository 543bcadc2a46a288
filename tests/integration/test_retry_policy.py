"""The retry policy itself (issue 11): a transaction that loses a race runs again, whole, within
the ``RetryPolicy`` and the call's deadline, and fails with ``TransientError`` once its runs are
spent, having written nothing.

The races are forced, not hoped for. On PostgreSQL and MariaDB another client deadlocks with the
store's transaction on each of its first runs: it holds the stage row, waits until the store's
transaction (workflow row first, then the stage: the store's lock order) is waiting for it, then
asks for the workflow row. The server rolls the store's transaction back (it is made the victim:
on PostgreSQL the other client's deadlock check waits longer, on MariaDB the other client has
written more rows). On an in-memory SQLite database with a shared cache, another connection's
open write holds the table locks, which SQLite reports at once (``SQLITE_LOCKED``, no busy wait).
A SQLite file's write lock is waited for by the busy timeout instead: that ends the attempt as a
``LockTimeoutError`` (a ``TransientError`` too), without a rerun, whose wait would not fit.

Runs are counted with SQLAlchemy's events: pool checkouts (a unit checks out a connection per
run on the servers) and SQLite's ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, event, func, select, text, update
from sqlalchemy.pool import NullPool

from stabilize.errors import DatabaseUnavailableError, LockTimeoutError, TransientError
from stabilize.models import Workflow, WorkflowStatus
from stabilize.persistence.sql.engine import normalize_url
from stabilize.persistence.sql.faults import RetryPolicy
from stabilize.persistence.sql.rows import StageRow, WorkflowRow
from stabilize.persistence.sql.store import SqlWorkflowStore
from tests.faults.timing import bounded
from tests.integration.builders import chain

SERVERS = pytest.mark.parametrize("dialect", ["postgresql", "mariadb"], indirect=True)
#: The calls' deadline: two deadlocks (PostgreSQL checks for one after a second of waiting) and
#: the reruns fit in it, inside each run's lock wait (0.8 of half the deadline).
DEADLINE = 10.0
#: Seconds any coordination step may take before the test fails instead of hanging.
STEP = 30.0


def step_of(store: SqlWorkflowStore, workflow: Workflow) -> Callable[[], None]:
    """One engine step: the workflow goes RUNNING with its first stage, in one transaction."""
    workflow.status = WorkflowStatus.RUNNING
    stage = workflow.stages[0]
    stage.status = WorkflowStatus.RUNNING

    def run() -> None:
        with store.transaction() as txn:
            txn.update_workflow_status(workflow)
            txn.store_stage(stage)

    return run


def written(store: SqlWorkflowStore, workflow: Workflow) -> tuple[Any, ...]:
    stage = store.retrieve_stage(workflow.stages[0].id)
    return store.retrieve_execution_summary(workflow.id).status, stage.status, stage.version


NOTHING_WRITTEN = (WorkflowStatus.NOT_STARTED, WorkflowStatus.NOT_STARTED, 0)
WRITTEN_ONCE = (WorkflowStatus.RUNNING, WorkflowStatus.RUNNING, 1)


@contextmanager
def listening(engine: Engine, name: str, listener: Callable[..., Any]) -> Iterator[None]:
    """``listener`` hears the ``name`` events of ``engine`` while the block runs."""
    event.listen(engine, name, listener)
    try:
        yield
    finally:
        event.remove(engine, name, listener)


@contextmanager
def counted(engine: Engine, name: str, matches: Callable[..., bool]) -> Iterator[list[Any]]:
    """The ``name`` events of ``engine`` for which ``matches(*args)`` holds, while the block runs."""
    seen: list[Any] = []

    def record(*args: Any) -> None:
        if matches(*args):
            seen.append(args)

    with listening(engine, name, record):
        yield seen


# -- PostgreSQL and MariaDB: forced deadlocks ------------------------------------------------------


class Deadlocker:
    """Another client that deadlocks with the store's step on each of its first ``rounds`` runs.

    Each run of the store's unit checks out a connection; the checkout waits (``before_run``)
    until this client holds the stage row, so every run meets the same trap.
    """

    def __init__(self, url: str, dialect: str, workflow: Workflow, scratch: Workflow, rounds: int) -> None:
        self.dialect = dialect
        self.workflow, self.scratch = workflow, scratch
        self.rounds = rounds
        self.engine = create_engine(normalize_url(url), poolclass=NullPool)
        self.observer = create_engine(normalize_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self._start = threading.Semaphore(0)
        self._holding = threading.Semaphore(0)
        self.runs = 0
        self.failed: list[BaseException] = []
        self._thread = threading.Thread(target=self._work, name="deadlocker", daemon=True)

    def __enter__(self) -> Deadlocker:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.rounds = 0
        self._start.release()  # wakes a thread still waiting for a round
        self._thread.join(STEP)
        self.engine.dispose()
        self.observer.dispose()
        assert not self._thread.is_alive(), "the deadlocking client did not finish"
        assert not self.failed, self.failed

    def before_run(self, *_args: Any) -> None:
        """Pool checkout of the store (its next run): trap it first, while rounds are left."""
        self.runs += 1
        if self.runs <= self.rounds:
            self._start.release()
            assert self._holding.acquire(timeout=STEP), "the deadlocking client never took its lock"

    def _work(self) -> None:
        try:
            for _ in range(self.rounds):
                assert self._start.acquire(timeout=STEP)
                if self.rounds == 0:
                    return
                with self.engine.connect() as connection:
                    self._round(connection)
        except BaseException as error:
            self.failed.append(error)
            self._holding.release()

    def _round(self, connection: Connection) -> None:
        me = self._session_id(connection)
        if self.dialect == "postgresql":
            # The store's deadlock check (after its 1 s of waiting) runs first: it is the victim.
            connection.execute(text("SET LOCAL deadlock_timeout = '60s'"))
        else:
            # InnoDB rolls back the transaction that wrote fewer rows: make it the store's.
            connection.execute(
                update(StageRow)
                .where(StageRow.workflow_id == self.scratch.id)
                .values(version=StageRow.version + 1)
            )
        stage_id, workflow_id = self.workflow.stages[0].id, self.workflow.id
        connection.execute(select(StageRow.id).where(StageRow.id == stage_id).with_for_update())
        self._holding.release()
        self._until_waiting(me)
        # Closes the cycle: the store holds the workflow row and waits for the stage row.
        connection.execute(select(WorkflowRow.id).where(WorkflowRow.id == workflow_id).with_for_update())
        connection.rollback()

    def _session_id(self, connection: Connection) -> int:
        query = "SELECT pg_backend_pid()" if self.dialect == "postgresql" else "SELECT CONNECTION_ID()"
        return int(connection.execute(text(query)).scalar_one())

    def _until_waiting(self, me: int) -> None:
        """Poll until another session of this database waits for a lock (the store's, for ours)."""
        if self.dialect == "postgresql":
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> :me"
            )
        else:
            waiting = text(
                "SELECT count(*) FROM information_schema.innodb_trx t"
                " JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id"
                " WHERE t.trx_state = 'LOCK WAIT' AND p.db = DATABASE() AND p.id <> :me"
            )
        deadline = time.monotonic() + STEP
        with self.observer.connect() as observer:
            while observer.execute(waiting, {"me": me}).scalar_one() == 0:
                assert time.monotonic() < deadline, "the store's transaction never waited for the lock"
                time.sleep(0.01)


def deadlock_codes(dialect: str) -> Callable[..., bool]:
    def is_deadlock(context: Any) -> bool:
        error = context.original_exception
        if dialect == "postgresql":
            return getattr(error, "sqlstate", None) == "40P01"
        return bool(getattr(error, "args", None)) and error.args[0] == 1213

    return is_deadlock


@pytest.fixture
def workflows(url: str) -> tuple[Workflow, Workflow]:
    store = SqlWorkflowStore(url)
    workflow, scratch = chain(2, 1), chain(30, 0)
    store.store(workflow)
    store.store(scratch)
    return workflow, scratch


@SERVERS
def test_a_deadlock_reruns_the_transaction_within_the_policy(
    url: str, dialect: str, workflows: tuple[Workflow, Workflow]
) -> None:
    workflow, scratch = workflows
    store = SqlWorkflowStore(url, retry_policy=RetryPolicy(attempts=3), operation_timeout=DEADLINE)
    step = step_of(store, workflow)

    with (
        Deadlocker(url, dialect, workflow, scratch, rounds=1) as other,
        listening(store.engine, "checkout", other.before_run),
        counted(store.engine, "handle_error", deadlock_codes(dialect)) as deadlocks,
    ):
        call = bounded(f"{dialect} one deadlock, 3 runs allowed", step, DEADLINE)

    assert call.error is None, call.error
    assert len(deadlocks) == 1 and other.runs == 2  # lost once, ran again, committed
    assert written(store, workflow) == WRITTEN_ONCE  # the rerun wrote it, once
    assert workflow.stages[0].version == 1


@SERVERS
def test_deadlocks_on_every_run_spend_the_retries_and_write_nothing(
    url: str, dialect: str, workflows: tuple[Workflow, Workflow]
) -> None:
    workflow, scratch = workflows
    store = SqlWorkflowStore(url, retry_policy=RetryPolicy(attempts=2), operation_timeout=DEADLINE)
    step = step_of(store, workflow)

    with (
        Deadlocker(url, dialect, workflow, scratch, rounds=2) as other,
        listening(store.engine, "checkout", other.before_run),
        counted(store.engine, "handle_error", deadlock_codes(dialect)) as deadlocks,
    ):
        call = bounded(f"{dialect} a deadlock on each of 2 runs", step, DEADLINE)

    assert isinstance(call.error, TransientError), call.error
    assert not isinstance(call.error, LockTimeoutError | DatabaseUnavailableError)
    assert len(deadlocks) == 2 and other.runs == 2  # every run the policy allows, no more
    assert written(store, workflow) == NOTHING_WRITTEN
    assert workflow.stages[0].version == 0
    # The store is usable, and the same step now goes through.
    step()
    assert written(store, workflow) == WRITTEN_ONCE


# -- SQLite ----------------------------------------------------------------------------------------


def is_begin_immediate(_connection: Any, _cursor: Any, statement: str, *_rest: Any) -> bool:
    return statement == "BEGIN IMMEDIATE"


@contextmanager
def writing_in(url: str) -> Iterator[Connection]:
    """Another connection with a write transaction open on ``url`` (``rollback`` ends it)."""
    engine = create_engine(normalize_url(url), poolclass=NullPool, connect_args={"check_same_thread": False})
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            connection.execute(update(WorkflowRow).values(name=func.lower(WorkflowRow.name)))
            try:
                yield connection
            finally:
                connection.rollback()
    finally:
        engine.dispose()


@pytest.fixture
def shared_cache_store(fresh_url: Callable[[], str]) -> Iterator[tuple[str, SqlWorkflowStore]]:
    url = fresh_url()
    store = SqlWorkflowStore(
        url, create_tables=True, retry_policy=RetryPolicy(attempts=4), operation_timeout=DEADLINE
    )
    try:
        yield url, store
    finally:
        store.close()


@pytest.mark.parametrize("dialect", ["sqlite_memory"], indirect=True)
def test_a_locked_shared_cache_reruns_the_transaction(
    shared_cache_store: tuple[str, SqlWorkflowStore], dialect: str
) -> None:
    url, store = shared_cache_store
    workflow = chain(2, 1)
    store.store(workflow)
    step = step_of(store, workflow)

    with writing_in(url) as other:
        locked: list[Any] = []

        def release_on_first_lock(context: Any) -> None:
            # The first run found the table locked: the other writer ends, so the rerun finds
            # the database free (in the store's thread, before it reruns: no timing involved).
            if not locked:
                other.rollback()
            locked.append(context.original_exception)

        with (
            counted(store.engine, "before_cursor_execute", is_begin_immediate) as runs,
            listening(store.engine, "handle_error", release_on_first_lock),
        ):
            call = bounded(f"{dialect} locked once", step, DEADLINE)

    assert call.error is None, call.error
    assert len(locked) == 1 and len(runs) == 2
    assert getattr(locked[0], "sqlite_errorname", None) == "SQLITE_LOCKED_SHAREDCACHE"
    assert written(store, workflow) == WRITTEN_ONCE


@pytest.mark.parametrize("dialect", ["sqlite_memory"], indirect=True)
def test_a_shared_cache_locked_on_every_run_spends_the_retries(
    shared_cache_store: tuple[str, SqlWorkflowStore], dialect: str
) -> None:
    url, store = shared_cache_store
    workflow = chain(2, 1)
    store.store(workflow)
    step = step_of(store, workflow)

    with (
        writing_in(url),
        counted(store.engine, "before_cursor_execute", is_begin_immediate) as runs,
    ):
        call = bounded(f"{dialect} locked on every run", step, DEADLINE)

    assert isinstance(call.error, TransientError), call.error
    assert not isinstance(call.error, LockTimeoutError | DatabaseUnavailableError)
    assert len(runs) == store.retry_policy.attempts == 4
    assert written(store, workflow) == NOTHING_WRITTEN
    step()
    assert written(store, workflow) == WRITTEN_ONCE


@pytest.mark.parametrize("dialect", ["sqlite_file"], indirect=True)
def test_a_busy_sqlite_file_waits_its_busy_timeout_once(url: str, dialect: str) -> None:
    store = SqlWorkflowStore(url, operation_timeout=3.0)
    workflow = chain(2, 1)
    store.store(workflow)
    step = step_of(store, workflow)

    with writing_in(url), counted(store.engine, "before_cursor_execute", is_begin_immediate) as runs:
        call = bounded(f"{dialect} busy", step, 3.0)

    # A TransientError, named for what happened; the busy wait was the attempt's whole bound, so
    # no rerun fits in the deadline.
    assert isinstance(call.error, LockTimeoutError), call.error
    assert len(runs) == 1
    assert written(store, workflow) == NOTHING_WRITTEN
    step()
    assert written(store, workflow) == WRITTEN_ONCE
    store.close()
