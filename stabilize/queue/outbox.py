"""Writing and removing ``queue_messages`` rows: the statements ``SqlQueue`` and a store
transaction share (the store's transaction writes its messages through ``SqlQueue.pending_push``).

Every function takes the caller's connection and never commits: a push made in a store
transaction commits or rolls back with the state it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import CTE, ColumnElement, Connection, bindparam, delete, exists, insert, select

from stabilize.persistence.ids import new_id, now_ms
from stabilize.persistence.sql.dialects.base import RowLimit, rowcount
from stabilize.persistence.sql.mapping import check_size
from stabilize.persistence.sql.step import StepPart, bind
from stabilize.queue.interface import Delay
from stabilize.queue.messages import Message
from stabilize.queue.records import (
    DEAD_LETTERS,
    PROCESSED,
    QUEUE,
    RowValues,
    delay_ms,
    mark_pushed,
    message_values,
    needs_fresh_id,
    with_message_id,
)


def _bound(column: str) -> Any:
    return bindparam(column, type_=QUEUE.c[column].type)


_PUSH_COLUMNS = [c.key for c in QUEUE.columns if c.key != "id"]
#: Insert under the message's own id unless a queued, dead-lettered or processed message already
#: has it: one statement, where a separate check would cost a round trip on every push. Its row
#: count says which (SQLAlchemy keeps an INSERT's only when asked: ``preserve_rowcount``).
_PUSH_IF_ID_FREE = (
    insert(QUEUE)
    .from_select(
        _PUSH_COLUMNS,
        select(*map(_bound, _PUSH_COLUMNS)).where(
            ~exists().where(QUEUE.c.message_id == _bound("message_id")),
            ~exists().where(DEAD_LETTERS.c.message_id == _bound("message_id")),
            ~exists().where(PROCESSED.c.message_id == _bound("message_id")),
        ),
    )
    .execution_options(preserve_rowcount=True)
)
_PUSH = insert(QUEUE).values({c: _bound(c) for c in _PUSH_COLUMNS})
#: Ack of one delivery: the row, still on the attempt that was delivered.
ACK_DELIVERY = delete(QUEUE).where(
    QUEUE.c.id == bindparam("row_id"), QUEUE.c.attempts == bindparam("attempt")
)
#: Ack of a message by id (one the caller built, never delivered by a poll).
ACK_BY_ID = delete(QUEUE).where(QUEUE.c.message_id == bindparam("message_id"))


@dataclass
class PendingPush:
    """A message's row, made (and checked) when pushed, inserted when its transaction writes.

    Whether the row needs a fresh id is decided when it is inserted: a message object pushed
    before, or an id already queued, dead-lettered or processed, gets a new one, so a push never
    merges with another message nor is mistaken for one already handled.
    """

    message: Message
    values: RowValues
    fresh: bool

    def write(self, connection: Connection) -> None:
        """Insert the row in ``connection``'s transaction (one statement; a second only when the
        id was taken, and then the first wrote nothing)."""
        if self.fresh or rowcount(connection.execute(_PUSH_IF_ID_FREE, self.values)) == 0:
            connection.execute(_PUSH, with_message_id(self.values, new_id()))

    def step_part(self) -> StepPart:
        """The push as CTEs of a store's step statement (``persistence.sql.step``): the insert
        under the message's own id when it is free, else under a fresh one, written only if the
        step's guards hold."""
        params = dict(self.values)
        if not self.fresh:
            spare = with_message_id(self.values, new_id())
            params.update(spare_message_id=spare["message_id"], spare_payload=spare["payload"])
        return StepPart(_PushCtes(self.fresh), params, lambda counts, connection: self.committed)

    def committed(self) -> None:
        """Record on the message object that it was pushed (a second push gets a new id)."""
        mark_pushed(self.message)


@dataclass(frozen=True)
class _PushCtes:
    """A push as CTEs: under the message's id where no queued, dead-lettered or processed message
    has it (else, a second CTE, under the spare id)."""

    fresh: bool

    guarded = False

    def guard(self, prefix: str) -> CTE | None:
        return None

    def dependents(self, prefix: str, ready: ColumnElement[bool]) -> list[CTE]:
        def row(message_id: str, payload: str) -> list[Any]:
            names = {"message_id": message_id, "payload": payload}
            return [bind(prefix, QUEUE.c[c], names.get(c)) for c in _PUSH_COLUMNS]

        if self.fresh:
            plain = insert(QUEUE).from_select(
                _PUSH_COLUMNS, select(*row("message_id", "payload")).where(ready)
            )
            return [plain.returning(QUEUE.c.id).cte(f"{prefix}push")]
        own_id = bind(prefix, QUEUE.c.message_id)
        free = (
            ~exists().where(QUEUE.c.message_id == own_id),
            ~exists().where(DEAD_LETTERS.c.message_id == own_id),
            ~exists().where(PROCESSED.c.message_id == own_id),
        )
        first = (
            insert(QUEUE)
            .from_select(_PUSH_COLUMNS, select(*row("message_id", "payload")).where(ready, *free))
            .returning(QUEUE.c.id)
            .cte(f"{prefix}push")
        )
        spare = select(*row("spare_message_id", "spare_payload")).where(ready, ~exists(select(first.c.id)))
        second = insert(QUEUE).from_select(_PUSH_COLUMNS, spare).returning(QUEUE.c.id).cte(f"{prefix}spare")
        return [first, second]


def pending_push(
    message: Message, delay: Delay | None = 0, *, now: int | None = None, limit: RowLimit | None = None
) -> PendingPush:
    """Check and encode ``message`` for delivery ``delay`` from ``now`` (default: the app clock),
    refusing a row over ``limit`` bytes.

    Raises:
        ValidationError: the message cannot be stored (named by its field).
    """
    start = now_ms() if now is None else now
    values = message_values(message, start + delay_ms(delay))
    check_size(values, limit, f"message({type(message).__name__})")
    return PendingPush(message, values, needs_fresh_id(message))
