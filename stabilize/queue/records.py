"""Messages to queue rows and back, and the delivery token a claimed message carries.

The only place a ``Message`` meets the ``queue_messages`` and ``queue_dead_letters`` rows. The row
columns, not the payload's copies, are the authority on delivery bookkeeping (attempts, error):
the payload is written once at push time, while the columns change with every claim.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, RowMapping, cast
from sqlalchemy.orm import Session

from stabilize.persistence.errors import ValidationError
from stabilize.persistence.ids import new_id
from stabilize.persistence.sql.rows import DeadLetterRow, ProcessedMessageRow, QueueMessageRow, table_of
from stabilize.persistence.sql.types import StoredText, checker
from stabilize.persistence.sql.values import CheckedDocument, encode_document, load_document
from stabilize.queue.interface import Delay
from stabilize.queue.messages import Message, MessageDecodeError, deserialize_message, serialize_message

QUEUE = table_of(QueueMessageRow)
DEAD_LETTERS = table_of(DeadLetterRow)
PROCESSED = table_of(ProcessedMessageRow)

#: A caller's transaction a message can be pushed in (``push(connection=...)``): a Session or a
#: Core Connection.
Executor = Session | Connection

RowValues = dict[str, Any]
#: A queue row as read: a dict from a prepared statement or a Core ``RowMapping``.
Row = Mapping[str, Any] | RowMapping

#: Payload fields that are delivery bookkeeping, not what the message says; ``ensure`` ignores them
#: when it looks for a message that is already queued.
METADATA_FIELDS = frozenset(
    {"message_id", "created_at", "attempts", "max_attempts", "last_error", "last_error_type"}
)

#: Longest error text kept in a row: enough for a traceback's last lines, never a runaway blob.
ERROR_LIMIT = 4000


def delay_ms(delay: Delay | None, field: str = "delay") -> int:
    """A delay as whole milliseconds, rounded up so a message is never delivered early.

    A negative delay means "now": engine code computes delays as ``due - now``, which may already
    have passed. NaN and infinity are refused, since no time could be stored for them.
    """
    if delay is None:
        return 0
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValidationError(field, f"must be a timedelta or seconds, got {type(delay).__name__}")
    if not math.isfinite(seconds):
        raise ValidationError(field, f"{seconds!r} is not a finite number of seconds")
    return max(0, math.ceil(seconds * 1000))


# -- delivery tokens ------------------------------------------------------------------------------

_DELIVERY = "_stabilize_delivery"
_PUSHED = "_stabilize_pushed"


@dataclass
class Delivery:
    """Which claim of which row a delivered message is.

    ``attempt`` fences every later operation: once the lock lapses and another consumer claims the
    row, its attempts move on and this holder's ack, extend_lock and reschedule match nothing.
    ``released`` is set by reschedule and move_to_dlq, which end the delivery without an ack.
    """

    row_id: int
    attempt: int
    released: bool = False


def delivery_of(message: Message) -> Delivery | None:
    """The token of a message returned by a poll; None for a message built by the caller."""
    token = vars(message).get(_DELIVERY)
    return token if isinstance(token, Delivery) else None


def needs_fresh_id(message: Message) -> bool:
    """Whether this very object was pushed or delivered before, so a new push needs a new id."""
    return bool(vars(message).get(_PUSHED)) or delivery_of(message) is not None


def mark_pushed(message: Message) -> None:
    """Remember that this message object was pushed, so pushing it again gives it a fresh id."""
    # A private attribute, not a field: serialisation, equality and repr never see it.
    vars(message)[_PUSHED] = True


# -- push -----------------------------------------------------------------------------------------


_COLUMNS = QUEUE.c


def _id_field(message: Message, name: str, path: str) -> str | None:
    """An id the row keeps in a column of its own (for ``has_pending_message_for_*``)."""
    value = getattr(message, name, None)
    if value in (None, ""):
        return None
    checked: str = checker(_COLUMNS[name])(value, f"{path}.{name}")
    return checked


def message_values(message: Message, deliver_at: int) -> RowValues:
    """Validated ``queue_messages`` values for a new delivery of ``message``, due at ``deliver_at``.

    Attempts start at 0 whatever the object says: a push is a new message, not a retry. A
    message without an id (None or empty, as the engine pushes a retry: ``replace(message,
    message_id=None)``) is stored under a fresh one, as upstream's queues do.
    """
    path = f"message({type(message).__name__})"
    type_name, payload = serialize_message(message)
    message_id = message.message_id
    if not message_id:
        message_id = new_id()
        payload = {**payload, "message_id": message_id}
    max_attempts = checker(_COLUMNS.max_attempts)(message.max_attempts, f"{path}.max_attempts")
    if max_attempts < 1:
        raise ValidationError(f"{path}.max_attempts", f"must be an integer >= 1, got {max_attempts!r}")
    return {
        "message_id": checker(_COLUMNS.message_id)(message_id, f"{path}.message_id"),
        "message_type": checker(_COLUMNS.message_type)(type_name, f"{path}.type"),
        "payload": checker(_COLUMNS.payload)(payload, f"{path}.payload"),
        "deliver_at": deliver_at,
        "locked_until": None,
        "attempts": 0,
        "max_attempts": max_attempts,
        "execution_id": _id_field(message, "execution_id", path),
        "task_id": _id_field(message, "task_id", path),
        "stage_id": _id_field(message, "stage_id", path),
        "last_error": clip_error(message.last_error),
        "created_at": checker(_COLUMNS.created_at)(message.created_at, f"{path}.created_at"),
    }


def with_message_id(values: RowValues, message_id: str) -> RowValues:
    """The same row values under another message id (row and payload agree)."""
    payload = CheckedDocument({**values["payload"], "message_id": message_id})
    return {**values, "message_id": message_id, "payload": payload}


def clip_error(text: str | None) -> str | None:
    """``text`` cut to ``ERROR_LIMIT`` characters (None stays None), as error columns keep it."""
    return None if text is None else text[:ERROR_LIMIT]


# -- delivery -------------------------------------------------------------------------------------


#: A queue row's columns as the queue reads them: the payload as it is stored (``payload_of``),
#: so a row that holds something no decoder takes (not JSON, JSON ``null``, a number of 5,000
#: digits, bytes that are not UTF-8) is read like any other and dead-lettered, instead of failing
#: the statement that read it.
ROW_COLUMNS = [cast(c, StoredText()).label("payload") if c.key == "payload" else c for c in QUEUE.columns]


def payload_of(row: Row) -> CheckedDocument:
    """The row's payload as a mapping, checked as a push checks it (``types.Document``).

    A payload the column could hold but no push would write (NaN on SQLite, a lone surrogate
    or NUL escaped in the text, nesting too deep) is refused here like text that is not JSON: a
    message holding it could never be rescheduled, nor its dead letter written as a document.

    Raises:
        MessageDecodeError: the payload is not a JSON object this process can read and store.
    """
    text = row["payload"]
    if isinstance(text, bytes):  # ``StoredText``: what the column held is not UTF-8
        raise MessageDecodeError(f"payload is not UTF-8 text: {_first(_utf8_error(text))}")
    if not isinstance(text, str):  # a caller's own read of the column, decoded already
        document = text
    else:
        try:
            document = load_document(text)
        except (ValueError, RecursionError) as exc:
            raise MessageDecodeError(f"payload is not JSON this process can read: {_first(exc)}") from None
    if not isinstance(document, dict):
        raise MessageDecodeError(f"payload is a JSON {type(document).__name__}, not an object")
    try:
        return encode_document(document, "payload")
    except ValidationError as exc:
        raise MessageDecodeError(f"payload holds a value no message may: {exc}") from None


def _utf8_error(data: bytes) -> UnicodeDecodeError:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        return error
    raise AssertionError("bytes are read only where they are not UTF-8")  # pragma: no cover


def _first(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def decode_row(row: Row) -> Message:
    """The message a row holds, before any bookkeeping is applied.

    Raises:
        MessageDecodeError: the payload does not describe a known message.
    """
    return deserialize_message(row["message_type"], payload_of(row))


def deliver(message: Message, row: Row, attempt: int, limit: int) -> Message:
    """Give a decoded message the claimed row's bookkeeping and its delivery token.

    ``max_attempts`` becomes the limit this queue enforces, so a handler can tell its last try by
    ``attempts >= max_attempts``.
    """
    message.message_id = row["message_id"]
    message.attempts = attempt
    message.max_attempts = limit
    if row["last_error"] is not None:
        message.last_error = row["last_error"]
    vars(message)[_DELIVERY] = Delivery(row_id=row["id"], attempt=attempt)
    return message


def dead_letter_values(row: Row, error: str | None, failed_at: int) -> RowValues:
    """A ``queue_dead_letters`` row for a queue row (read with ``ROW_COLUMNS``), keeping its last
    error unless told another. A payload that is no JSON object is kept as its text, in
    ``raw_payload``; ``payload`` is then NULL."""
    try:
        payload: CheckedDocument | None = payload_of(row)
        raw = None
    except MessageDecodeError:
        payload, raw = None, _as_text(row["payload"])
    return {
        "message_id": row["message_id"],
        "message_type": row["message_type"],
        "payload": payload,
        "raw_payload": raw,
        "attempts": row["attempts"],
        "max_attempts": row["max_attempts"],
        "execution_id": row["execution_id"],
        "task_id": row["task_id"],
        "last_error": clip_error(error if error is not None else row["last_error"]),
        "created_at": row["created_at"],
        "failed_at": failed_at,
    }


def _as_text(stored: object) -> str:
    """What a payload column held, as text for ``raw_payload``: bytes that are not UTF-8 keep
    their undecodable bytes as ``\\xNN`` escapes."""
    if isinstance(stored, str):
        return stored
    if isinstance(stored, bytes):
        return stored.decode("utf-8", "backslashreplace")
    return repr(stored)
