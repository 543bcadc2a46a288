"""The one door to the database: every public call of the store and the queue is one unit of work here.

``Database.run(work, unit)`` opens a SQLAlchemy ``Session`` (from its ``sessionmaker``), hands
``work`` the Session's ``Connection``, commits when ``work`` returns and rolls back when it raises,
and closes the Session: the session lifecycle lives here, outside the code that touches data
(SQLAlchemy's ``session_basics``). ``work`` only runs SQLAlchemy statements on that connection and
never commits, so SQLAlchemy's parameter and result processing, events (``echo``, OpenTelemetry),
connection invalidation and error wrapping see every statement.

One fault path for every call:

- errors are translated once (``faults.translated``): a deadlock, serialization failure or busy
  database is ``TransientError``, an unreachable server ``DatabaseUnavailableError``;
- a unit that lost such a race, or whose connection was lost before it could have committed, runs
  again, whole, on a fresh connection, a bounded number of times with jittered back-off
  (``RetryPolicy``); a unit whose connection was lost while it may have committed (its COMMIT, or
  a statement that commits by itself) is never run again;
- a caller's own Session (``within``) is joined, never begun, committed, retried or closed here.

Each unit is begun as its kind asks (``dialects.Unit``, ``profile.unit_options``): a read of one
statement without a transaction where that is free, a read of several in one snapshot, a write
with SQLite's write lock taken at BEGIN.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from stabilize.errors import TransientError
from stabilize.persistence.sql.dialects import Unit
from stabilize.persistence.sql.engine import engine_profile
from stabilize.persistence.sql.faults import RetryPolicy, translated

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: What a unit of work does: statements on the Session's connection, never a commit.
Work = Callable[[Connection], T]


class _LostBeforeCommit(TransientError):
    """The connection died before the unit could have committed anything: safe to run again."""


class Database:
    """An engine, the Sessions of its units of work, and how they fail and run again.

    Args:
        engine: the configured engine (``engine.get_engine``); stores and queues of one URL share
            one engine, and each builds its ``Database`` on it.
        retry_policy: how often a unit that lost a race or its connection runs again.
    """

    def __init__(self, engine: Engine, retry_policy: RetryPolicy | None = None) -> None:
        self.engine = engine
        self.profile = engine_profile(engine)
        self.retry_policy = retry_policy or RetryPolicy()
        self._sessions = sessionmaker(engine, expire_on_commit=False, autoflush=False)
        self._options = {unit: self.profile.unit_options(unit) for unit in Unit}
        self._kept = _kept_connections(engine) if self.profile.keeps_thread_connections(engine.url) else None

    def run(self, work: Work[T], unit: Unit) -> T:
        """Run ``work`` as one unit of work of kind ``unit``: committed if it returns, rolled back
        if it raises, run again (whole) after a transient error.

        Raises:
            TransientError: the unit kept losing races after every retry.
            DatabaseUnavailableError: the database cannot be reached.
        """
        policy = self.retry_policy
        for attempt in range(1, policy.attempts + 1):
            try:
                with translated(self.engine):
                    return self._attempt(work, unit)
            except TransientError as error:
                if attempt == policy.attempts:
                    raise
                logger.info("running a unit of work again after a transient error (%s)", error)
                time.sleep(policy.delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _attempt(self, work: Work[T], unit: Unit) -> T:
        with self._connection() as bind:
            session = self._sessions(bind=bind)
            committing = False
            try:
                connection = session.connection(execution_options=self._options[unit])
                result = work(connection)
                committing = True
                session.commit()
                return result
            except DBAPIError as error:
                session.rollback()
                if _lost(self, error) and not self._may_have_committed(unit, committing):
                    # Nothing can have been written: run the unit again on a fresh connection.
                    raise _LostBeforeCommit(f"connection lost before commit: {error.orig}") from error
                raise
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

    def _may_have_committed(self, unit: Unit, committing: bool) -> bool:
        """Whether a unit whose connection died may have written: it was committing, or it is a
        write whose statement commits by itself."""
        return unit.writes and (committing or unit in self.profile.autocommit_units)

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """The connection the unit's Session binds to: this thread's kept one where the profile
        keeps one (and it is not in use by an enclosing unit), else a pool checkout. A failure to
        connect is raised here, before the unit's work: it is not a lost connection to run again
        on, but a database that cannot be reached."""
        kept = self._kept
        if kept is None or kept.busy:
            with self.engine.connect() as connection:
                yield connection
            return
        connection = kept.get(self.engine)
        kept.busy = True
        try:
            yield connection
        finally:
            kept.busy = False
            if connection.invalidated or connection.closed:
                kept.forget()

    def within(self, session: Session, work: Work[T]) -> T:
        """Run ``work`` inside the caller's ``session``, in a SAVEPOINT: if it raises, what it
        wrote is rolled back and the caller's own work in the session stays as it was. The
        caller commits or rolls back; nothing is retried here."""
        with translated(self.engine), session.begin_nested():
            return work(session.connection())

    @contextmanager
    def connection(self, unit: Unit) -> Iterator[Connection]:
        """A unit of work as a block, for work that must not run twice (no retry): committed at
        the end, rolled back if the block raises."""
        with translated(self.engine), self._connection() as bind:
            session = self._sessions(bind=bind)
            try:
                yield session.connection(execution_options=self._options[unit])
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()


def _lost(database: Database, error: DBAPIError) -> bool:
    return bool(error.connection_invalidated) or database.profile.is_unreachable(error.orig or error)


class _ThreadConnection(threading.local):
    """The connection one thread keeps for one engine whose profile says so (SQLite files): a
    pool checkout and check-in cost about as much as a small SQLite transaction. It is closed
    when the thread ends (``weakref.finalize`` on the thread), or dropped when lost."""

    connection: Connection | None = None
    busy = False
    pid = 0
    release: weakref.finalize[[Connection], threading.Thread] | None = None

    def get(self, engine: Engine) -> Connection:
        if self.connection is None or self.pid != os.getpid():
            self.forget()
            self.connection = engine.connect()
            self.pid = os.getpid()
            self.release = weakref.finalize(threading.current_thread(), _close, self.connection)
        return self.connection

    def forget(self) -> None:
        if self.release is not None:
            self.release.detach()
        # A connection inherited through fork() belongs to the parent: dropped, never closed here.
        if self.connection is not None and self.pid == os.getpid():
            _close(self.connection)
        self.connection, self.release = None, None


def _close(connection: Connection) -> None:
    with suppress(Exception):  # at thread exit or after a loss: nothing left to report to
        connection.close()


#: Per engine, its threads' kept connections.
_kept: weakref.WeakKeyDictionary[Engine, _ThreadConnection] = weakref.WeakKeyDictionary()
_kept_lock = threading.Lock()


def _kept_connections(engine: Engine) -> _ThreadConnection:
    with _kept_lock:
        return _kept.setdefault(engine, _ThreadConnection())


__all__ = ["Database", "Unit", "Work"]
