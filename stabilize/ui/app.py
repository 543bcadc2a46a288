"""The dashboard's ASGI application: read-only routes over one store and its queue.

Every route answers GET (and HEAD) only; any other method is 405, and no handler calls anything
but the store's and the queue's reading methods. Pages are Jinja2 templates with autoescaping;
the scripts fill the DAG picture with ``textContent`` and DOM calls, never ``innerHTML``, and a
Content-Security-Policy allows only this server's own scripts and styles. Each response carries
a ``Server-Timing`` header (``app;dur=`` milliseconds from request to response headers).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stabilize.cli.errors import describe
from stabilize.persistence.errors import DatabaseUnavailableError, SchemaError, StabilizeError, TransientError
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.persistence.store.interface import WorkflowNotFoundError
from stabilize.queue.sql import SqlQueue
from stabilize.ui import api, pages
from stabilize.ui.context import Dashboard, dashboard
from stabilize.ui.listing import BadFilter
from stabilize.ui.templating import environment

#: Only this server's own files run or style a page; nothing may frame it.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class Headers:
    """ASGI middleware: the security headers and ``Server-Timing`` on every response."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap the ASGI ``app``, whose HTTP responses get the headers."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to the response's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - started) * 1000
                headers = list(message.get("headers", []))
                headers += [*SECURITY_HEADERS, (b"server-timing", f"app;dur={took:.1f}".encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _status_of(error: Exception) -> int:
    if isinstance(error, HTTPException):
        return error.status_code
    if isinstance(error, BadFilter):
        return 400
    if isinstance(error, WorkflowNotFoundError):
        return 404
    if isinstance(error, DatabaseUnavailableError | TransientError | SchemaError):
        return 503
    return 500


async def _error(request: Request, error: Exception) -> Response:
    """Every failure as one line: JSON for ``/api`` and ``/health``, a page otherwise."""
    status = _status_of(error)
    if isinstance(error, HTTPException):
        message = str(error.detail)
    else:
        message = str(error) if isinstance(error, BadFilter) else describe(error)
    if request.url.path.startswith(("/api/", "/health")):
        return JSONResponse({"error": message, "status": status}, status_code=status)
    return dashboard(request).page("error.html", status_code=status, status=status, message=message)


def create_app(
    store: SqlWorkflowStore,
    queue: SqlQueue | None = None,
    *,
    refresh_seconds: float = 2.0,
    allowed_hosts: list[str] | None = None,
) -> Starlette:
    """The dashboard of ``store`` (and ``queue``, by default the queue of the store's engine).

    Args:
        store: the workflows to show.
        queue: the queue to show; None builds one on the store's engine.
        refresh_seconds: how often the page of an unfinished run asks for its stages again.
        allowed_hosts: the ``Host`` names to answer (the rest get 400, so a page of another site
            cannot read this one through DNS rebinding); None answers any.
    """
    middleware = [Middleware(Headers)]
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    routes = [
        Route("/", pages.home, methods=["GET"]),
        Route("/runs", pages.runs, methods=["GET"], name="runs"),
        Route("/runs/{run_id}", pages.run, methods=["GET"], name="run"),
        Route("/queue", pages.queue, methods=["GET"], name="queue"),
        Route("/health", api.health, methods=["GET"], name="health"),
        Route("/api/runs", api.runs, methods=["GET"]),
        Route("/api/runs/{run_id}", api.run, methods=["GET"]),
        Route("/api/runs/{run_id}/graph", api.graph, methods=["GET"]),
        Route("/api/runs/{run_id}/stages/{stage_id}", api.stage, methods=["GET"]),
        Route("/api/queue", api.queue, methods=["GET"]),
        Route("/assets/status.css", pages.status_stylesheet, methods=["GET"]),
        Mount("/static", StaticFiles(packages=[("stabilize.ui", "static")]), name="static"),
    ]
    handlers: dict[Any, Any] = {exc: _error for exc in (HTTPException, BadFilter, StabilizeError, Exception)}
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)
    app.state.dashboard = Dashboard(
        store=store,
        queue=queue if queue is not None else SqlQueue(store.engine),
        refresh_ms=max(250, int(refresh_seconds * 1000)),
        env=environment(),
    )
    return app
