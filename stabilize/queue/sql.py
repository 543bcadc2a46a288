"""The SQL queue: ``queue_messages`` in the store's own database, on every SQLAlchemy dialect.

Because the queue is a table next to the workflow tables and shares the store's engine, a store
transaction can write a message together with the state it belongs to (``pending_push``, or
``push(connection=...)`` in a caller's transaction), and a consumer can mark a message processed
together with its effects. That is the transactional outbox. Every public call is one unit of
work of the store's ``units.Database``: one Session, SQLAlchemy statements, one fault path.

Semantics, in one place:

- **Times** are epoch milliseconds from one app clock (``clock``, default ``now_ms``), used both to
  write and to compare; the database clock is never read, so app and database cannot disagree.
- **Visibility lock.** A claim sets ``locked_until = deliver_at = now + lock_duration`` and counts
  one attempt. Until then no poller sees the row; ``ack`` deletes it, ``extend_lock`` moves both
  times forward, ``reschedule`` releases it to a new time. When the lock lapses the row is simply
  due again and the next claim counts attempt + 1.
- **Delivery identity.** A polled message carries a private token (row id, attempt number);
  ``ack``, ``extend_lock`` and ``reschedule`` act only if the row is still on that attempt, so a
  consumer whose lock lapsed and whose message was claimed again cannot ack the new holder's
  delivery. A message without a token (built by the caller) is addressed by ``message_id``.
- **Message ids.** The row's ``message_id`` is the message's own id, so a processed mark taken
  under that id skips a redelivery. ``push`` never merges: pushing an object that was already
  pushed or delivered, or whose id is already queued, dead-lettered or marked processed, stores
  the new row under a fresh ULID (row and payload); the caller's object is left as it is.
  ``ensure`` is the call that avoids a duplicate.
- **max_attempts.** The row keeps the message's own ``max_attempts``; a queue enforces the
  smaller of that and its own ``max_attempts``, so a message can ask for fewer tries but never
  more than the queue allows. A delivered message's ``max_attempts`` shows that limit. A message
  due again with its attempts used up goes to ``queue_dead_letters`` with its last error instead
  of being delivered; a ``poll`` callback failing on the last attempt sends it there at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from itertools import islice
from typing import Any

from sqlalchemy import URL, ColumnElement, Connection, Engine, case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from stabilize.persistence.errors import ValidationError
from stabilize.persistence.ids import now_ms
from stabilize.persistence.sql.dialects import Unit
from stabilize.persistence.sql.dialects.base import RowLimit, rowcount
from stabilize.persistence.sql.engine import get_engine, mask
from stabilize.persistence.sql.faults import RetryPolicy, translated
from stabilize.persistence.sql.mapping import check_size
from stabilize.persistence.sql.units import Database
from stabilize.queue import dlq
from stabilize.queue.claim import Claimer, Remove, ReturningClaimer, claimer_for, remove_unchanged
from stabilize.queue.interface import Delay, Queue
from stabilize.queue.messages import Message, MessageDecodeError
from stabilize.queue.outbox import ACK_BY_ID, ACK_DELIVERY, PendingPush, pending_push
from stabilize.queue.records import (
    DEAD_LETTERS,
    METADATA_FIELDS,
    QUEUE,
    ROW_COLUMNS,
    Executor,
    Row,
    clip_error,
    decode_row,
    delay_ms,
    deliver,
    delivery_of,
    message_values,
    payload_of,
)

__all__ = ["PendingPush", "QueueStats", "SqlQueue", "push_in_session"]

logger = logging.getLogger(__name__)

DEFAULT_LOCK = timedelta(seconds=60)
#: Candidates one poll looks at before giving up (dead-lettered, undecodable or lost races).
MAX_CANDIDATES = 16
#: Keys per ``IN`` list, well under every driver's bound-parameter limit.
_CHUNK = 500

_SIZE = select(func.count()).select_from(QUEUE)
_CLEAR = delete(QUEUE)


def push_in_session(
    executor: Executor,
    message: Message,
    delay: Delay | None = 0,
    *,
    now: int | None = None,
    limit: RowLimit | None = None,
) -> None:
    """Queue ``message`` through the caller's transaction; it commits or rolls back with it.

    Args:
        executor: the caller's Session or Connection, on the queue's database.
        message: what to queue.
        delay: seconds (or a timedelta) before it is due.
        now: the epoch-ms clock reading to count ``delay`` from (a queue passes its own clock).
        limit: the bytes a row may hold on the database (a queue passes its own), checked
            before any SQL.
    """
    pending = pending_push(message, delay, now=now, limit=limit)
    pending.write(executor.connection() if isinstance(executor, Session) else executor)
    pending.committed()


def _lock_ms(lock_duration: timedelta | float | None) -> int:
    lock = delay_ms(DEFAULT_LOCK if lock_duration is None else lock_duration, "lock_duration")
    if lock <= 0:
        raise ValidationError("lock_duration", "must be longer than 0")
    return lock


@dataclass(frozen=True)
class QueueStats:
    """What an operator asks of a queue first."""

    depth: int
    due_now: int
    locked: int
    oldest_age_ms: int | None
    dead_letters: int


class SqlQueue(Queue):
    """Durable, delayed, at-least-once delivery on ``queue_messages`` (see the module docstring).

    Args:
        connection: a URL (any SQLAlchemy URL, ``postgres://...``, a bare SQLite path) or an Engine.
            The same URL as the store's gives the store's engine, which makes
            ``store.transaction(queue)`` atomic.
        table_name: must be ``queue_messages``, the table the migrations create and store
            transactions write; accepted for upstream's signature.
        lock_duration: how long a claimed message stays invisible (timedelta or seconds; None: 60 s).
        max_attempts: claims before a message is dead-lettered, at most (see module docstring).
        clock: epoch-ms clock for every time written and compared; tests inject a fake one.
        engine_options: extra ``create_engine`` arguments, used only if this creates the engine.
        retry_policy: how often a call that lost a race runs again.
        operation_timeout: the deadline of every call, in seconds (default 10); see
            ``SqlWorkflowStore``.

    Raises:
        ValidationError: an argument is out of range.
    """

    def __init__(
        self,
        connection: str | URL | Engine,
        table_name: str = "queue_messages",
        lock_duration: timedelta | float | None = None,
        max_attempts: int = 10,
        *,
        clock: Callable[[], int] = now_ms,
        engine_options: dict[str, Any] | None = None,
        retry_policy: RetryPolicy | None = None,
        operation_timeout: float | None = None,
    ) -> None:
        """Check the arguments, then open (or reuse) the engine of ``connection``; see the class for them."""
        if table_name != QUEUE.name:
            problem = f"only {QUEUE.name!r}, the table the migrations create, works; got {table_name!r}"
            raise ValidationError("table_name", problem)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValidationError("max_attempts", f"must be an integer >= 1, got {max_attempts!r}")
        self.engine = get_engine(connection, operation_timeout=operation_timeout, **(engine_options or {}))
        self._db = Database(self.engine, retry_policy, owns_engine=not isinstance(connection, Engine))
        self.table_name = table_name
        self.lock_ms = _lock_ms(lock_duration)
        self.max_attempts = max_attempts
        self.clock = clock
        self._claimer: Claimer | ReturningClaimer | None = None

    @property
    def lock_duration(self) -> timedelta:
        """How long a claimed message stays invisible to other pollers."""
        return timedelta(milliseconds=self.lock_ms)

    @property
    def retry_policy(self) -> RetryPolicy:
        """How often a call that lost a race runs again."""
        return self._db.retry_policy

    def __repr__(self) -> str:
        """The class name and the URL, its password masked."""
        return f"{type(self).__name__}({mask(self.engine.url)!r})"

    def close(self) -> None:
        """Stop using the database (idempotent); the last store or queue of an engine to close
        releases its connections (see ``SqlWorkflowStore.close``)."""
        self._db.close()

    def _claimer_of(self) -> Claimer | ReturningClaimer:
        # Chosen on first use, once connected: MariaDB's answer needs the server version.
        if self._claimer is None:
            self._db.run(lambda connection: None, Unit.READ)
            self._claimer = claimer_for(self.engine)
        return self._claimer

    def _limit(self, row_max_attempts: int) -> int:
        return min(row_max_attempts, self.max_attempts)

    # -- producing --------------------------------------------------------------------------

    def pending_push(self, message: Message, delay: Delay | None = 0) -> PendingPush:
        """``message`` checked and encoded now, due ``delay`` from now on this queue's clock, to
        be written in a store transaction (``SqlStoreTransaction.push_message``).

        Raises:
            ValidationError: the message cannot be stored.
        """
        return pending_push(message, delay, now=self.clock(), limit=self._db.row_limit)

    def push(self, message: Message, delay: Delay | None = None, connection: Any | None = None) -> None:
        """Queue ``message``, due after ``delay``.

        Args:
            message: what to queue; a message object pushed before is stored under a fresh id.
            delay: seconds or a timedelta (None or negative: now).
            connection: a SQLAlchemy Session or Connection to push inside its transaction (the
                caller commits); without one the push is its own unit of work.

        Raises:
            ValidationError: the message cannot be stored.
            TypeError: ``connection`` is not a Session or Connection.
        """
        if connection is not None:
            if not isinstance(connection, (Session, Connection)):
                kind = type(connection).__name__
                raise TypeError(f"connection: expected a SQLAlchemy Session or Connection, got {kind}")
            limit = self._db.row_limit
            with translated(self.engine):
                push_in_session(connection, message, delay, now=self.clock(), limit=limit)
            return
        pending = self.pending_push(message, delay)
        self._db.run(pending.write, Unit.WRITE_ONE)
        pending.committed()

    def ensure(self, message: Message, delay: Delay) -> None:
        """Queue ``message`` unless it already is: the same id, or the same type and fields
        (bookkeeping aside). A waiting copy is moved to ``delay`` from now; an in-flight copy is
        left to its holder. Race-free on SQLite (writers are serialised); on a server two
        concurrent ``ensure`` calls for an unqueued message may both push it.
        """

        def write(conn: Connection) -> None:
            now = self.clock()
            deliver_at = now + delay_ms(delay)
            wanted = message_values(message, deliver_at)
            same = (
                (QUEUE.c.message_type == wanted["message_type"])
                & _same_or_null(QUEUE.c.execution_id, wanted["execution_id"])
                & _same_or_null(QUEUE.c.task_id, wanted["task_id"])
            )
            rows = conn.execute(
                select(*ROW_COLUMNS).where(or_(QUEUE.c.message_id == wanted["message_id"], same))
            )
            found = [
                r
                for r in rows.mappings()
                if r["message_id"] == wanted["message_id"] or _same_content(r, wanted["payload"])
            ]
            if not found:
                push_in_session(conn, message, delay, now=now)
                return
            row = found[0]
            if row["locked_until"] is not None and row["deliver_at"] > now:
                return  # in flight: its holder acks or reschedules it
            conn.execute(
                update(QUEUE).where(QUEUE.c.id == row["id"]).values(deliver_at=deliver_at, locked_until=None)
            )

        self._db.run(write, Unit.WRITE)

    # -- consuming --------------------------------------------------------------------------

    def poll_one(self) -> Message | None:
        """Claim the earliest due message under the visibility lock; None when nothing is due.

        A due row whose attempts are used up, or that does not hold a valid message, goes to the
        dead letters with the reason, and the next due row is tried.
        """
        claimer = self._claimer_of()
        if isinstance(claimer, ReturningClaimer):
            return self._claim_first(claimer)
        return self._db.run(lambda connection: self._read_then_claim(connection, claimer), Unit.WRITE)

    def _claim_first(self, claimer: ReturningClaimer) -> Message | None:
        """Claim in one statement, then look at what was claimed (see ``ReturningClaimer``)."""
        for _ in range(MAX_CANDIDATES):
            now = self.clock()
            row = self._db.run(partial(claimer.claim, now=now, lock_until=now + self.lock_ms), Unit.WRITE_ONE)
            if row is None:
                return None
            limit = self._limit(row["max_attempts"])
            before: dict[str, Any] = {**row, "attempts": row["attempts"] - 1}  # the row as it was due
            if before["attempts"] >= limit:
                reason = f"used all {limit} attempts"
                self._bury_claimed(row, before, before["last_error"] or reason, now)
                logger.warning("dead-lettered message %s: %s", row["message_id"], reason)
                continue
            try:
                message = decode_row(row)
            except MessageDecodeError as exc:
                self._bury_claimed(row, before, f"undecodable: {exc}", now)
                logger.error("dead-lettered undecodable message %s: %s", row["message_id"], exc)
                continue
            return deliver(message, row, row["attempts"], limit)
        return None

    def _bury_claimed(self, claimed: Row, before: Row, reason: str, now: int) -> None:
        """Dead-letter a row this poller has just claimed, unless its claim lapsed meanwhile."""

        def write(connection: Connection) -> None:
            fence: dict[str, Any] = {"row_id": claimed["id"], "attempt": claimed["attempts"]}
            if rowcount(connection.execute(ACK_DELIVERY, fence)) == 1:
                dlq.bury(connection, before, reason, now)

        self._db.run(write, Unit.WRITE)

    def _read_then_claim(self, connection: Connection, claimer: Claimer) -> Message | None:
        """Read due rows, then claim one of them, in one transaction."""
        now = self.clock()
        for row in islice(claimer.candidates(connection, now), MAX_CANDIDATES):
            limit = self._limit(row["max_attempts"])
            if row["attempts"] >= limit:
                self._bury_spent(connection, claimer.remove, row, now)
                continue
            try:
                message = decode_row(row)
            except MessageDecodeError as exc:
                if claimer.remove(connection, row, now):
                    dlq.bury(connection, row, f"undecodable: {exc}", now)
                    logger.error("dead-lettered undecodable message %s: %s", row["message_id"], exc)
                continue
            if claimer.take(connection, row, now, now + self.lock_ms):
                return deliver(message, row, row["attempts"] + 1, limit)
        return None

    def _bury_spent(self, connection: Connection, remove: Remove, row: Row, now: int) -> bool:
        """Dead-letter a due row whose attempts are used up, keeping its last error."""
        if not remove(connection, row, now):
            return False
        reason = f"used all {self._limit(row['max_attempts'])} attempts"
        dlq.bury(connection, row, row["last_error"] or reason, now)
        logger.warning("dead-lettered message %s: %s", row["message_id"], reason)
        return True

    def poll(self, callback: Callable[[Message], None]) -> None:
        """Deliver one due message to ``callback`` and ack it when the callback returns.

        If the callback raises, the error is recorded on the row and the message stays locked, so
        its retry waits for the lock to lapse; on its last attempt it goes to the dead letters at
        once. A callback that reschedules or dead-letters the message itself is not acked.
        """
        message = self.poll_one()
        if message is None:
            return
        try:
            callback(message)
        except Exception as exc:
            self._record_failure(message, exc)
            raise
        self.ack(message)

    def _record_failure(self, message: Message, exc: Exception) -> None:
        message.set_error_context(exc)
        token = delivery_of(message)
        if token is None or token.released:
            return
        error = f"{type(exc).__name__}: {exc}"
        if message.attempts >= message.max_attempts:
            self.move_to_dlq(message, error)
            return
        statement = update(QUEUE).where(self._fence(message)).values(last_error=clip_error(error))
        self._db.run(lambda c: c.execute(statement), Unit.WRITE_ONE)

    def _fence(self, message: Message) -> ColumnElement[bool]:
        """The row of this delivery of ``message``, or of its id when it was not delivered."""
        token = delivery_of(message)
        if token is None:
            return QUEUE.c.message_id == message.message_id
        return (QUEUE.c.id == token.row_id) & (QUEUE.c.attempts == token.attempt)

    def ack(self, message: Message) -> None:
        """Delete the delivered row; a no-op if the lock lapsed and another poller claimed it."""
        token = delivery_of(message)
        if token is not None and token.released:
            return
        params: dict[str, Any]
        if token is None:
            statement, params = ACK_BY_ID, {"message_id": message.message_id}
        else:
            statement, params = ACK_DELIVERY, {"row_id": token.row_id, "attempt": token.attempt}
        deleted = self._db.run(lambda c: rowcount(c.execute(statement, params)), Unit.WRITE_ONE)
        if token is not None:
            token.released = True
            if deleted == 0:
                logger.warning("ack(%s): lock lapsed and the message was claimed again", message.message_id)

    def extend_lock(self, message: Message, duration: timedelta | None = None) -> bool:
        """Keep a delivered message invisible for ``duration`` (default: the lock duration) from now.

        Returns:
            False when the message was not delivered by a poll, was already acked or released,
            or was claimed again by someone else after its lock lapsed.
        """
        token = delivery_of(message)
        if token is None or token.released:
            return False
        until = self.clock() + (self.lock_ms if duration is None else _lock_ms(duration))
        statement = update(QUEUE).where(self._fence(message)).values(locked_until=until, deliver_at=until)
        return self._db.run(lambda c: rowcount(c.execute(statement)) == 1, Unit.WRITE_ONE)

    def reschedule(self, message: Message, delay: Delay) -> None:
        """Release the lock and deliver again after ``delay``, keeping id and attempts.

        The message is stored as it is now, so counters the handler changed and the error context
        it set (``set_error_context``) come back with the redelivery.
        """
        token = delivery_of(message)
        if token is not None and token.released:
            return
        values = message_values(message, self.clock() + delay_ms(delay))
        check_size(values, self._db.row_limit, f"message({type(message).__name__})")
        statement = (
            update(QUEUE)
            .where(self._fence(message))
            .values(
                deliver_at=values["deliver_at"],
                locked_until=None,
                payload=values["payload"],
                last_error=func.coalesce(values["last_error"], QUEUE.c.last_error),
            )
        )
        self._db.run(lambda c: c.execute(statement), Unit.WRITE_ONE)
        if token is not None:
            token.released = True

    # -- inspection -------------------------------------------------------------------------

    def size(self) -> int:
        """Queued messages, in flight included (dead letters are counted by ``dlq_size``)."""
        return self._db.run(lambda c: int(c.execute(_SIZE).scalar_one()), Unit.READ)

    def stats(self) -> QueueStats:
        """Depth, due now, locked, oldest age and dead letters, from one snapshot."""
        now = self.clock()
        due = func.sum(case((QUEUE.c.deliver_at <= now, 1), else_=0))
        locked = func.sum(case((QUEUE.c.locked_until > now, 1), else_=0))

        def read(conn: Connection) -> QueueStats:
            depth, due_now, in_flight, oldest = conn.execute(
                select(func.count(), due, locked, func.min(QUEUE.c.created_at))
            ).one()
            return QueueStats(
                depth=depth,
                due_now=int(due_now or 0),
                locked=int(in_flight or 0),
                oldest_age_ms=None if oldest is None else max(0, now - oldest),
                dead_letters=dlq.size(conn),
            )

        return self._db.run(read, Unit.SNAPSHOT)

    def peek(self, limit: int = 10) -> list[dict[str, Any]]:
        """The next ``limit`` rows in delivery order, without claiming them."""
        columns = [QUEUE.c[name] for name in ("id", "message_id", "message_type", "deliver_at", "attempts")]
        order = (QUEUE.c.deliver_at, QUEUE.c.id)
        statement = select(*columns, QUEUE.c.locked_until).order_by(*order).limit(limit)
        return self._db.run(lambda c: [dict(row) for row in c.execute(statement).mappings()], Unit.READ)

    def clear(self) -> None:
        """Delete every queued message (dead letters stay)."""
        self._db.run(lambda c: c.execute(_CLEAR), Unit.WRITE_ONE)

    def _any(self, condition: ColumnElement[bool]) -> bool:
        statement = select(QUEUE.c.id).where(condition).limit(1)
        return self._db.run(lambda c: c.execute(statement).first() is not None, Unit.READ)

    def has_pending_message_for_task(self, task_id: str) -> bool:
        """Whether a queued or in-flight message names this task."""
        return self._any(QUEUE.c.task_id == task_id)

    def has_pending_message_for_stage(self, stage_id: str) -> bool:
        """Whether a queued or in-flight message names this stage (its own column: the comparison
        is exact, as every id comparison)."""
        return self._any(QUEUE.c.stage_id == stage_id)

    def has_pending_message_for_execution(self, execution_id: str) -> bool:
        """Whether any queued or in-flight message targets this workflow."""
        return self._any(QUEUE.c.execution_id == execution_id)

    def live_delivery_keys(self, keys: list[str]) -> set[str]:
        """Keys are message ids (the processed marks' key); the ones still queued."""

        def read(conn: Connection) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                found.update(
                    conn.execute(select(QUEUE.c.message_id).where(QUEUE.c.message_id.in_(chunk))).scalars()
                )
            return found

        return self._db.run(read, Unit.SNAPSHOT)

    def purge_workflow(self, execution_id: str) -> int:
        """Delete every queued and dead-lettered message of one workflow; return how many."""

        def write(conn: Connection) -> int:
            queued = rowcount(conn.execute(delete(QUEUE).where(QUEUE.c.execution_id == execution_id)))
            dead_letters = delete(DEAD_LETTERS).where(DEAD_LETTERS.c.execution_id == execution_id)
            return queued + rowcount(conn.execute(dead_letters))

        return self._db.run(write, Unit.WRITE)

    # -- dead letters -----------------------------------------------------------------------

    def move_to_dlq(self, message: Message | str | int, error: str | None = None) -> bool:
        """Move a message to the dead letters now, in any lock state; False if it is not queued.

        ``message`` is a delivered Message (its delivery's row), a message id, or a row id.
        """
        if isinstance(message, Message):
            where = self._fence(message)
        elif isinstance(message, str):
            where = QUEUE.c.message_id == message
        else:
            where = QUEUE.c.id == message
        moved = self._db.run(lambda c: dlq.move(c, where, error, self.clock()), Unit.WRITE)
        token = delivery_of(message) if isinstance(message, Message) else None
        if moved and token is not None:
            token.released = True
        return moved

    def list_dlq(self, limit: int = 100, message_type: str | None = None) -> list[dict[str, Any]]:
        """Newest dead letters first, as plain dicts."""
        return self._db.run(lambda c: dlq.listing(c, limit, message_type), Unit.READ)

    def replay_dlq(self, dlq_id: int | str) -> bool:
        """Requeue a dead letter (by its ``id`` from ``list_dlq``, or its message id), due now."""
        column = DEAD_LETTERS.c.message_id if isinstance(dlq_id, str) else DEAD_LETTERS.c.id
        where = column == dlq_id
        return self._db.run(lambda c: dlq.replay(c, where, self.clock()), Unit.WRITE)

    def dlq_size(self) -> int:
        """How many dead letters there are."""
        return self._db.run(dlq.size, Unit.READ)

    def clear_dlq(self) -> int:
        """Delete every dead letter; return how many."""
        return self._db.run(dlq.clear, Unit.WRITE_ONE)

    def check_and_move_expired(self) -> int:
        """Dead-letter every waiting message whose attempts are used up; returns how many.

        In-flight messages are left to their holder, whose ack may still succeed.
        """

        def write(conn: Connection) -> int:
            now = self.clock()
            spent = (QUEUE.c.deliver_at <= now) & (
                (QUEUE.c.attempts >= QUEUE.c.max_attempts) | (QUEUE.c.attempts >= self.max_attempts)
            )
            rows = conn.execute(select(*ROW_COLUMNS).where(spent).order_by(QUEUE.c.id)).mappings().all()
            return sum(self._bury_spent(conn, remove_unchanged, row, now) for row in rows)

        return self._db.run(write, Unit.WRITE)


def _same_or_null(column: ColumnElement[Any], value: str | None) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def _content(payload: dict[str, Any]) -> dict[str, Any]:
    """What a message says, without its delivery bookkeeping."""
    return {k: v for k, v in payload.items() if k not in METADATA_FIELDS}


def _same_content(row: Row, payload: dict[str, Any]) -> bool:
    """Whether a queue row says what ``payload`` says; a row that holds no readable message does not."""
    try:
        return _content(payload_of(row)) == _content(payload)
    except MessageDecodeError:
        return False

