"""The engine events a profile needs: the only code that touches a DBAPI connection.

- ``connect``: the profile's per-connection settings (SQLite pragmas, MySQL strict mode), and the
  connection's socket noted for the call watchdog (``watchdog``);
- ``checkout``: the connection enlisted with the running call's watchdog, then a ping of a pooled
  connection that sat idle (``ping_after_idle``), so one whose server restarted meanwhile is
  replaced before a caller sees it (SQLAlchemy's "pessimistic disconnect handling", only after
  idling: ``pool_pre_ping`` would cost a round trip per call);
- ``before_cursor_execute`` / ``after_cursor_execute``: a held transaction's watch armed for
  each statement (``watchdog``);
- ``begin``: transactions begun the dialect's own way (``begins_itself``: SQLite's BEGIN IMMEDIATE,
  MySQL's REPEATABLE READ snapshot), through the SQLAlchemy ``Connection``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DisconnectionError

from stabilize.persistence.errors import OperationTimeoutError
from stabilize.persistence.sql.dialects import watchdog
from stabilize.persistence.sql.dialects.base import Bounds, GenericProfile


@dataclass
class EngineState:
    """An engine's bounds, and the facts its connections learned of the server (its packet size);
    ``connected`` once the first connection has learned them."""

    bounds: Bounds
    facts: dict[str, Any] = field(default_factory=dict)
    connected: bool = False


def install(engine: Engine, profile: GenericProfile, bounds: Bounds) -> EngineState:
    """Attach ``profile``'s hooks to ``engine`` (call once per engine); return its state."""
    state = EngineState(bounds)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        state.facts.update(profile.on_connect(dbapi_connection, bounds))
        state.connected = True
        fileno = profile.socket_of(dbapi_connection)
        handle = None if fileno is None else watchdog.SocketHandle.of(fileno)
        if handle is not None and record is not None:
            record.info[watchdog.SOCKET] = handle

    if profile.ping_after_idle is not None:
        _ping_idle_connections(engine, profile.ping_after_idle, bounds)

    if profile.watches_sockets:
        _watch_statements(engine, bounds)

    if profile.begins_itself:

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            profile.on_begin(connection)

    return state


def _watch_statements(engine: Engine, bounds: Bounds) -> None:
    """Arm the watch of a transaction its caller holds open (``watchdog.Watch.per_statement``)
    for each statement, and disarm it when the statement ends: each statement gets the call's
    deadline, the caller's code between them none."""

    @event.listens_for(engine, "before_cursor_execute")
    def _statement_begins(*_args: Any) -> None:
        watch = watchdog.current()
        if watch is not None and watch.per_statement:
            watch.arm(bounds.operation)

    def _statement_ended(*_args: Any) -> None:
        watch = watchdog.current()
        if watch is not None and watch.per_statement:
            watch.disarm()

    event.listen(engine, "after_cursor_execute", _statement_ended)
    event.listen(engine, "handle_error", _statement_ended)


def _ping_idle_connections(engine: Engine, idle_seconds: float, bounds: Bounds) -> None:
    """Ping a pooled connection at checkout when it sat idle for ``idle_seconds``; a dead one is
    replaced before the caller sees it. Busy connections skip the round trip; a connection lost
    in the gap fails its unit, which runs again on a fresh one where nothing can have been
    written (``units.Database``)."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["idle_since"] = time.monotonic()
            watch = watchdog.current()
            handle = record.info.get(watchdog.SOCKET)
            if watch is not None and handle is not None:
                watch.release(handle)

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        watch = watchdog.current()
        handle = record.info.get(watchdog.SOCKET)
        if watch is not None and handle is not None:
            watch.enlist(handle)
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if watch is not None and (watch.fired or watch.remaining() < bounds.attempt):
                # The call's deadline shut the ping down, or the ping's own timeout left too
                # little time to connect afresh (a silent server would hold the new connection's
                # handshake as long). The pool drops this connection (any error but a
                # disconnection does) and the call fails.
                raise OperationTimeoutError(
                    "the database did not answer a ping in time, and no time is left to connect afresh"
                ) from error
            if dialect.is_disconnect(error, dbapi_connection, None):
                # The pool drops this connection and checks out a fresh one.
                raise DisconnectionError("pooled connection was lost while idle") from error
            raise
