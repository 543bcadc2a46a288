"""The SQL queue's delivery semantics on every dialect, driven by a fake clock (no sleeping).

Every test here moves time by hand: a lock lapses because the clock passed it, not because the
test waited, so the outcome never depends on the machine's speed.
"""

from __future__ import annotations

import dataclasses
import types
from datetime import timedelta
from typing import Any, get_type_hints

import pytest
from sqlalchemy import Connection, func, insert, select, update

from stabilize.errors import ValidationError
from stabilize.models.ids import new_id, now_ms
from stabilize.persistence import create_queue
from stabilize.persistence.sql.engine import get_engine
from stabilize.persistence.sql.rows import DeadLetterRow, QueueMessageRow
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue import (
    MESSAGE_TYPES,
    CompleteStage,
    JumpToStage,
    Message,
    PostgresQueue,
    RunTask,
    SqliteQueue,
    SqlQueue,
    StartStage,
    StartTask,
    StartWorkflow,
)
from stabilize.queue.claim import CompareAndSetClaimer, ReturningClaimer, SkipLockedClaimer
from tests.message_samples import non_default

LOCK = 30_000  # ms


class FakeClock:
    """Epoch-ms time that only moves when a test says so; starts at the real time."""

    def __init__(self) -> None:
        self.now = now_ms()

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(url: str, clock: FakeClock) -> SqlQueue:
    return SqlQueue(url, lock_duration=timedelta(milliseconds=LOCK), max_attempts=3, clock=clock)


def other_poller(queue: SqlQueue) -> SqlQueue:
    """A second consumer on the same database and clock (another worker, as far as rows go)."""
    return SqlQueue(
        queue.engine, lock_duration=queue.lock_duration, max_attempts=queue.max_attempts, clock=queue.clock
    )


# -- sample messages ------------------------------------------------------------------------------


def sample(cls: type[Message]) -> Message:
    hints = get_type_hints(cls)
    bookkeeping = {"message_id", "created_at", "attempts", "max_attempts", "last_error", "last_error_type"}
    fields = [f for f in dataclasses.fields(cls) if f.name not in bookkeeping]
    return cls(**{f.name: non_default(f.name, hints[f.name], i) for i, f in enumerate(fields)})


def count(queue: SqlQueue, row: type[QueueMessageRow] | type[DeadLetterRow] = QueueMessageRow) -> int:
    with queue.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(row)).scalar_one()


# -- round trip and order -------------------------------------------------------------------------


def test_every_message_type_round_trips(queue: SqlQueue) -> None:
    sent = [sample(cls) for cls in sorted(MESSAGE_TYPES.values(), key=lambda c: c.__name__)]
    for message in sent:
        queue.push(message)
    received = []
    while (delivered := queue.poll_one()) is not None:
        received.append(delivered)
        queue.ack(delivered)
    assert len(received) == len(sent) == len(MESSAGE_TYPES)
    # Delivery bookkeeping: attempts count this claim and max_attempts shows the queue's limit
    # (3 here); every other field is exactly what was pushed.
    assert received == [dataclasses.replace(m, attempts=1, max_attempts=3) for m in sent]
    assert [type(m) for m in received] == [type(m) for m in sent]
    assert queue.size() == 0


def test_ready_messages_come_in_delivery_time_order(queue: SqlQueue, clock: FakeClock) -> None:
    late = StartWorkflow(execution_id="late")
    early = StartWorkflow(execution_id="early")
    first_now = StartWorkflow(execution_id="now-1")
    second_now = StartWorkflow(execution_id="now-2")
    queue.push(late, timedelta(seconds=2))
    queue.push(early, 1.0)
    queue.push(first_now)
    queue.push(second_now)
    clock.advance(2_000)
    order = []
    while (message := queue.poll_one()) is not None:
        order.append(message.execution_id)  # type: ignore[attr-defined]
        queue.ack(message)
    assert order == ["now-1", "now-2", "early", "late"]


def test_delayed_delivery_is_never_early(queue: SqlQueue, clock: FakeClock) -> None:
    queue.push(StartStage(stage_id="s"), timedelta(seconds=5))
    queue.push(StartStage(stage_id="fraction"), 0.0004)  # rounds up to 1 ms, never down to 0
    assert queue.poll_one() is None
    clock.advance(1)
    fraction = queue.poll_one()
    assert fraction is not None and fraction.stage_id == "fraction"  # type: ignore[attr-defined]
    clock.advance(4_998)
    assert queue.poll_one() is None
    clock.advance(1)
    message = queue.poll_one()
    assert message is not None and message.stage_id == "s"  # type: ignore[attr-defined]


