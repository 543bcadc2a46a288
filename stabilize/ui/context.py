"""The state every handler reads: the store, its queue, and the page renderer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse

from stabilize.persistence.sql.engine import mask
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.sql import SqlQueue


@dataclass
class Dashboard:
    """What every handler reads from: the store, its queue, and how pages are drawn."""

    store: SqlWorkflowStore
    queue: SqlQueue
    refresh_ms: int
    env: Environment

    @property
    def database(self) -> str:
        """The database URL, its password hidden."""
        return mask(self.store.engine.url)

    def page(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        """A rendered template; every page also gets the (masked) database URL."""
        html = self.env.get_template(template).render(database=self.database, **context)
        return HTMLResponse(html, status_code=status_code)


def dashboard(request: Request) -> Dashboard:
    """The dashboard of the application serving ``request``."""
    found: Dashboard = request.app.state.dashboard
    return found
