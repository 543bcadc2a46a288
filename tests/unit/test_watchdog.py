"""The call watchdog (``dialects.watchdog``) on real sockets: a call still running at its deadline
has its connections' sockets shut down; a released connection, a call that ended, and a file
descriptor number reused by another socket are never touched."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from stabilize.persistence.sql.dialects.watchdog import SocketHandle, watching

#: Seconds a test waits for the watchdog thread before failing.
PATIENCE = 10.0


@pytest.fixture
def connected() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected TCP pair on 127.0.0.1: (ours, the peer)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    try:
        yield ours, peer
    finally:
        ours.close()
        peer.close()


def is_shut(sock: socket.socket) -> bool:
    """Whether ``sock``'s reads now end at once (it was shut down), without waiting for data."""
    sock.settimeout(0)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False


def test_a_call_past_its_deadline_has_its_socket_shut_down(
    connected: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = connected
    handle = SocketHandle.of(ours.fileno())
    assert handle is not None
    with watching(time.monotonic() + 0.2) as watch:
        watch.enlist(handle)
        # A read blocked on a silent peer, as a driver's would be: the shutdown ends it.
        ours.settimeout(PATIENCE)
        started = time.monotonic()
        assert ours.recv(1) == b""
        assert time.monotonic() - started < PATIENCE
        assert watch.fired
    peer.settimeout(PATIENCE)
    assert peer.recv(1) == b""  # the peer sees the connection end too


def test_a_released_or_ended_call_leaves_the_socket_alone(
    connected: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = connected
    handle = SocketHandle.of(ours.fileno())
    assert handle is not None
    with watching(time.monotonic() + PATIENCE) as released:
        released.enlist(handle)
        released.release(handle)  # back in the pool: another call's from now on
        released.expire()  # what the watchdog thread does at the deadline
        assert released.fired
    with watching(time.monotonic() + PATIENCE) as ended:
        ended.enlist(handle)
    ended.expire()  # a deadline that comes after the call ended
    assert not ended.fired
    assert not is_shut(ours)


def test_a_reused_descriptor_number_is_not_shut_down(connected: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = connected
    handle = SocketHandle.of(ours.fileno())
    assert handle is not None
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        socket.create_connection(server.getsockname()) as other,
    ):
        # The driver closed its connection and the process reused the number for another socket.
        os.dup2(other.fileno(), ours.fileno())
        assert handle.shut_down() is False
        assert not is_shut(other)


def until(condition: Callable[[], bool]) -> bool:
    """Poll ``condition`` until it holds or ``PATIENCE`` runs out; whether it held."""
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_held_transaction_is_watched_only_while_a_statement_runs(
    connected: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = connected
    handle = SocketHandle.of(ours.fileno())
    assert handle is not None
    with watching(time.monotonic() + 0.1, per_statement=True) as held:
        held.enlist(handle)
        held.disarm()  # between statements: the caller's own time
        with watching(time.monotonic() + 0.3) as later:  # a deadline after the disarmed one
            assert until(lambda: later.fired)
        assert not held.fired and not is_shut(ours)

        held.arm(0.1)  # a statement begins, and hangs
        assert until(lambda: held.fired)
        assert is_shut(ours)