def test_bad_delays_and_settings_are_refused(url: str) -> None:
    queue = SqlQueue(url)
    with pytest.raises(ValidationError, match="delay"):
        queue.push(StartWorkflow(), float("nan"))
    with pytest.raises(ValidationError, match="lock_duration"):
        SqlQueue(url, lock_duration=0)
    with pytest.raises(ValidationError, match="max_attempts"):
        SqlQueue(url, max_attempts=0)
    with pytest.raises(ValidationError, match="table_name"):
        SqlQueue(url, table_name="other_queue")
    with pytest.raises(ValidationError, match=r"message\(StartTask\)\.task_id"):
        queue.push(StartTask(task_id="x" * 27))
    with pytest.raises(ValidationError, match=r"jump_context"):
        queue.push(JumpToStage(jump_context={"bad": object()}))
    assert queue.size() == 0


def test_a_negative_delay_means_now(queue: SqlQueue) -> None:
    queue.push(StartWorkflow(), -5)
    assert queue.poll_one() is not None


# -- visibility locks -----------------------------------------------------------------------------


def test_a_claimed_message_is_invisible_to_other_pollers(queue: SqlQueue, clock: FakeClock) -> None:
    queue.push(StartWorkflow(execution_id="one"))
    other = other_poller(queue)
    held = queue.poll_one()
    assert held is not None
    clock.advance(LOCK - 1)
    assert other.poll_one() is None
    assert queue.poll_one() is None  # not even the holder gets it twice
    assert queue.size() == 1


def test_extend_lock_keeps_it_invisible_past_its_first_lock(queue: SqlQueue, clock: FakeClock) -> None:
    queue.push(StartWorkflow())
    other = other_poller(queue)
    held = queue.poll_one()
    assert held is not None
    clock.advance(LOCK - 1)
    assert queue.extend_lock(held)
    clock.advance(LOCK - 1)  # well past the first lock's end
    assert other.poll_one() is None
    assert queue.extend_lock(held, timedelta(seconds=1))
    clock.advance(1_000)
    again = other.poll_one()
    assert again is not None and again.attempts == 2


def test_a_lapsed_lock_makes_it_visible_again_with_one_more_attempt(
    queue: SqlQueue, clock: FakeClock
) -> None:
    message = RunTask(task_id="t1")
    queue.push(message)
    first = queue.poll_one()
    assert first is not None and first.attempts == 1
    clock.advance(LOCK)
    second = other_poller(queue).poll_one()
    assert second is not None
    assert second.attempts == 2
    assert second.message_id == first.message_id == message.message_id


def test_a_stale_holder_cannot_ack_extend_or_reschedule_the_new_delivery(
    queue: SqlQueue, clock: FakeClock
) -> None:
    queue.push(StartWorkflow())
    stale = queue.poll_one()
    assert stale is not None
    clock.advance(LOCK)
    fresh = other_poller(queue).poll_one()
    assert fresh is not None
    assert not queue.extend_lock(stale)
    queue.reschedule(stale, 0)
    queue.ack(stale)
    assert queue.size() == 1
    assert queue.poll_one() is None  # still locked for the fresh holder
    queue.ack(fresh)
    assert queue.size() == 0


def test_ack_removes_only_the_delivered_message(queue: SqlQueue) -> None:
    queue.push(StartWorkflow(execution_id="a"))
    queue.push(StartWorkflow(execution_id="b"))
    message = queue.poll_one()
    assert message is not None
    queue.ack(message)
    queue.ack(message)  # twice is harmless
    assert queue.size() == 1
    assert not queue.extend_lock(message)


def test_reschedule_releases_the_lock_and_keeps_identity(queue: SqlQueue, clock: FakeClock) -> None:
    queue.push(CompleteStage(stage_id="s"))
    message = queue.poll_one()
    assert isinstance(message, CompleteStage)
    message.retry_count += 1
    message.set_error_context(RuntimeError("upstream not done"))
    queue.reschedule(message, timedelta(seconds=2))
    queue.ack(message)  # the delivery ended with the reschedule: nothing to ack
    clock.advance(1_999)
    assert queue.poll_one() is None
    clock.advance(1)
    again = queue.poll_one()
    assert isinstance(again, CompleteStage)
    assert again.message_id == message.message_id
    assert again.attempts == 2
    assert again.retry_count == 1
    assert again.last_error == "upstream not done"
    assert again.last_error_type == "RuntimeError"


