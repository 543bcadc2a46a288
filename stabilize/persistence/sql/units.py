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
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from stabilize.persistence.errors import (
    CommitUnknownError,
    DatabaseUnavailableError,
    LockTimeoutError,
    OperationTimeoutError,
)
from stabilize.persistence.sql.dialects import Unit, watchdog
from stabilize.persistence.sql.dialects.base import RowLimit
from stabilize.persistence.sql.engine import engine_profile, engine_state, mask
from stabilize.persistence.sql.faults import RaceLost, RetryPolicy, translated

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: What a unit of work does: statements on the Session's connection, never a commit.
Work = Callable[[Connection], T]


class _LostBeforeCommit(RaceLost):
    """The connection died before the unit could have committed anything: safe to run again."""


class NeedsTransaction(Exception):
    """Raised by the work of a ``Unit.WRITE_ONE`` unit that finds it must write more than one
    statement, before it has written anything: its caller runs it again as a ``Unit.WRITE``."""


class Database:
    """An engine, the Sessions of its units of work, and how they fail and run again.

    Args:
        engine: the configured engine (``engine.get_engine``); stores and queues of one URL share
            one engine, and each builds its ``Database`` on it.
        retry_policy: how often a unit that lost a race or its connection runs again.
        owns_engine: whether the engine is the library's (made from a URL) rather than the
            caller's: the last ``close`` of a library engine's users releases its connections.
    """

    def __init__(
        self, engine: Engine, retry_policy: RetryPolicy | None = None, *, owns_engine: bool = True
    ) -> None:
        """Register this user of ``engine``; read the profile, bounds and connection policy it runs with."""
        self.engine = engine
        self.closed = False
        self._owns_engine = owns_engine
        if owns_engine:
            with _users_lock:
                _users[engine] = _users.get(engine, 0) + 1
        self.profile = engine_profile(engine)
        self.retry_policy = retry_policy or RetryPolicy()
        self._state = engine_state(engine)
        #: The deadline of one call (``Bounds``): the engine's, set where it was created.
        self.bounds = self._state.bounds
        self._sessions = sessionmaker(engine, expire_on_commit=False, autoflush=False)
        self._options = {unit: self.profile.unit_options(unit) for unit in Unit}
        self._slots = _slots_of(engine)
        self._keeps = self.profile.keeps_thread_connections(engine.url)
        self._watched = self.profile.watches_sockets
        #: Held for a whole unit where all threads share one connection (``_session``).
        self._serial = _serial_lock_of(engine) if self.profile.shares_one_connection(engine.url) else None

    def close(self) -> None:
        """End this user of the engine (idempotent). When the last user of a library engine
        closes, its pooled connections and the threads' kept ones are closed (a SQLite
        in-memory database then ends); a later store or queue on the URL connects afresh.
        Units begun after ``close`` raise ``RuntimeError``."""
        if self.closed:
            return
        self.closed = True
        if not self._owns_engine:
            return
        with _users_lock:
            left = _users[self.engine] = _users[self.engine] - 1
        if left == 0:
            _slots_of(self.engine).close_idle()
            self.engine.dispose()

    def run(self, work: Work[T], unit: Unit) -> T:
        """Run ``work`` as one unit of work of kind ``unit``: committed if it returns, rolled back
        if it raises, run again (whole) after a transient error.

        It runs again only while another attempt still fits in the call's deadline
        (``bounds.operation``): each attempt's waits are bounded by ``bounds.attempt``.

        Raises:
            TransientError: the unit kept losing races after every retry it had time for.
            LockTimeoutError: a lock another client holds was not released in time.
            DatabaseUnavailableError: the database cannot be reached (``OperationTimeoutError``:
                not in time).
        """
        policy, bounds = self.retry_policy, self.bounds
        deadline = time.monotonic() + bounds.operation
        with self._watching(deadline) as watch:
            for attempt in range(1, policy.attempts + 1):
                try:
                    with translated(self.engine):
                        return self._attempt(work, unit)
                except RaceLost as error:  # a lost race, or a connection lost before commit
                    if watch is not None and watch.fired:
                        raise self._timed_out(error) from error
                    pause = policy.delay(attempt)
                    if attempt == policy.attempts or time.monotonic() + pause + bounds.attempt > deadline:
                        if isinstance(error, _LostBeforeCommit):
                            raise DatabaseUnavailableError(
                                f"database {mask(self.engine.url)} is unavailable: {error}, and no "
                                "run is left to try again on a fresh one"
                            ) from error
                        raise
                    logger.info("running a unit of work again after a transient error (%s)", error)
                    time.sleep(pause)
                except DatabaseUnavailableError as error:
                    # Past the deadline, whatever failed (a connect, a ping) failed for want of
                    # time; a write that may have committed keeps saying so.
                    if watch is not None and watch.fired and not isinstance(error, CommitUnknownError):
                        raise self._timed_out(error) from error
                    raise
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _watching(
        self, deadline: float, *, per_statement: bool = False
    ) -> AbstractContextManager[watchdog.Watch | None]:
        """The call watchdog over this call's connections, where the profile has sockets to watch."""
        return watchdog.watching(deadline, per_statement=per_statement) if self._watched else nullcontext()

    def _timed_out(self, error: BaseException) -> OperationTimeoutError:
        return OperationTimeoutError(
            f"database {mask(self.engine.url)} did not answer within the call's deadline "
            f"(operation_timeout {self.bounds.operation:g} s): {error}"
        )

    @property
    def row_limit(self) -> RowLimit | None:
        """Bytes of text and JSON one row may hold on this database (None: no known limit).

        The limit may be the server's (MariaDB's max_allowed_packet), learned when the engine
        first connects: an engine that has not, as a new queue's, connects first, so a first
        write that is too big is refused before any SQL like every later one.
        """
        if not self._state.connected:
            self.run(lambda connection: None, Unit.READ)
        return self.profile.document_limit(self._state.facts)

    def _attempt(self, work: Work[T], unit: Unit) -> T:
        with self._session() as session:
            committing = False
            try:
                connection = session.connection(execution_options=self._options[unit])
                result = work(connection)
                committing = True
                session.commit()
                return result
            except DBAPIError as error:
                session.rollback()
                if _lost(self, error):
                    if self._may_have_committed(unit, committing):
                        raise self._commit_unknown(error) from error
                    # Nothing can have been written: run the unit again on a fresh connection.
                    raise _LostBeforeCommit(f"connection lost before commit: {error.orig}") from error
                raise
            except BaseException:
                session.rollback()
                raise

    def _commit_unknown(self, error: DBAPIError) -> CommitUnknownError:
        cause = str(error.orig or error).strip().splitlines()
        return CommitUnknownError(
            f"database {mask(self.engine.url)}: the connection was lost while the write may have been "
            f"committing ({cause[0] if cause else type(error).__name__}); it may or may not have "
            "committed: read the state again before deciding (a processed mark tells a redelivery)"
        )

    def _may_have_committed(self, unit: Unit, committing: bool) -> bool:
        """Whether a unit whose connection died may have written: it was committing, or it is a
        write whose statement commits by itself."""
        return unit.writes and (committing or unit in self.profile.autocommit_units)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """The unit's Session, bound to its connection.

        Each thread keeps one Session per engine (SQLAlchemy's "thread-local scope", holding no
        objects between units: the store reads and writes rows, not ORM instances), and, where
        the profile says so (SQLite files), one connection: building a Session, and a pool
        checkout and check-in, each cost about as much as a small SQLite transaction. A unit
        nested in one of the thread's own gets a Session and a connection of its own. A failure
        to connect is raised here, before the unit's work: it is not a lost connection to run
        again on, but a database that cannot be reached.
        """
        if self.closed:
            raise RuntimeError(f"closed: this store or queue of {mask(self.engine.url)} was closed")
        if self._serial is None:
            with self._slot_session() as session:
                yield session
            return
        # One connection for every thread (an in-memory SQLite database): its transactions are
        # the connection's, so two threads' units would run in one; they take turns instead.
        if not self._serial.acquire(timeout=self.bounds.attempt):
            raise LockTimeoutError(
                f"database {mask(self.engine.url)}: another thread's unit of work held the in-memory "
                f"database's one connection for over {self.bounds.attempt:g} s"
            )
        try:
            with self._slot_session() as session:
                yield session
        finally:
            self._serial.release()

    @contextmanager
    def _slot_session(self) -> Iterator[Session]:
        slot = self._slots.get()
        if slot.busy:
            with self.engine.connect() as connection, self._sessions(bind=connection) as session:
                yield session
            return
        slot.busy = True
        try:
            if slot.session is None:
                slot.session = self._sessions()
            if self._keeps:
                slot.session.bind = slot.connection_for(self.engine)
                yield slot.session
                return
            with self.engine.connect() as connection:
                slot.session.bind = connection
                yield slot.session
        finally:
            slot.busy = False
            slot.release()

    @contextmanager
    def held(self) -> Iterator[Connection]:
        """A write unit its caller works in while the block runs: begun as ``Unit.WRITE`` (on
        SQLite, the write lock taken at BEGIN), committed when the block ends, rolled back if it
        raises. It is never run again: the block's own code ran, and may have acted on answers
        (a transient error propagates as ``TransientError``, for the caller to retry).

        Raises:
            TransientError, LockTimeoutError, DatabaseUnavailableError: as ``run``.
        """
        operation = self.bounds.operation
        deadline = time.monotonic() + operation
        # Connecting and beginning get the call's deadline; then each statement gets it (the
        # block's own code between statements is the caller's), and so do the COMMIT and ROLLBACK.
        watch: watchdog.Watch | None
        with (
            translated(self.engine),
            self._watching(deadline, per_statement=True) as watch,
            self._session() as session,
        ):
            try:
                connection = session.connection(execution_options=self._options[Unit.WRITE])
                if watch is not None:
                    watch.disarm()
                yield connection
            except BaseException:
                if watch is not None:
                    watch.arm(operation)
                session.rollback()
                raise
            try:
                if watch is not None:
                    watch.arm(operation)
                session.commit()
            except DBAPIError as error:
                session.rollback()
                if _lost(self, error):
                    raise self._commit_unknown(error) from error
                raise

    @contextmanager
    def within(self, session: Session) -> Iterator[Connection]:
        """The caller's ``session``'s connection, in a SAVEPOINT for the block: if the block
        raises, what it wrote is rolled back and the caller's own work in the session stays as it
        was. The caller commits or rolls back; nothing is retried here."""
        with translated(self.engine), session.begin_nested():
            yield session.connection()


