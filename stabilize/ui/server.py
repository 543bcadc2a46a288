"""Serving the dashboard: a listening socket first, then uvicorn on it.

The socket is bound and listening before the server starts, so a caller knows the port (also
when it asked for port 0) and a client that connects early waits in the backlog instead of being
refused.
"""

from __future__ import annotations

import socket

import uvicorn
from starlette.applications import Starlette

#: Host names a dashboard bound to a loopback address answers to (others: 400, against DNS rebinding).
LOOPBACK_NAMES = ["127.0.0.1", "localhost"]


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host``:``port`` (``port`` 0: a free one).

    Raises:
        OSError: the address cannot be bound (in use, not this machine's, no permission).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def allowed_hosts(host: str) -> list[str] | None:
    """The ``Host`` names to answer when bound to ``host``: the loopback names for a loopback
    address (a page of another site cannot reach the dashboard by rebinding its name to
    127.0.0.1), any for an address others reach by names this process cannot know."""
    return [*LOOPBACK_NAMES] if host in LOOPBACK_NAMES else None


def server(app: Starlette) -> uvicorn.Server:
    """A uvicorn server for ``app``, quiet but for errors (each request is not logged)."""
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
