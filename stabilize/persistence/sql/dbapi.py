"""One transaction on a pooled driver connection, for the ``Prepared`` statements of the hot paths.

A call costs one pool checkout (on a SQLite file, none: each thread keeps its connection), the
statements, and a commit: no Session, no Core ``Connection`` bookkeeping. A lost connection is
invalidated so the pool never hands it out again, and the unit of work reruns on a fresh one
when nothing can have been committed; errors go through ``faults.translated`` like every other
database call.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from stabilize.errors import TransientError
from stabilize.persistence.sql.dialects.sqlite import WRITE_INTENT
from stabilize.persistence.sql.engine import engine_profile
from stabilize.persistence.sql.faults import translated
from stabilize.persistence.sql.prepared import Cursor


@dataclass
class Unit:
    """One transaction's means: the cursor, and a Core connection when the work needs one."""

    cursor: Cursor
    #: The Core connection owning the transaction, for statements a caller hands in (effects);
    #: None on the direct path.
    connection: Connection | None = None


@contextmanager
def transaction(
    engine: Engine, *, write: bool, core: bool = False, autocommit: bool = False
) -> Iterator[Unit]:
    """One transaction on a pooled connection: committed when the block ends, rolled back if it
    raises. ``write`` takes SQLite's write lock at BEGIN; ``core`` runs the transaction through a
    Core ``Connection`` (for caller statements) instead of the driver directly. ``autocommit``
    runs each statement as its own transaction where the driver can switch for free, saving
    BEGIN and COMMIT round trips: for work of one statement, or reads that see the same either
    way (``read_isolation``); elsewhere it is an ordinary transaction."""
    if core:
        with _core_transaction(engine, write) as unit:
            yield unit
        return
    profile = engine_profile(engine)
    dialect = engine.dialect
    with translated(engine):
        pooled, kept = _acquire(engine)
        try:
            dbapi_connection = pooled.dbapi_connection
            cursor = Cursor(pooled.cursor(), dialect, dbapi_connection)
            committing = False
            autocommit = autocommit and profile.dbapi_autocommit(dbapi_connection, True)
            try:
                if not autocommit:
                    profile.begin_dbapi(cursor, write)
                yield Unit(cursor)
                committing = True
                if not autocommit:
                    pooled.commit()
            except BaseException as raised:
                error = raised
                if isinstance(raised, dialect.loaded_dbapi.Error):  # BEGIN or COMMIT itself
                    error = cursor.wrapped(raised, "COMMIT" if committing else "BEGIN")
                lost = isinstance(error, DBAPIError) and (
                    error.connection_invalidated or profile.is_unreachable(error.orig or error)
                )
                _abandon(pooled, error, lost)
                if lost and not committing and not (autocommit and write):
                    # Lost before COMMIT was sent: nothing was written, so the unit of work can
                    # run again on a fresh connection (``retry_transient``). A write that commits
                    # by itself may have committed when its connection died: never rerun.
                    raise TransientError(f"connection lost before commit: {error}") from error
                if error is not raised:
                    raise error from raised
                raise
            finally:
                if autocommit and pooled.is_valid:
                    profile.dbapi_autocommit(dbapi_connection, False)
        finally:
            _release(pooled, kept)


class _ThreadConnection(threading.local):
    """The connection one thread keeps for one engine whose profile says so (SQLite files): a
    pool checkout and check-in cost more than a small SQLite transaction itself. It goes back to
    the pool when the thread ends (``weakref.finalize`` on the thread), or when it is lost."""

    pooled: Any = None
    busy = False
    pid = 0
    release: weakref.finalize[[Any], threading.Thread] | None = None


#: Per engine: its threads' kept connections, or None for an engine that checks out every call.
_kept: weakref.WeakKeyDictionary[Engine, _ThreadConnection | None] = weakref.WeakKeyDictionary()
_kept_lock = threading.Lock()


def _acquire(engine: Engine) -> tuple[Any, _ThreadConnection | None]:
    """This thread's kept connection where the engine keeps one and it is free; else a checkout."""
    try:
        kept = _kept[engine]
    except KeyError:
        with _kept_lock:
            keeps = engine_profile(engine).keeps_thread_connections(engine.url)
            kept = _kept.setdefault(engine, _ThreadConnection() if keeps else None)
    if kept is None or kept.busy:  # busy: a transaction nested in this thread's own
        return _checkout(engine), None
    if kept.pooled is None or kept.pid != os.getpid():
        _forget(kept)
        kept.pooled = _checkout(engine)
        kept.pid = os.getpid()
        kept.release = weakref.finalize(threading.current_thread(), _close, kept.pooled)
    kept.busy = True
    return kept.pooled, kept


def _release(pooled: Any, kept: _ThreadConnection | None) -> None:
    if kept is None:
        pooled.close()
        return
    kept.busy = False
    if not pooled.is_valid:  # lost, or could not roll back: the next call keeps a fresh one
        _forget(kept)


def _forget(kept: _ThreadConnection) -> None:
    if kept.release is not None:
        kept.release.detach()
    # A connection inherited through fork() belongs to the parent: dropped, never closed here.
    if kept.pooled is not None and kept.pid == os.getpid():
        _close(kept.pooled)
    kept.pooled, kept.release = None, None


def _close(pooled: Any) -> None:
    with suppress(Exception):  # at thread exit or after a loss: nothing left to report to
        pooled.close()


def _checkout(engine: Engine) -> Any:
    """A pooled connection; a failure to connect raised as SQLAlchemy's error, as
    ``engine.connect()`` would (``raw_connection`` leaves the driver's own)."""
    dialect = engine.dialect
    try:
        return engine.raw_connection()
    except dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(
            None, None, error, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect
        ) from error


def _abandon(pooled: Any, error: BaseException, lost: bool) -> None:
    """Roll back; a connection that was lost, or cannot roll back, is dropped from the pool."""
    if lost:
        pooled.invalidate(error)
        return
    try:
        pooled.rollback()
    except Exception as failed:
        pooled.invalidate(failed)


@contextmanager
def _core_transaction(engine: Engine, write: bool) -> Iterator[Unit]:
    with translated(engine), engine.execution_options(**{WRITE_INTENT: write}).begin() as connection:
        pooled = connection.connection
        yield Unit(Cursor(pooled.cursor(), engine.dialect, pooled.dbapi_connection), connection)