def test_poll_acks_after_the_callback(queue: SqlQueue) -> None:
    queue.push(StartWorkflow(execution_id="x"))
    seen: list[Message] = []
    queue.poll(seen.append)
    queue.poll(seen.append)  # nothing due: the callback is not called
    assert len(seen) == 1
    assert queue.size() == 0


def test_a_failing_callback_keeps_the_lock_and_records_the_error(queue: SqlQueue, clock: FakeClock) -> None:
    queue.push(StartWorkflow())

    def fail(message: Message) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        queue.poll(fail)
    assert queue.poll_one() is None  # the retry waits for the lock to lapse
    clock.advance(LOCK)
    retried = queue.poll_one()
    assert retried is not None
    assert retried.attempts == 2
    assert retried.last_error == "ValueError: boom"


# -- attempts and dead letters --------------------------------------------------------------------


def test_max_attempts_moves_it_to_the_dead_letters_and_replay_brings_it_back(
    queue: SqlQueue, clock: FakeClock
) -> None:
    message = StartTask(execution_id="e1", task_id="t1")
    queue.push(message)
    for attempt in (1, 2, 3):
        held = queue.poll_one()
        assert held is not None and held.attempts == attempt
        with queue.engine.begin() as connection:  # the consumer got as far as recording an error
            connection.execute(update(QueueMessageRow).values(last_error=f"failure {attempt}"))
        clock.advance(LOCK)
    assert queue.poll_one() is None  # the fourth claim dead-letters instead of delivering
    assert queue.size() == 0
    assert queue.dlq_size() == 1
    [entry] = queue.list_dlq()
    assert entry["message_id"] == message.message_id
    assert entry["attempts"] == 3
    assert entry["last_error"] == entry["error"] == "failure 3"
    assert entry["message_type"] == "StartTask"
    assert not queue.has_pending_message_for_task("t1")

    assert queue.replay_dlq(entry["id"])
    assert not queue.replay_dlq(entry["id"])
    assert queue.dlq_size() == 0
    back = queue.poll_one()
    assert isinstance(back, StartTask)
    assert back.message_id == message.message_id
    assert back.attempts == 1
    assert back.task_id == "t1"


def test_a_callback_failing_on_its_last_attempt_goes_to_the_dead_letters_at_once(
    queue: SqlQueue, clock: FakeClock
) -> None:
    queue.push(StartWorkflow(max_attempts=1))  # the message asks for fewer tries than the queue

    def handler(message: Message) -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        queue.poll(handler)
    assert queue.size() == 0
    [entry] = queue.list_dlq()
    assert entry["last_error"] == "KeyError: 'missing'"
    assert entry["max_attempts"] == 1


def test_the_queue_limit_caps_the_message_limit(url: str, clock: FakeClock) -> None:
    strict = SqlQueue(url, lock_duration=1, max_attempts=1, clock=clock)
    strict.push(StartWorkflow(max_attempts=50))
    delivered = strict.poll_one()
    assert delivered is not None and delivered.max_attempts == 1
    clock.advance(1_000)
    assert strict.check_and_move_expired() == 1
    assert strict.dlq_size() == 1
    assert strict.list_dlq()[0]["last_error"] == "used all 1 attempts"


def test_check_and_move_expired_leaves_in_flight_messages_alone(queue: SqlQueue, clock: FakeClock) -> None:
    queue.push(StartWorkflow(max_attempts=1))
    held = queue.poll_one()
    assert held is not None
    assert queue.check_and_move_expired() == 0
    queue.ack(held)  # the holder's last attempt succeeded after all
    assert queue.dlq_size() == 0 and queue.size() == 0


