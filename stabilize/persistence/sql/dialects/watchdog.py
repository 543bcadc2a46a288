"""Ends a call's network waits when its deadline passes, whatever the driver is blocked on.

psycopg has no read timeout: a query sent over a connection whose network stopped carrying
packets waits for its answer until TCP gives up, and TCP never does while something on the path
still acknowledges the packets (a proxy, a load balancer, a NAT in front of a frozen server).
PyMySQL's read timeout is per read, so a call of several reads can outlast the call's deadline.

So each public call runs inside ``watching(deadline)`` (``units.Database.run``). The connections
it checks out from the pool are enlisted with the call's ``Watch`` by the engine's checkout hook
(``hooks``), before any ping. If the call is still running at its deadline, one thread of the
process shuts down the sockets of the call's connections: the blocked read ends at once with a
lost-connection error, SQLAlchemy drops the connection, and the call raises
``OperationTimeoutError``. A call that ends in time only pays for putting its deadline in a heap.

Only the connect hook touches the DBAPI connection, to note its socket (``SocketHandle``); the
watchdog shuts a socket down only if it is still the very socket that was noted (same local and
peer address), so a file descriptor number the driver closed and the process reused is left alone.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: Key of a connection's ``SocketHandle`` in its pool record's ``info``.
SOCKET = "stabilize.socket"


@dataclass(frozen=True)
class SocketHandle:
    """Which socket a DBAPI connection talks through, noted when it connected."""

    fileno: int
    local: object
    peer: object

    @classmethod
    def of(cls, fileno: int) -> SocketHandle | None:
        """The handle of the connected socket ``fileno``; None if it is not one."""
        try:
            with socket.socket(fileno=os.dup(fileno)) as sock:
                return cls(fileno, sock.getsockname(), sock.getpeername())
        except OSError:
            return None

    def shut_down(self) -> bool:
        """Shut the socket down in both directions if it is still this one; whether it was."""
        try:
            with socket.socket(fileno=os.dup(self.fileno)) as sock:
                # The duplicate holds the socket open: it cannot change between check and shutdown.
                if (sock.getsockname(), sock.getpeername()) != (self.local, self.peer):
                    return False
                sock.shutdown(socket.SHUT_RDWR)
                return True
        except OSError:  # closed meanwhile, or no longer a connected socket
            return False


class Watch:
    """One call's deadline and the sockets of the connections it uses.

    A call's watch is armed once, for the whole call. A transaction the caller holds open
    (``per_statement``) is armed for each statement and disarmed after it: the caller's own code
    between statements is not the database's to bound.
    """

    __slots__ = ("_lock", "_sockets", "done", "fired", "generation", "per_statement", "when")

    def __init__(self, when: float, per_statement: bool = False) -> None:
        """Armed for ``when`` (``time.monotonic()`` seconds); see the class for ``per_statement``."""
        self.when: float | None = when
        self.per_statement = per_statement
        #: Which arming the watch is on: a heap entry of an earlier one is stale.
        self.generation = 0
        self.fired = False
        self.done = False
        self._sockets: list[SocketHandle] = []
        self._lock = threading.Lock()

    def arm(self, seconds: float) -> None:
        """Expire ``seconds`` from now (unless disarmed or armed again before)."""
        with self._lock:
            self.generation += 1
            self.when = time.monotonic() + seconds
        _watchdog.add(self)

    def remaining(self) -> float:
        """Seconds left until the deadline (infinite while disarmed)."""
        when = self.when
        return float("inf") if when is None else when - time.monotonic()

    def disarm(self) -> None:
        """No deadline until armed again."""
        with self._lock:
            self.generation += 1
            self.when = None

    def enlist(self, handle: SocketHandle) -> None:
        """Watch ``handle`` too (a connection checked out); shut it down at once if the deadline
        has already passed."""
        with self._lock:
            if self.done:
                return
            if self.fired:
                handle.shut_down()
                return
            self._sockets.append(handle)

    def release(self, handle: SocketHandle) -> None:
        """Stop watching ``handle`` (its connection went back to the pool): from now on it may
        serve another call, which this deadline must never touch."""
        with self._lock, suppress(ValueError):
            self._sockets.remove(handle)

    def expire(self, generation: int | None = None) -> None:
        """The deadline passed: shut down the sockets of the connections the call still holds.
        Under the lock: a connection released meanwhile is either shut before its release
        returns or not touched at all. ``generation``: the arming that expired (None: now)."""
        with self._lock:
            if self.done or (generation is not None and generation != self.generation):
                return
            self.fired = True
            shut = sum(handle.shut_down() for handle in self._sockets)
            self._sockets = []
        if shut:
            logger.warning("a database call outlived its deadline: %d connection(s) shut down", shut)

    def end(self) -> None:
        """The call is over: never touch its sockets again."""
        with self._lock:
            self.done = True
            self._sockets = []


class _Watchdog:
    """The process's one thread that expires watches at their deadlines."""

    def __init__(self) -> None:
        self._order = itertools.count()
        self.reset()

    def reset(self) -> None:
        """Start afresh (a forked child: its parent's thread and lock state are not its own)."""
        self._heap: list[tuple[float, int, int, Watch]] = []
        self._wake = threading.Condition(threading.Lock())
        self._pid = -1

    def add(self, watch: Watch) -> None:
        """Expire ``watch`` at its ``when``, as armed now."""
        when, generation = watch.when, watch.generation
        if when is None:
            return
        with self._wake:
            if self._pid != os.getpid():  # first use, or a forked child: no thread runs here yet
                self._pid = os.getpid()
                self._heap = []
                threading.Thread(target=self._run, name="stabilize-watchdog", daemon=True).start()
            # Calls mostly end long before their deadlines: drop the ended ones at the head, so
            # the heap holds little more than the calls still running.
            heap = self._heap
            while heap and _stale(heap[0]):
                heapq.heappop(heap)
            earliest = not heap or when < heap[0][0]
            heapq.heappush(heap, (when, next(self._order), generation, watch))
            if earliest:
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                due: list[tuple[int, Watch]] = []
                now = time.monotonic()
                while self._heap and (_stale(self._heap[0]) or self._heap[0][0] <= now):
                    entry = heapq.heappop(self._heap)
                    if not _stale(entry):
                        due.append((entry[2], entry[3]))
                if not due:
                    self._wake.wait(self._heap[0][0] - now if self._heap else None)
                    continue
            for generation, watch in due:
                with suppress(Exception):  # the watchdog must outlive any one failure
                    watch.expire(generation)


def _stale(entry: tuple[float, int, int, Watch]) -> bool:
    """Whether a heap entry no longer stands for its watch's deadline."""
    watch = entry[3]
    return watch.done or entry[2] != watch.generation


_watchdog = _Watchdog()
os.register_at_fork(after_in_child=_watchdog.reset)
_current = threading.local()


@contextmanager
def watching(deadline: float, *, per_statement: bool = False) -> Iterator[Watch]:
    """Watch the connections this thread checks out until the block ends, and shut them down if
    it is still running at ``deadline`` (``time.monotonic()`` seconds). Nested blocks each watch
    their own connections. ``per_statement``: see ``Watch``; armed until ``disarm``."""
    watch = Watch(deadline, per_statement)
    outer: Watch | None = getattr(_current, "watch", None)
    _current.watch = watch
    _watchdog.add(watch)
    try:
        yield watch
    finally:
        watch.end()
        _current.watch = outer


def current() -> Watch | None:
    """The innermost watch of this thread's running call, if any."""
    watch: Watch | None = getattr(_current, "watch", None)
    return watch
