"""A TCP proxy in front of a real database server, for injecting network faults (issue 11).

The test starts it on 127.0.0.1 on a free port and points a store at it instead of the server:

- ``PASS``: every byte is forwarded both ways (the default, and what ``heal`` returns to);
- ``SILENT``: a server that accepts connections and never answers: a new connection is accepted
  and held without a byte in reply; on an established one what the client sends still reaches
  the server, and nothing comes back;
- ``PARTITION``: the network stops carrying packets: established connections stop forwarding in
  both directions, with no reset and no FIN; a new connection is accepted and goes nowhere;
- ``SLOW``: every chunk is forwarded after ``delay`` seconds;
- ``heal()``: back to ``PASS``.

Through a proxy in user space the client's kernel still sees its packets acknowledged (by the
proxy's), so no TCP timeout ends a wait: only the client's own bounds do, which is what the tests
measure. What is not forwarded is dropped, never delivered late; a connection that lost data
is reset when the proxy forwards again (its ends no longer agree on what was said), and one that
was merely idle through a partition carries on. Data a slow link is holding when its sender hangs
up is dropped too: nothing reaches the server after its client gave up, so what a failed call
left behind can be checked as soon as it returns.
"""

from __future__ import annotations

import enum
import select
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

#: Seconds a pump waits for data before it looks at the mode again (and at shutdown).
_TICK = 0.05
_CHUNK = 65536


class Mode(enum.Enum):
    PASS = "pass"
    SILENT = "silent"
    PARTITION = "partition"
    SLOW = "slow"

    @property
    def forwards(self) -> bool:
        """Whether both directions carry data."""
        return self in (Mode.PASS, Mode.SLOW)

    def carries(self, upstream: bool) -> bool:
        """Whether data from the client (``upstream``), or from the server, is forwarded."""
        return self.forwards or (upstream and self is Mode.SILENT)


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream`` under the current ``mode``.

    Use as a context manager (``with FaultProxy(("127.0.0.1", 5432)) as proxy``): the listener
    runs in a thread of its own and each connection in two more; leaving the block closes every
    socket and joins every thread.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._mode = Mode.PASS
        self.delay = 0.0
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_TICK)
        self.port: int = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        #: Connections accepted so far (a test can tell that a client really connected anew).
        self.accepted = 0
        #: Bytes read and dropped while the mode stopped traffic.
        self.dropped = 0

    # -- control ---------------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    def set_mode(self, mode: Mode, delay: float = 0.0) -> None:
        """Switch every connection, established and new, to ``mode`` (``delay``: for ``SLOW``)."""
        with self._changed:
            self._mode, self.delay = mode, delay
            self._changed.notify_all()

    def silent(self) -> None:
        self.set_mode(Mode.SILENT)

    def partition(self) -> None:
        self.set_mode(Mode.PARTITION)

    def slow(self, delay: float) -> None:
        self.set_mode(Mode.SLOW, delay)

    def heal(self) -> None:
        self.set_mode(Mode.PASS)

    def url_for(self, url: str) -> str:
        """``url`` (a server URL) pointed at this proxy instead."""
        from stabilize.persistence.sql.engine import normalize_url

        return normalize_url(url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._spawn(self._accept_loop, "proxy-accept")
        return self

    def close(self) -> None:
        """Stop accepting, close every connection (clients see them reset) and join the threads."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in [self._listener, *sockets]:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with suppress(OSError):
                sock.close()
        for thread in threads:
            thread.join(5)
        alive = [thread.name for thread in threads if thread.is_alive()]
        assert not alive, f"proxy threads still running after close: {alive}"

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the work --------------------------------------------------------------------------------

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            self.accepted += 1
            self._track(client)
            self._spawn(self._serve, f"proxy-conn-{self.accepted}", client)

    def _wait_until_forwarding(self) -> bool:
        """Block while the mode stops traffic; False when the proxy is closing."""
        with self._changed:
            while not self._mode.forwards and not self._stopping.is_set():
                self._changed.wait(_TICK * 4)
        return not self._stopping.is_set()

    def _serve(self, client: socket.socket) -> None:
        if not self._mode.forwards:
            # Accepted while the server is silent or cut off: held unanswered, never passed on
            # (what the client sends is lost), and reset once the proxy forwards again.
            self._wait_until_forwarding()
            _reset(client)
            return
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _reset(client)
            return
        server.settimeout(None)
        self._track(server)
        link = _Link(client, server)
        self._spawn(self._pump, "proxy-up", link, client, server, True)
        self._pump(link, server, client, False)

    def _pump(self, link: _Link, source: socket.socket, target: socket.socket, upstream: bool) -> None:
        """Copy ``source`` to ``target`` while the mode forwards. While it does not, what arrives
        is read and dropped (lost in the network) and the link is cut: it is reset when the
        proxy forwards again, as a peer would after losing data. An end of either side ends both."""
        try:
            while not self._stopping.is_set() and not link.closed:
                readable, _, _ = select.select([source], [], [], _TICK)
                forwards = self._mode.forwards
                if forwards and link.cut:
                    return
                if not readable:
                    continue
                data = source.recv(_CHUNK)
                if not data:
                    return
                if not self._mode.carries(upstream):
                    link.cut = True
                    self.dropped += len(data)
                    continue
                # A sender that hung up while its data was on the way loses the data with it, as
                # on a network that gives up on a peer's connection.
                if self._mode is Mode.SLOW and (self._stopping.wait(self.delay) or _at_end(source)):
                    return
                target.sendall(data)
        except OSError:
            return
        finally:
            link.close()


class _Link:
    """The two sockets of one proxied connection."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.sockets = (client, server)
        #: Data was dropped on it: what the two ends expect of each other no longer holds.
        self.cut = False
        self.closed = False

    def close(self) -> None:
        self.closed = True
        for sock in self.sockets:
            _reset(sock)


def _at_end(sock: socket.socket) -> bool:
    """Whether the peer of ``sock`` has closed its end (its FIN is the next thing to read)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a reset, not a FIN (no lingering: a peer that lost data)."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()


@contextmanager
def proxy_for(upstream: tuple[str, int]) -> Iterator[FaultProxy]:
    """A started ``FaultProxy`` in front of ``upstream``, closed after the block."""
    proxy = FaultProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.close()