def test_move_to_dlq_by_message_by_id_and_by_row(queue: SqlQueue) -> None:
    for name in ("a", "b", "c"):
        queue.push(StartWorkflow(execution_id=name))
    delivered = queue.poll_one()
    assert delivered is not None
    assert queue.move_to_dlq(delivered, "poison")
    queue.ack(delivered)  # released by the move: no-op
    with queue.engine.connect() as connection:
        rows = connection.execute(select(QueueMessageRow.id, QueueMessageRow.message_id)).all()
    assert queue.move_to_dlq(rows[0].message_id, "by message id")
    assert queue.move_to_dlq(int(rows[1].id))
    assert not queue.move_to_dlq("no-such-message")
    assert queue.size() == 0
    assert sorted(str(e["last_error"]) for e in queue.list_dlq()) == ["None", "by message id", "poison"]
    assert len(queue.list_dlq(limit=2)) == 2
    assert len(queue.list_dlq(message_type="StartWorkflow")) == 3
    assert queue.list_dlq(message_type="RunTask") == []
    assert queue.replay_dlq(queue.list_dlq()[0]["message_id"])
    assert queue.clear_dlq() == 2
    assert queue.dlq_size() == 0 and queue.size() == 1


def test_an_undecodable_row_is_dead_lettered_not_delivered(queue: SqlQueue) -> None:
    queue.push(StartWorkflow(execution_id="bad"))
    queue.push(StartWorkflow(execution_id="good"))
    with queue.engine.begin() as connection:
        connection.execute(
            update(QueueMessageRow)
            .where(QueueMessageRow.execution_id == "bad")
            .values(message_type="NoSuchType")
        )
    message = queue.poll_one()
    assert message is not None and message.execution_id == "good"  # type: ignore[attr-defined]
    [entry] = queue.list_dlq()
    assert "unknown message type" in entry["last_error"]


# -- identity: push never merges, ensure does -----------------------------------------------------


def test_push_never_merges_equal_messages(queue: SqlQueue) -> None:
    message = StartStage(execution_id="e", stage_id="s")
    queue.push(message)
    queue.push(message)  # the same object again: a second message under a fresh id
    queue.push(dataclasses.replace(message))  # an equal copy with the same id: also a second one
    assert queue.size() == 3
    with queue.engine.connect() as connection:
        ids = connection.execute(select(QueueMessageRow.message_id, QueueMessageRow.payload)).all()
    assert len({row.message_id for row in ids}) == 3
    assert message.message_id in {row.message_id for row in ids}
    assert all(row.payload["message_id"] == row.message_id for row in ids)


def test_repushing_a_delivered_or_processed_message_gets_a_new_id(
    queue: SqlQueue, store: SqlWorkflowStore
) -> None:
    queue.push(StartWorkflow(execution_id="e"))
    delivered = queue.poll_one()
    assert delivered is not None
    store.mark_message_processed(delivered.message_id)
    queue.ack(delivered)
    queue.push(delivered)  # e.g. a handler re-queueing what it received
    processed_copy = StartWorkflow(execution_id="e", message_id=delivered.message_id)
    queue.push(processed_copy)  # an id already processed would be skipped by every consumer
    again = [queue.poll_one(), queue.poll_one()]
    assert all(m is not None and m.message_id != delivered.message_id for m in again)
    assert not any(store.is_message_processed(m.message_id) for m in again if m is not None)


def test_ensure_does_not_duplicate_and_moves_the_waiting_copy(queue: SqlQueue, clock: FakeClock) -> None:
    first = StartStage(execution_id="e", stage_id="s")
    queue.ensure(first, timedelta(seconds=10))
    queue.ensure(StartStage(execution_id="e", stage_id="s"), timedelta(seconds=1))  # equal fields, new id
    queue.ensure(first, timedelta(seconds=2))  # same id
    queue.ensure(StartStage(execution_id="e", stage_id="other"), 0)  # different: queued
    assert queue.size() == 2
    clock.advance(1_999)
    other = queue.poll_one()
    assert other is not None and other.stage_id == "other"  # type: ignore[attr-defined]
    queue.ack(other)
    assert queue.poll_one() is None
    clock.advance(1)
    moved = queue.poll_one()
    assert moved is not None and moved.message_id == first.message_id
    queue.ensure(first, 0)  # in flight: left to its holder
    assert queue.size() == 1 and queue.poll_one() is None


# -- probes, housekeeping, entry points -----------------------------------------------------------


