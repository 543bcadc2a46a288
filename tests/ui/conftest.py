"""The dashboard against real databases (a SQLite file and PostgreSQL), over HTTP in-process and
in Debian's Chromium driven by Playwright (``make browser`` installs it; nothing is downloaded).

Browser tests serve the app with uvicorn on a socket that is listening before the server thread
starts, so the first request waits in the backlog instead of racing the start-up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from starlette.testclient import TestClient

from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.sql import SqlQueue
from stabilize.ui.app import create_app
from stabilize.ui.server import listen, server

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Where browser tests leave screenshots and measurements (``build/`` is ignored by git).
ARTIFACTS = Path(os.environ.get("STABILIZE_UI_ARTIFACTS", ROOT / "build" / "ui-artifacts"))

UI_DIALECTS = ["sqlite_file", "postgresql"]


@pytest.fixture(params=UI_DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    """The dashboard's HTTP tests run on a SQLite file and on PostgreSQL."""
    return str(request.param)


@pytest.fixture
def queue(store: SqlWorkflowStore) -> SqlQueue:
    return SqlQueue(store.engine)


@pytest.fixture
def client(store: SqlWorkflowStore, queue: SqlQueue) -> Iterator[TestClient]:
    with TestClient(create_app(store, queue), raise_server_exceptions=False) as made:
        yield made


@dataclass
class Served:
    """A dashboard served over TCP for a browser."""

    base: str
    store: SqlWorkflowStore
    queue: SqlQueue


@pytest.fixture
def served(store: SqlWorkflowStore, queue: SqlQueue) -> Iterator[Served]:
    """The dashboard of the test's database on a free port, refreshing live pages quickly."""
    sock = listen("127.0.0.1", 0)
    uvicorn_server = server(create_app(store, queue, refresh_seconds=0.25))
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{sock.getsockname()[1]}", store, queue)
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless; Playwright downloads no browser of its own."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (Debian's chromium package)", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page that fails the test on any script error or alert."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    made = context.new_page()
    errors: list[str] = []
    made.on("pageerror", lambda error: errors.append(str(error)))
    made.on("dialog", lambda dialog: errors.append(f"dialog opened: {dialog.message}"))
    made.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield made
    context.close()
    assert errors == [], errors


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
