"""How a poller takes a due message so that no other poller holds it at the same time.

Two strategies behind one interface, chosen once per engine by capability, never by dialect name:

- ``SkipLockedClaimer`` (PostgreSQL, MariaDB >= 10.6, MySQL 8): ``SELECT ... FOR UPDATE SKIP
  LOCKED`` row-locks the first due row no other transaction holds, so concurrent pollers walk
  past each other instead of queueing on the same row.
- ``CompareAndSetClaimer`` (SQLite, unknown dialects): read due rows without locks, then take one
  with a single conditional UPDATE; a row count of 1 means this poller won. On SQLite the claim
  transaction begins with ``BEGIN IMMEDIATE`` (the write-intent engine), so writers are already
  serialised and the first candidate wins; the compare-and-set keeps other databases correct.

Both run inside the caller's transaction and never commit. A row is due when ``deliver_at <=
now``; taking it moves ``deliver_at`` and ``locked_until`` to the end of the lock, so a claimed
row is simply not due (one indexed range, ``ix_queue_messages_deliver_at_id``) until its lock
lapses, and then it is due again in the order of that lapse.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

from sqlalchemy import ColumnElement, Connection, RowMapping, Select, and_, delete, select, update

from stabilize.persistence.sql.engine import engine_profile
from stabilize.queue.records import QUEUE, rowcount

#: Rows the compare-and-set strategy reads per poll; more than one so a lost race can move on.
CAS_BATCH = 8


def due(now: int) -> Select[Any]:
    """Due rows, earliest first; ``id`` breaks ties so equal times come out in push order."""
    return select(QUEUE).where(QUEUE.c.deliver_at <= now).order_by(QUEUE.c.deliver_at, QUEUE.c.id)


class Claimer(ABC):
    """Finds due rows and takes or removes them inside the caller's transaction."""

    @abstractmethod
    def candidates(self, connection: Connection, now: int) -> Iterator[RowMapping]:
        """Due rows to try, earliest first. The caller bounds how many it tries."""

    def _unchanged(self, row: RowMapping, now: int) -> ColumnElement[bool]:
        """The row is still as this poller read it: same claim count, and still due.

        Every claim bumps ``attempts`` and pushes ``deliver_at`` past ``now``, and a reschedule or
        ``ensure`` moves ``deliver_at``; any of them in between makes this false (compare-and-set).
        """
        return and_(QUEUE.c.id == row["id"], QUEUE.c.attempts == row["attempts"], QUEUE.c.deliver_at <= now)

    def take(self, connection: Connection, row: RowMapping, now: int, lock_until: int) -> bool:
        """Claim ``row`` until ``lock_until``, counting one attempt; False if another poller won."""
        result = connection.execute(
            update(QUEUE)
            .where(self._unchanged(row, now))
            .values(attempts=QUEUE.c.attempts + 1, locked_until=lock_until, deliver_at=lock_until)
        )
        return rowcount(result) == 1

    def remove(self, connection: Connection, row: RowMapping, now: int) -> bool:
        """Delete ``row`` (on its way to the dead letters); False if another poller claimed it."""
        return rowcount(connection.execute(delete(QUEUE).where(self._unchanged(row, now)))) == 1


class SkipLockedClaimer(Claimer):
    """Row locks: the first due row nobody holds, locked until this transaction ends."""

    def _unchanged(self, row: RowMapping, now: int) -> ColumnElement[bool]:
        # Our row lock already guarantees it, and the primary key alone keeps the statement on
        # the primary key: given ``deliver_at <= now`` too, MariaDB range-scans the claim index
        # instead and locks other pollers' rows on the way, which deadlocks them.
        return and_(QUEUE.c.id == row["id"])

    def candidates(self, connection: Connection, now: int) -> Iterator[RowMapping]:
        # One row at a time: each one yielded is taken or removed before the next query, so
        # the query never returns it again (our own lock does not make SKIP LOCKED skip it).
        query = due(now).limit(1).with_for_update(skip_locked=True)
        while (row := connection.execute(query).mappings().first()) is not None:
            yield row


class CompareAndSetClaimer(Claimer):
    """No row locks: read a few due rows, then win one with a conditional UPDATE."""

    def candidates(self, connection: Connection, now: int) -> Iterator[RowMapping]:
        yield from connection.execute(due(now).limit(CAS_BATCH)).mappings().all()


def claimer_for(connection: Connection) -> Claimer:
    """The strategy this server supports; asked on a live connection, since MariaDB's answer
    depends on the server version the dialect only knows once connected."""
    engine = connection.engine
    if engine_profile(engine).supports_skip_locked(engine.dialect):
        return SkipLockedClaimer()
    return CompareAndSetClaimer()
