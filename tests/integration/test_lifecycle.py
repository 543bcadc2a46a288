"""``close()`` and context managers on the store and the queue (issue 12, item 1).

Stores and queues of one URL share one engine; each is one of its users. What is proven here, on
every dialect: ``close`` is idempotent; a closed object refuses calls with a clear error while the
others of its engine keep working; the last user to close releases the engine's connections (its
pool holds none afterwards, and an in-memory SQLite database ends with them); an engine the caller
passed in is the caller's and stays usable; both classes are context managers.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text

from stabilize.models.ids import new_id
from stabilize.persistence.sql.engine import get_engine
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue import SqlQueue, StartWorkflow
from tests.integration.builders import full_workflow


def pooled(engine: Engine) -> int:
    """Connections the engine's pool holds open, idle or in use."""
    status = engine.pool.status()
    return engine.pool.checkedin() + engine.pool.checkedout() if "Current Checked out" in status else 0


def test_close_is_idempotent_and_a_closed_store_refuses_calls(fresh_url: Callable[[], str]) -> None:
    url = fresh_url()
    store = SqlWorkflowStore(url, create_tables=True)
    workflow = full_workflow()
    store.store(workflow)
    store.close()
    store.close()  # a second close does nothing
    with pytest.raises(RuntimeError, match="closed"):
        store.retrieve(workflow.id)
    with pytest.raises(RuntimeError, match="closed"), store.transaction() as txn:
        txn.mark_message_processed(new_id())


def test_the_last_user_of_an_engine_releases_its_connections(fresh_url: Callable[[], str]) -> None:
    url = fresh_url()
    store = SqlWorkflowStore(url, create_tables=True)
    queue = SqlQueue(url)
    assert queue.engine is store.engine
    store.store(full_workflow())
    queue.push(StartWorkflow(execution_id=new_id()))
    store.close()
    # The queue still works on the shared engine after the store closed.
    assert queue.size() == 1
    with pytest.raises(RuntimeError, match="closed"):
        store.exists(new_id())
    queue.close()
    assert pooled(store.engine) == 0
    # A new user of the URL connects afresh: a file or a server kept the data; an in-memory SQLite
    # database ended with its last connection, so it starts empty (and needs its tables again).
    memory = "mode=memory" in url
    with SqlWorkflowStore(url, create_tables=memory) as again:
        assert again.engine is get_engine(url)
        assert again.count_by_application("billing") == (0 if memory else 1)


def test_context_managers_close_on_exit_and_on_error(fresh_url: Callable[[], str]) -> None:
    url = fresh_url()
    with SqlWorkflowStore(url, create_tables=True) as store, SqlQueue(url) as queue:
        queue.push(StartWorkflow(execution_id=new_id()))
        assert store.exists(new_id()) is False
    with pytest.raises(RuntimeError, match="closed"):
        queue.size()
    with pytest.raises(ZeroDivisionError), SqlQueue(url) as failing:
        1 / 0  # noqa: B018
    with pytest.raises(RuntimeError, match="closed"):
        failing.size()


def test_an_engine_of_the_callers_is_never_disposed(url: str) -> None:
    engine = get_engine(url)
    with engine.connect() as connection:  # the caller's own use of its engine, before and after
        connection.execute(text("SELECT 1"))
    store = SqlWorkflowStore(engine)
    queue = SqlQueue(engine)
    store.close()
    queue.close()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    with pytest.raises(RuntimeError, match="closed"):
        store.exists(new_id())
