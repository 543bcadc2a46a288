"""Retention and purge: what the store's maintenance calls run, and how they are batched.

Each sweep runs as several short units of work, never one long transaction: a batch is read (and,
for a purge, locked), written and committed before the next begins, so a sweep over millions of
rows holds no lock for long, never stops the engine's own writes for long, and can be interrupted
between batches without harm. ``Run`` is the store's ``Database.run``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Connection, Row, Select, and_, delete, or_, select

from stabilize.persistence.errors import ValidationError
from stabilize.persistence.ids import now_ms
from stabilize.persistence.sql.claims import CLAIMS, COMPLETE
from stabilize.persistence.sql.dialects import Unit
from stabilize.persistence.sql.dialects.base import rowcount
from stabilize.persistence.sql.rows import ProcessedMessageRow, WorkflowRow, table_of
from stabilize.persistence.sql.types import Millis, checker

T = TypeVar("T")
Run = Callable[[Callable[[Connection], T], Unit], T]
#: Which of some message ids are still queued (a queue's ``live_delivery_keys``).
Live = Callable[[list[str]], Collection[str]]

#: Statuses of a workflow that may be purged: the complete ones (the engine's ``PURGEABLE``).
PURGEABLE = COMPLETE
#: Marks deleted per transaction when the caller does not say.
PROCESSED_BATCH = 1000
#: Ids per ``IN (...)`` list: well inside every dialect's limit on bound parameters.
_CHUNK = 500
_HOUR_MS = 3_600_000
_INT64_MAX = 2**63 - 1

_WORKFLOWS = table_of(WorkflowRow)
_MILLIS = Millis(optional=False)
_MARKS = table_of(ProcessedMessageRow)

# -- checking arguments ---------------------------------------------------------------------------


def whole(value: object, path: str, minimum: int) -> int:
    """``value`` as an int of at least ``minimum`` (a bool is no int here), or ``ValidationError``."""
    if type(value) is not int:
        raise ValidationError(path, f"must be an integer, got {value!r}")
    if not minimum <= value <= _INT64_MAX:
        raise ValidationError(path, f"must be at least {minimum} (and a 64-bit integer), got {value}")
    return value


def optional_whole(value: object, path: str, minimum: int) -> int | None:
    """As ``whole``, with None kept (no limit)."""
    return None if value is None else whole(value, path, minimum)


def epoch_ms(value: object, path: str) -> int:
    """``value`` as epoch milliseconds (an int in BIGINT range), or ``ValidationError``."""
    checked = _MILLIS.coerce(value, path)
    assert checked is not None  # not optional: None is refused
    return checked


def cutoff_of(max_age_hours: object) -> int:
    """The epoch ms before which a mark is older than ``max_age_hours`` (a finite number >= 0)."""
    if isinstance(max_age_hours, bool) or not isinstance(max_age_hours, int | float):
        raise ValidationError("max_age_hours", f"must be a number of hours, got {max_age_hours!r}")
    if not math.isfinite(max_age_hours) or max_age_hours < 0:
        raise ValidationError("max_age_hours", f"must be a finite number >= 0, got {max_age_hours!r}")
    now = now_ms()
    return now - int(min(max_age_hours * _HOUR_MS, now))


def application_of(application: object) -> str | None:
    """An application name to filter by, checked as its column checks it, or None for every one."""
    return None if application is None else str(checker(_WORKFLOWS.c.application)(application, "application"))


# -- workflows ------------------------------------------------------------------------------------


def completed_workflows(completed_before_ms: int, limit: int, application: str | None) -> Select[str]:
    """Ids of complete workflows that ended (``end_time`` set) before ``completed_before_ms``,
    oldest end first (then by id), at most ``limit``, of ``application`` when given."""
    statement = select(_WORKFLOWS.c.id).where(
        _WORKFLOWS.c.status.in_(PURGEABLE),
        _WORKFLOWS.c.end_time.is_not(None),
        _WORKFLOWS.c.end_time < completed_before_ms,
    )
    if application is not None:
        statement = statement.where(_WORKFLOWS.c.application == application)
    return statement.order_by(_WORKFLOWS.c.end_time, _WORKFLOWS.c.id).limit(limit)


def purge_batch(connection: Connection, candidates: Select[str]) -> list[str]:
    """Delete the workflows ``candidates`` selects, locked first so none changes meanwhile, with
    their processed marks; stages, tasks, edges, claims and signals go by ``ON DELETE CASCADE``.
    Returns the ids of the workflows deleted."""
    ids = list(connection.execute(candidates.with_for_update()).scalars())
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        connection.execute(delete(_MARKS).where(_MARKS.c.execution_id.in_(chunk)))
        connection.execute(delete(_WORKFLOWS).where(_WORKFLOWS.c.id.in_(chunk)))
    return ids


def purge(
    run: Run[list[str]],
    select_batch: Callable[[int], Select[str]],
    batch: int,
    most: int | None,
    purged: Callable[[list[str]], object] | None = None,
) -> int:
    """Purge in batches of at most ``batch`` workflows (``select_batch(limit)`` picks them), one
    transaction each, until none is left or ``most`` are gone; return how many went.

    ``purged`` is called with each batch's ids once the batch has committed.
    """
    count = 0
    while most is None or count < most:
        limit = batch if most is None else min(batch, most - count)
        ids = run(partial(purge_batch, candidates=select_batch(limit)), Unit.WRITE)
        if ids and purged is not None:
            purged(ids)
        count += len(ids)
        if len(ids) < limit:
            break
    return count


# -- stage claims -----------------------------------------------------------------------------------

#: Claims whose workflow is complete: nothing can race for them any more.
COMPLETED_CLAIMS = delete(CLAIMS).where(
    CLAIMS.c.workflow_id.in_(select(_WORKFLOWS.c.id).where(_WORKFLOWS.c.status.in_(COMPLETE)))
)

# -- processed marks ------------------------------------------------------------------------------


def processed_ids(limit: int | None) -> Select[str]:
    """Processed message ids, newest mark first (then by id), at most ``limit``."""
    statement = select(_MARKS.c.message_id).order_by(_MARKS.c.processed_at.desc(), _MARKS.c.message_id.desc())
    return statement if limit is None else statement.limit(limit)


def live_of(live: object) -> Live | None:
    """``live`` as a function from message ids to the ones still queued: a queue's
    ``live_delivery_keys`` as it is, a collection of ids as the test ``id in live``."""
    if live is None or callable(live):
        return live
    if isinstance(live, str | bytes) or not isinstance(live, Collection):
        problem = f"must be a function of message ids or a collection of ids, got {live!r}"
        raise ValidationError("live", problem)
    kept = frozenset(live)
    return lambda keys: kept.intersection(keys)


def _delete_marks(connection: Connection, ids: Sequence[str], cutoff: int) -> int:
    """Delete the marks of ``ids`` that are still older than ``cutoff``; return how many."""
    deleted = 0
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        stale = delete(_MARKS).where(_MARKS.c.message_id.in_(chunk), _MARKS.c.processed_at < cutoff)
        deleted += rowcount(connection.execute(stale))
    return deleted


def _stale(cutoff: int, limit: int, after: Row[str, int] | None) -> Select[str, int]:
    """The next ``limit`` marks older than ``cutoff``, oldest first, after the mark ``after``."""
    statement = select(_MARKS.c.message_id, _MARKS.c.processed_at).where(_MARKS.c.processed_at < cutoff)
    if after is not None:
        at, message_id = after.processed_at, after.message_id
        same_time_later_id = and_(_MARKS.c.processed_at == at, _MARKS.c.message_id > message_id)
        statement = statement.where(or_(_MARKS.c.processed_at > at, same_time_later_id))
    return statement.order_by(_MARKS.c.processed_at, _MARKS.c.message_id).limit(limit)


def _delete_stale(connection: Connection, cutoff: int, limit: int) -> tuple[int, int]:
    """Delete the oldest ``limit`` marks older than ``cutoff``: (how many went, how many were picked)."""
    ids = list(connection.execute(_stale(cutoff, limit, None)).scalars())
    return _delete_marks(connection, ids, cutoff), len(ids)


def _read(connection: Connection, statement: Select[str, int]) -> list[Row[str, int]]:
    return list(connection.execute(statement).all())


def sweep_processed(run: Run[Any], cutoff: int, batch: int, most: int | None, live: Live | None) -> int:
    """Delete marks older than ``cutoff``, oldest first, at most ``batch`` per transaction and
    ``most`` in all; with ``live``, only those whose message ``live`` says is no longer queued.

    With ``live`` each batch is read in one unit, ``live`` is asked about its ids outside any
    transaction of the store's, and the ones gone from the queue are deleted in another unit
    (still only if older than ``cutoff``). The marks kept are passed over by position (oldest
    first, then by id), so a sweep reads each old mark once and ends.
    """
    deleted = 0
    after: Row[str, int] | None = None
    while most is None or deleted < most:
        limit = batch if most is None else min(batch, most - deleted)
        if live is None:
            removed, picked = run(partial(_delete_stale, cutoff=cutoff, limit=limit), Unit.WRITE)
            deleted += removed
            if picked < limit:
                break
            continue
        rows = run(partial(_read, statement=_stale(cutoff, batch, after)), Unit.READ)
        if not rows:
            break
        queued = set(live([row.message_id for row in rows]))
        gone = [row.message_id for row in rows if row.message_id not in queued]
        if most is not None:
            gone = gone[: most - deleted]
        if gone:
            deleted += run(partial(_delete_marks, ids=gone, cutoff=cutoff), Unit.WRITE)
        if len(rows) < batch:
            break
        after = rows[-1]
    return deleted