def _lost(database: Database, error: DBAPIError) -> bool:
    return bool(error.connection_invalidated) or database.profile.is_unreachable(error.orig or error)


class _Slot:
    """What one thread keeps for one engine: its Session, and its connection where kept."""

    def __init__(self) -> None:
        self.session: Session | None = None
        self.connection: Connection | None = None
        self.busy = False
        self.pid = os.getpid()
        self._finalizer: weakref.finalize[[Connection], threading.Thread] | None = None

    def connection_for(self, engine: Engine) -> Connection:
        """The kept connection, connected on first use (and again after a loss)."""
        if self.connection is None:
            self.connection = engine.connect()
            self._finalizer = weakref.finalize(threading.current_thread(), _close, self.connection)
        return self.connection

    def release(self) -> None:
        """After a unit: unbind the Session; drop a kept connection that was lost."""
        if self.session is not None:
            self.session.bind = None
        connection = self.connection
        if connection is not None and (connection.invalidated or connection.closed):
            self.drop()

    def drop(self) -> None:
        """Close the kept connection, if any (the next unit connects again)."""
        connection = self.connection
        if connection is not None:
            if self._finalizer is not None:
                self._finalizer.detach()
            _close(connection)
            self.connection = self._finalizer = None


class _Slots:
    """Each thread's ``_Slot`` of one engine; a forked child starts afresh (its parent's
    connections are dropped, never closed, there). Every slot is also listed (weakly: a slot
    lives as long as its thread), so the engine's last ``close`` can close the kept connections
    of every thread."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._every: weakref.WeakSet[_Slot] = weakref.WeakSet()
        self._lock = threading.Lock()

    def get(self) -> _Slot:
        slot: _Slot | None = getattr(self._local, "slot", None)
        if slot is None or slot.pid != os.getpid():
            slot = self._local.slot = _Slot()
            with self._lock:
                self._every.add(slot)
        return slot

    def close_idle(self) -> None:
        """Close every thread's kept connection that no unit is using."""
        with self._lock:
            slots = list(self._every)
        for slot in slots:
            if not slot.busy and slot.pid == os.getpid():
                slot.drop()


def _close(connection: Connection) -> None:
    with suppress(Exception):  # at thread exit or after a loss: nothing left to report to
        connection.close()


#: Per engine whose threads share one connection, the lock its units take turns on.
_serial_locks: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()


def _serial_lock_of(engine: Engine) -> threading.RLock:
    with _slots_lock:
        lock = _serial_locks.get(engine)
        if lock is None:
            lock = _serial_locks[engine] = threading.RLock()
        return lock


#: Per library engine, how many stores and queues use it (``Database.close``).
_users: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()
_users_lock = threading.Lock()

#: Per engine, its threads' slots.
_slots: weakref.WeakKeyDictionary[Engine, _Slots] = weakref.WeakKeyDictionary()
_slots_lock = threading.Lock()


def _slots_of(engine: Engine) -> _Slots:
    with _slots_lock:
        return _slots.setdefault(engine, _Slots())


__all__ = ["Database", "NeedsTransaction", "Unit", "Work"]
