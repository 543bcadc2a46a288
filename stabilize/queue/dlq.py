"""Dead letters: messages that used up their attempts (or could not be read), kept with their last
error until an operator replays or clears them.

Functions take the caller's connection and never commit, so moving a row out of the queue and
into ``queue_dead_letters`` is one transaction: a message is in exactly one of the two tables.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, bindparam, delete, func, insert, select

from stabilize.persistence.errors import ValidationError
from stabilize.persistence.ids import new_id
from stabilize.persistence.sql.dialects.base import rowcount
from stabilize.persistence.sql.rows import ID_LENGTH
from stabilize.queue.records import DEAD_LETTERS, QUEUE, ROW_COLUMNS, Row, dead_letter_values

_FORGET = delete(DEAD_LETTERS).where(DEAD_LETTERS.c.message_id == bindparam("message_id"))
_BURY = insert(DEAD_LETTERS).values(
    {c.key: bindparam(c.key, type_=c.type) for c in DEAD_LETTERS.columns if c.key != "id"}
)


def bury(connection: Connection, row: Row, error: str | None, now: int) -> None:
    """Write the dead letter of a queue row the caller has just deleted.

    A message id has at most one dead letter, its latest failure: a replayed message that fails
    again replaces its old entry instead of tripping the unique key.
    """
    connection.execute(_FORGET, {"message_id": row["message_id"]})
    connection.execute(_BURY, dead_letter_values(row, error, now))


def move(connection: Connection, where: ColumnElement[bool], error: str | None, now: int) -> bool:
    """Move the queue row matching ``where`` to the dead letters, in any lock state (an operator
    may dead-letter an in-flight message); False if there is none.

    The delete compares ``attempts`` with what was read, so a row claimed by a poller in between
    stays where it is rather than vanishing under that poller.
    """
    row = connection.execute(select(*ROW_COLUMNS).where(where)).mappings().first()
    if row is None:
        return False
    unchanged = (QUEUE.c.id == row["id"]) & (QUEUE.c.attempts == row["attempts"])
    if rowcount(connection.execute(delete(QUEUE).where(unchanged))) != 1:
        return False
    bury(connection, row, error, now)
    return True


def replay(connection: Connection, where: ColumnElement[bool], now: int) -> bool:
    """Put a dead letter back in the queue, due now, with its attempts reset; False if not found.

    It keeps its message id, so a consumer that did process it (and marked it) still skips it;
    only if that id has been queued again meanwhile does the replayed copy get a new one.
    """
    row = connection.execute(select(DEAD_LETTERS).where(where)).mappings().first()
    if row is None:
        return False
    if row["payload"] is None:
        raise ValidationError(
            "dlq_id",
            f"dead letter {row['id']} held no readable message (its raw payload is kept): nothing to replay",
        )
    if rowcount(connection.execute(delete(DEAD_LETTERS).where(DEAD_LETTERS.c.id == row["id"]))) != 1:
        return False  # replayed by someone else in the meantime
    message_id = row["message_id"]
    taken = connection.execute(select(QUEUE.c.id).where(QUEUE.c.message_id == message_id)).first()
    payload = dict(row["payload"])
    if taken is not None:
        message_id = new_id()
        payload["message_id"] = message_id
    values = {
        "message_id": message_id,
        "message_type": row["message_type"],
        "payload": payload,
        "deliver_at": now,
        "locked_until": None,
        "attempts": 0,
        "max_attempts": row["max_attempts"],
        "execution_id": row["execution_id"],
        "task_id": row["task_id"],
        "last_error": row["last_error"],
        "created_at": row["created_at"],
        "stage_id": _stage_of(payload),
    }
    connection.execute(insert(QUEUE), [values])
    return True


def _stage_of(payload: dict[str, Any]) -> str | None:
    """The stage a replayed message names, for its row's ``stage_id`` (as a push would set it)."""
    stage_id = payload.get("stage_id")
    return stage_id if isinstance(stage_id, str) and 0 < len(stage_id) <= ID_LENGTH else None


def listing(connection: Connection, limit: int, message_type: str | None) -> list[dict[str, Any]]:
    """Newest failures first, as plain dicts (``error`` repeats ``last_error`` under upstream's key)."""
    query = select(DEAD_LETTERS).order_by(DEAD_LETTERS.c.failed_at.desc(), DEAD_LETTERS.c.id.desc())
    if message_type is not None:
        query = query.where(DEAD_LETTERS.c.message_type == message_type)
    rows = connection.execute(query.limit(limit)).mappings().all()
    return [{**row, "error": row["last_error"]} for row in rows]


_SIZE = select(func.count()).select_from(DEAD_LETTERS)
_CLEAR = delete(DEAD_LETTERS)


def size(connection: Connection) -> int:
    """How many dead letters there are."""
    return int(connection.execute(_SIZE).scalar_one())


def clear(connection: Connection) -> int:
    """Delete every dead letter; return how many."""
    return rowcount(connection.execute(_CLEAR))
