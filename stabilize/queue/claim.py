"""How a poller takes a due message so that no other poller holds it at the same time.

Two strategies behind one interface, chosen once per engine by capability, never by dialect name:

- ``SkipLockedClaimer`` (PostgreSQL, MariaDB >= 10.6, MySQL 8): ``SELECT ... FOR UPDATE SKIP
  LOCKED`` row-locks the first due row no other transaction holds, so concurrent pollers walk
  past each other instead of queueing on the same row.
- ``CompareAndSetClaimer`` (SQLite, unknown dialects): read due rows without locks, then take one
  with a single conditional UPDATE; a row count of 1 means this poller won. On SQLite the claim
  transaction begins with ``BEGIN IMMEDIATE`` (the write-intent engine), so writers are already
  serialised and the first candidate wins; the compare-and-set keeps other databases correct. On a
  Galera cluster (row locks local to a node) it tries the candidates in random order: two nodes
  that took one row anyway are decided by certification, which fails one at COMMIT (a lost race:
  its unit runs again).

Both run inside the caller's transaction and never commit. A row is due when ``deliver_at <=
now``; taking it moves ``deliver_at`` and ``locked_until`` to the end of the lock, so a claimed
row is simply not due (one indexed range, ``ix_queue_messages_deliver_at_id``) until its lock
lapses, and then it is due again in the order of that lapse.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import BigInteger, Connection, Engine, Executable, bindparam, delete, select, update

from stabilize.persistence.sql.dialects.base import rowcount
from stabilize.persistence.sql.engine import engine_profile, engine_state
from stabilize.queue.records import QUEUE, ROW_COLUMNS, Row

#: Rows the compare-and-set strategy reads per poll; more than one so a lost race can move on.
CAS_BATCH = 8


_NOW = bindparam("now", type_=BigInteger)


def _due(limit: int, skip_locked: bool) -> Executable:
    """Due rows, earliest first; ``id`` breaks ties so equal times come out in push order."""
    query = select(*ROW_COLUMNS).where(QUEUE.c.deliver_at <= _NOW).order_by(QUEUE.c.deliver_at, QUEUE.c.id)
    query = query.limit(limit)
    return query.with_for_update(skip_locked=True) if skip_locked else query


def _this_row(compare: bool) -> list[Any]:
    """The row as this poller read it: by id alone under a row lock; else also the same claim
    count and still due (compare-and-set). Every claim bumps ``attempts`` and pushes
    ``deliver_at`` past ``now``, and a reschedule or ``ensure`` moves ``deliver_at``; any of them
    in between makes the comparison false."""
    where = [QUEUE.c.id == bindparam("row_id")]
    if compare:
        where += [QUEUE.c.attempts == bindparam("row_attempts"), QUEUE.c.deliver_at <= _NOW]
    return where


def _take(compare: bool) -> Executable:
    until = bindparam("until", type_=BigInteger)
    return (
        update(QUEUE)
        .where(*_this_row(compare))
        .values(attempts=QUEUE.c.attempts + 1, locked_until=until, deliver_at=until)
    )


def _remove(compare: bool) -> Executable:
    return delete(QUEUE).where(*_this_row(compare))


#: Removes a row on its way to the dead letters; False if another poller claimed it first.
Remove = Callable[[Connection, Row, int], bool]

#: Built once per form: by id alone (under a row lock), or compared with the row as read.
_TAKE = {compare: _take(compare) for compare in (False, True)}
_REMOVE = {compare: _remove(compare) for compare in (False, True)}


def remove_unchanged(connection: Connection, row: Row, now: int) -> bool:
    """Delete ``row`` if it is still as read (same claim count, still due), whatever the strategy:
    for rows read without a claim (``check_and_move_expired``)."""
    params = {"row_id": row["id"], "row_attempts": row["attempts"], "now": now}
    return rowcount(connection.execute(_REMOVE[True], params)) == 1


class Claimer(ABC):
    """Finds due rows and takes or removes them inside the caller's transaction."""

    def __init__(self, compare: bool) -> None:
        """Use the take and remove statements of ``compare``'s form: by id alone (``False``, for rows a
        row lock already holds), or also on the claim count and due time as read (``True``).
        """
        self._take = _TAKE[compare]
        self._remove = _REMOVE[compare]

    @abstractmethod
    def candidates(self, connection: Connection, now: int) -> Iterator[Row]:
        """Due rows to try, earliest first. The caller bounds how many it tries."""

    def take(self, connection: Connection, row: Row, now: int, lock_until: int) -> bool:
        """Claim ``row`` until ``lock_until``, counting one attempt; False if another poller won."""
        params = {"row_id": row["id"], "row_attempts": row["attempts"], "now": now, "until": lock_until}
        return rowcount(connection.execute(self._take, params)) == 1

    def remove(self, connection: Connection, row: Row, now: int) -> bool:
        """Delete ``row`` (on its way to the dead letters); False if another poller claimed it."""
        params = {"row_id": row["id"], "row_attempts": row["attempts"], "now": now}
        return rowcount(connection.execute(self._remove, params)) == 1


