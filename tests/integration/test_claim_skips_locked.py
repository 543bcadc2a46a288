"""A claim never waits on a row another transaction has locked (``FOR UPDATE SKIP LOCKED``).

What this file proves, on PostgreSQL and MariaDB (the servers with SKIP LOCKED): while another
connection holds a row lock on the first due message (``SELECT ... FOR UPDATE`` by id, in an open
transaction), ``poll_one()`` returns the second due message at once; with both rows locked it
returns None at once; and once the lock is released the first message is delivered. A claim
that waited on the lock instead would still be blocked when the poller's thread is joined, so
the test fails (after a bounded join) rather than hangs; the lock is released in any case.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, column, create_engine, select, table
from sqlalchemy.pool import NullPool

from stabilize.persistence.sql.engine import normalize_url
from stabilize.queue import SqlQueue, StartWorkflow
from stabilize.queue.messages import Message

pytestmark = pytest.mark.parametrize("dialect", ["postgresql", "mariadb"], indirect=True)

#: A poll takes milliseconds; a poll blocked on the lock would wait for the lock's release.
JOIN_SECONDS = 20

QUEUE_ROWS = table("queue_messages", column("id"), column("message_id"), column("deliver_at"))


@contextmanager
def locked(url: str, message_ids: list[str]) -> Iterator[Connection]:
    """Another client's open transaction holding row locks on these messages' rows."""
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            try:
                for message_id in message_ids:
                    row = connection.execute(
                        select(QUEUE_ROWS.c.id).where(QUEUE_ROWS.c.message_id == message_id).with_for_update()
                    ).one()
                    assert row.id is not None
                yield connection
            finally:
                transaction.rollback()
    finally:
        engine.dispose()


def poll_in_thread(queue: SqlQueue) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def poll() -> None:
        try:
            outcome["message"] = queue.poll_one()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    return thread, outcome


def polled(queue: SqlQueue) -> Message | None:
    """``poll_one`` in a thread, joined with a bound: a poll waiting on a lock fails the test."""
    thread, outcome = poll_in_thread(queue)
    thread.join(JOIN_SECONDS)
    assert not thread.is_alive(), "poll_one waited on a row another transaction has locked"
    assert "error" not in outcome, outcome.get("error")
    message: Message | None = outcome["message"]
    return message


def two_messages(queue: SqlQueue) -> tuple[StartWorkflow, StartWorkflow]:
    first, second = StartWorkflow(execution_id="first"), StartWorkflow(execution_id="second")
    queue.push(first)
    queue.push(second)
    with queue.engine.connect() as connection:
        order = connection.execute(
            select(QUEUE_ROWS.c.message_id).order_by(QUEUE_ROWS.c.deliver_at, QUEUE_ROWS.c.id)
        ).scalars()
        assert list(order) == [first.message_id, second.message_id]  # the first is due first
    return first, second


def test_a_poll_skips_the_locked_row_and_claims_the_next(url: str) -> None:
    queue = SqlQueue(url)
    first, second = two_messages(queue)
    with locked(url, [first.message_id]):
        thread, outcome = poll_in_thread(queue)
        thread.join(JOIN_SECONDS)
        blocked = thread.is_alive()
    # The lock is released here: a blocked poll ends now, and the check below reports it.
    thread.join(JOIN_SECONDS)
    assert not blocked, "poll_one waited on a row another transaction has locked"
    assert "error" not in outcome, outcome.get("error")
    message = outcome["message"]
    assert message is not None and message.message_id == second.message_id

    # Released, the first message is due and delivered; the second stays claimed.
    again = polled(queue)
    assert again is not None and again.message_id == first.message_id
    assert polled(queue) is None


def test_a_poll_with_every_due_row_locked_returns_nothing_at_once(url: str) -> None:
    queue = SqlQueue(url)
    first, second = two_messages(queue)
    with locked(url, [first.message_id, second.message_id]):
        thread, outcome = poll_in_thread(queue)
        thread.join(JOIN_SECONDS)
        blocked = thread.is_alive()
    thread.join(JOIN_SECONDS)
    assert not blocked, "poll_one waited on rows another transaction has locked"
    assert outcome == {"message": None}
    assert queue.size() == 2
    delivered = {m.message_id for m in (polled(queue), polled(queue)) if m is not None}
    assert delivered == {first.message_id, second.message_id}