def test_pending_probes_keys_and_purge(queue: SqlQueue) -> None:
    queue.push(RunTask(execution_id="e1", stage_id="s1", task_id="t1"))
    queue.push(CompleteStage(execution_id="e1", stage_id="s2"))
    queue.push(StartWorkflow(execution_id="e2"))
    held = queue.poll_one()  # in flight still counts as pending
    assert held is not None
    assert queue.has_pending_message_for_task("t1")
    assert not queue.has_pending_message_for_task("t2")
    assert queue.has_pending_message_for_stage("s1") and queue.has_pending_message_for_stage("s2")
    assert not queue.has_pending_message_for_stage("s3")
    assert queue.has_pending_message_for_execution("e2")
    assert not queue.has_pending_message_for_execution("e3")
    assert queue.live_delivery_keys([held.message_id, "gone"]) == {held.message_id}
    assert queue.live_delivery_keys([]) == set()
    assert queue.move_to_dlq(held)
    assert queue.purge_workflow("e1") == 2  # one queued, one dead letter
    assert queue.size() == 1 and queue.dlq_size() == 0
    queue.clear()
    assert queue.size() == 0


def test_push_inside_a_callers_connection_commits_with_it(queue: SqlQueue) -> None:
    with pytest.raises(RuntimeError), queue.engine.begin() as connection:
        queue.push(StartWorkflow(), connection=connection)
        raise RuntimeError("roll back")
    assert queue.size() == 0
    with queue.engine.begin() as connection:
        queue.push(StartWorkflow(), connection=connection)
        queue.push(StartWorkflow(), connection=connection)
    assert queue.size() == 2
    with pytest.raises(TypeError, match="connection"):
        queue.push(StartWorkflow(), connection="not a connection")


def test_entry_points_share_the_store_engine(url: str) -> None:
    store = SqlWorkflowStore(url)
    queue = create_queue(url, lock_duration=timedelta(seconds=5), max_attempts=4)
    assert isinstance(queue, SqlQueue)
    assert queue.engine is store.engine is get_engine(url)
    assert queue.lock_duration == timedelta(seconds=5) and queue.max_attempts == 4
    # Upstream's names and keywords: the one SQL queue, built from ``connection_string=``.
    for preset in (SqliteQueue, PostgresQueue):
        named = preset(connection_string=url, table_name="queue_messages", max_attempts=3)
        assert isinstance(named, SqlQueue) and named.engine is store.engine and named.max_attempts == 3
    shown = repr(SqlQueue("postgresql://user:secret@127.0.0.1:1/db"))  # no connection is made
    assert "secret" not in shown and "***" in shown


def test_claim_strategy_follows_the_server_capability(queue: SqlQueue, dialect: str) -> None:
    queue.push(StartWorkflow())
    assert queue.poll_one() is not None
    expected = SkipLockedClaimer if dialect == "mariadb" else ReturningClaimer
    assert type(queue._claimer) is expected


def test_a_lost_race_moves_on_to_the_next_candidate(queue: SqlQueue) -> None:
    """The compare-and-set path, forced on every dialect: a row changed since it was read is skipped."""
    queue.push(StartWorkflow(execution_id="first"))
    queue.push(StartWorkflow(execution_id="second"))
    queue._claimer = CompareAndSetClaimer()
    original = CompareAndSetClaimer.candidates

    def candidates_then_steal(self: CompareAndSetClaimer, connection: Connection, now: int) -> Any:
        rows = list(original(self, connection, now))
        # Another poller claims the first candidate between our read and our update.
        steal = update(QueueMessageRow).where(QueueMessageRow.id == rows[0]["id"])
        connection.execute(steal.values(attempts=1, deliver_at=now + 1))
        return iter(rows)

    queue._claimer.candidates = types.MethodType(candidates_then_steal, queue._claimer)  # type: ignore[method-assign]
    message = queue.poll_one()
    assert message is not None and message.execution_id == "second"  # type: ignore[attr-defined]


def test_rows_written_directly_are_read_by_their_columns(queue: SqlQueue) -> None:
    """Row columns, not payload copies, decide attempts and identity."""
    message = StartWorkflow(execution_id="e")
    payload = {**dataclasses.asdict(message), "attempts": 99}
    with queue.engine.begin() as connection:
        connection.execute(
            insert(QueueMessageRow),
            [
                {
                    "message_id": new_id(),
                    "message_type": "StartWorkflow",
                    "payload": payload,
                    "deliver_at": 0,
                    "attempts": 0,
                    "max_attempts": 10,
                    "created_at": 0,
                }
            ],
        )
    delivered = queue.poll_one()
    assert delivered is not None and delivered.attempts == 1
    assert delivered.message_id != message.message_id