class SkipLockedClaimer(Claimer):
    """Row locks: the first due row nobody holds, locked until this transaction ends.

    Taking and removing go by primary key alone: our row lock already guarantees the row is as
    read, and given ``deliver_at <= now`` too, MariaDB range-scans the claim index instead and
    locks other pollers' rows on the way, which deadlocks them.
    """

    _DUE = _due(1, skip_locked=True)

    def __init__(self) -> None:
        """Take and remove rows by id alone: the row lock guarantees they are as read."""
        super().__init__(compare=False)

    def candidates(self, connection: Connection, now: int) -> Iterator[Row]:
        """The first due row no other transaction holds, locked ``FOR UPDATE SKIP LOCKED``; queried again
        after each one is taken or removed.
        """
        # One row at a time: each one yielded is taken or removed before the next query, so
        # the query never returns it again (our own lock does not make SKIP LOCKED skip it).
        while (row := connection.execute(self._DUE, {"now": now}).mappings().first()) is not None:
            yield row


class CompareAndSetClaimer(Claimer):
    """No row locks: read a few due rows, then win one with a conditional UPDATE.

    Args:
        spread: try the rows in random order rather than earliest first, so consumers whose
            row locks cannot see each other (Galera nodes, which certification then decides
            between at COMMIT) seldom go for the same row.
    """

    _DUE = _due(CAS_BATCH, skip_locked=False)

    def __init__(self, spread: bool = False) -> None:
        """Take and remove rows only while they are as read (claim count, still due).

        Args:
            spread: try the rows in random order (see the class).
        """
        super().__init__(compare=True)
        self._spread = spread

    def candidates(self, connection: Connection, now: int) -> Iterator[Row]:
        """Up to ``CAS_BATCH`` due rows, read without locks, earliest first (or shuffled when ``spread``)."""
        rows = list(connection.execute(self._DUE, {"now": now}).mappings().all())
        if self._spread:
            random.shuffle(rows)
        yield from rows


class ReturningClaimer:
    """One statement claims the earliest due row and returns it (PostgreSQL, SQLite >= 3.35):
    ``UPDATE ... WHERE id = (earliest due id [FOR UPDATE SKIP LOCKED]) RETURNING ...``.

    Run on its own it commits itself: one round trip per poll instead of four. The caller checks
    the row afterwards; a claimed row that must not be delivered (attempts used up, undecodable)
    is dead-lettered in a second transaction, fenced by the claim's attempt number. The outer
    ``deliver_at <= now`` makes a row that changed since the subquery chose it (acked, claimed,
    rescheduled) match nothing, so two pollers never take one row.
    """

    def __init__(self, skip_locked: bool) -> None:
        """Build the claim statement; ``skip_locked`` adds ``FOR UPDATE SKIP LOCKED`` to the subquery
        that picks the row.
        """
        earliest = select(QUEUE.c.id).where(QUEUE.c.deliver_at <= _NOW)
        earliest = earliest.order_by(QUEUE.c.deliver_at, QUEUE.c.id).limit(1)
        if skip_locked:
            earliest = earliest.with_for_update(skip_locked=True)
        until = bindparam("until", type_=BigInteger)
        self._claim = (
            update(QUEUE)
            .where(QUEUE.c.id == earliest.scalar_subquery(), QUEUE.c.deliver_at <= _NOW)
            .values(attempts=QUEUE.c.attempts + 1, locked_until=until, deliver_at=until)
            .returning(*ROW_COLUMNS)
        )

    def claim(self, connection: Connection, now: int, lock_until: int) -> Row | None:
        """The claimed row, as it is now (attempts counted); None when nothing is due."""
        return connection.execute(self._claim, {"now": now, "until": lock_until}).mappings().first()


def claimer_for(engine: Engine) -> Claimer | ReturningClaimer:
    """The strategy this server supports; asked once connected, since MariaDB's answer depends on
    the server version the dialect only knows after its first connection."""
    profile, dialect = engine_profile(engine), engine.dialect
    if profile.spreads_claims(engine_state(engine).facts):
        return CompareAndSetClaimer(spread=True)
    skip_locked = profile.supports_skip_locked(dialect)
    if profile.supports_claim_returning(dialect):
        return ReturningClaimer(skip_locked)
    if skip_locked:
        return SkipLockedClaimer()
    return CompareAndSetClaimer()
