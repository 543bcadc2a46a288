"""The server drops the pooled connections under a live store and queue (a failover, an idle
timeout, an operator's kill): the pool still holds them, and they are too fresh to be pinged.

A read, or a transaction that had not reached COMMIT, runs again on a fresh connection and the
caller never notices. A write that commits by itself (on PostgreSQL: a push, an ack, the
one-statement claim, a lone compare-and-set) may have committed when its connection died, so it is
never rerun: it fails with ``CommitUnknownError`` (a ``DatabaseUnavailableError`` that says the
write may or may not have committed) and the next call works.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.pool import NullPool

from stabilize.errors import CommitUnknownError
from stabilize.models import WorkflowStatus
from stabilize.persistence.sql.engine import get_engine, normalize_url
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.messages import StartWorkflow
from stabilize.queue.sql import SqlQueue
from tests.integration.builders import chain

pytestmark = pytest.mark.parametrize("dialect", ["postgresql", "mariadb"])


@pytest.fixture(autouse=True)
def empty_pool(url: str) -> None:
    """Each test starts from an empty pool. Connections an earlier test of the process left idle
    there would die with the first drop, and SQLAlchemy, having seen one dead connection, replaces
    the others as older than it without an ``invalidate`` event: a later drop's dead connection
    would then go uncounted, whatever the store did."""
    get_engine(url).dispose()


def drop_other_connections(url: str, dialect: str) -> int:
    """End every other session on this test's database, as the server would; returns how many."""
    engine = create_engine(normalize_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        if dialect == "postgresql":
            ended = connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).all()
            count = len(ended)
        else:
            ids = connection.execute(
                text(
                    "SELECT id FROM information_schema.processlist"
                    " WHERE db = DATABASE() AND id <> CONNECTION_ID()"
                )
            ).scalars()
            count = 0
            for session_id in ids:
                connection.exec_driver_sql("KILL CONNECTION %s", (int(session_id),))
                count += 1
    engine.dispose()
    return count


@contextmanager
def invalidations(engine: Engine) -> Iterator[list[Any]]:
    """The pooled connections the engine finds dead and drops (SQLAlchemy's ``invalidate`` pool
    event: a statement that failed on a lost connection, or a checkout ping that did)."""
    dropped: list[Any] = []

    def record(_dbapi_connection: Any, _record: Any, exception: Any) -> None:
        dropped.append(exception)

    event.listen(engine, "invalidate", record)
    try:
        yield dropped
    finally:
        event.remove(engine, "invalidate", record)


def test_reads_and_transactions_rerun_on_a_fresh_connection(url: str, dialect: str) -> None:
    store = SqlWorkflowStore(url)
    workflow = chain(3, 2)
    store.store(workflow)

    with invalidations(store.engine) as dropped:
        assert drop_other_connections(url, dialect) >= 1  # the store's pooled connection among them
        assert store.retrieve(workflow.id) == workflow
        # The drop really killed a connection the store held: it was found dead and replaced.
        after_retrieve = len(dropped)
        assert after_retrieve >= 1

        drop_other_connections(url, dialect)
        assert store.get_merged_ancestor_outputs(workflow.id, workflow.stages[-1].ref_id) == {}
        after_merge = len(dropped)
        assert after_merge > after_retrieve

        stage = workflow.stages[0]
        stage.status = WorkflowStatus.RUNNING
        workflow.status = WorkflowStatus.RUNNING
        drop_other_connections(url, dialect)
        with store.transaction() as txn:  # two guarded writes: a transaction, never committed by itself
            txn.store_stage(stage, expected_phase="NOT_STARTED")
            txn.update_workflow_status(workflow)
        assert len(dropped) > after_merge
    assert stage.version == 1
    assert store.retrieve(workflow.id).stages[0].version == 1  # written once, not twice


def test_a_lone_compare_and_set_that_commits_by_itself_is_never_rerun(url: str, dialect: str) -> None:
    store = SqlWorkflowStore(url)
    workflow = chain(2, 1)
    store.store(workflow)
    stage = workflow.stages[0]
    stage.status = WorkflowStatus.RUNNING
    assert drop_other_connections(url, dialect) >= 1
    if dialect == "postgresql":
        # One UPDATE in autocommit: whether it committed is unknown, so it is not run again.
        with pytest.raises(CommitUnknownError, match="may or may not have committed"):
            store.store_stage(stage, expected_phase="NOT_STARTED")
        assert stage.version == 0  # the object moves only after a commit it saw
        row = store.retrieve_stage(stage.id)
        assert (row.version, row.status) == (0, WorkflowStatus.NOT_STARTED)  # here: it did not
    else:
        # MariaDB runs it in a transaction (an autocommit switch costs a round trip): rerun.
        store.store_stage(stage, expected_phase="NOT_STARTED")
        assert store.retrieve_stage(stage.id).version == stage.version == 1


def test_a_write_that_commits_by_itself_is_never_rerun(url: str, dialect: str) -> None:
    queue = SqlQueue(url)
    queue.clear()
    queue.push(StartWorkflow(execution_id="warm"))  # a pooled connection to drop

    with invalidations(queue.engine) as dropped:
        assert drop_other_connections(url, dialect) >= 1
        try_the_push(queue, dialect)
        assert len(dropped) >= 1  # the push met a dropped connection

    queue.push(StartWorkflow(execution_id="next"))
    found = [queue.poll_one() for _ in range(queue.size())]
    assert sorted(m.execution_id for m in found if m is not None) == sorted(  # type: ignore[attr-defined]
        {"warm", "next"} if dialect == "postgresql" else {"warm", "lost", "next"}
    )


def try_the_push(queue: SqlQueue, dialect: str) -> None:
    if dialect == "postgresql":
        # The push commits by itself (autocommit): it fails clearly rather than risk a second copy.
        with pytest.raises(CommitUnknownError, match="may or may not have committed"):
            queue.push(StartWorkflow(execution_id="lost"))
    else:
        # MariaDB's autocommit switch costs a round trip, so a push is an ordinary transaction:
        # it never reached COMMIT, and runs again on a fresh connection.
        queue.push(StartWorkflow(execution_id="lost"))
