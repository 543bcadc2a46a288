"""``stabilize ui`` as a user runs it, on a SQLite file and PostgreSQL: it names the database
(password hidden) and its address, serves the dashboard there, answers only loopback names, fails
clearly, and stops on Ctrl-C. Then the acceptance: ``stabilize demo``, then ``stabilize ui``
shows the demo's run and its DAG in Chromium."""

from __future__ import annotations

import socket
from pathlib import Path

from playwright.sync_api import Page, expect
from sqlalchemy.engine import make_url

from stabilize.persistence.sql.engine import mask
from stabilize.persistence.sql.store import SqlWorkflowStore
from tests.cli.helpers import run
from tests.ui.builders import mixed_run, stored
from tests.ui.helpers import get, stabilize_ui

ESCAPED_TITLE = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Fix [/]"


def with_password(url: str) -> str:
    """The URL with a password (the PostgreSQL test server trusts local connections)."""
    made = make_url(url)
    return made.set(password="pa55-w0rd").render_as_string(hide_password=False) if made.host else url


def test_ui_serves_the_database_it_names_with_the_password_hidden(url: str, store: SqlWorkflowStore) -> None:
    (workflow,) = stored(store, mixed_run())
    target = with_password(url)
    with stabilize_ui("--url", target, "ui", "--port", "0") as ui:
        assert "pa55-w0rd" not in ui.banner
        assert f"dashboard of {mask(target)} at http://127.0.0.1:" in ui.banner
        status, body = get(ui.base + "/runs")
        assert status == 200 and ESCAPED_TITLE in body and "pa55-w0rd" not in body
        assert get(f"{ui.base}/runs/{workflow.id}")[0] == 200
        status, health = get(ui.base + "/health")
        assert status == 200 and '"state":"healthy"' in health and "pa55-w0rd" not in health
        assert get(ui.base + "/health", host="localhost")[0] == 200
        assert get(ui.base + "/health", host="rebound.example")[0] == 400  # DNS rebinding
        code, rest = ui.stop()
    assert code == 130 and "interrupted" in rest


def test_the_url_may_follow_the_command(url: str, store: SqlWorkflowStore) -> None:
    stored(store, mixed_run())
    with stabilize_ui("--url", "sqlite:///nowhere-at-all.db", "ui", "--url", url, "--port", "0") as ui:
        assert get(ui.base + "/api/runs")[0] == 200
        ui.stop()


def test_a_busy_port_is_one_clear_error(url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run(url, "ui", "--port", str(port))
    assert result.code == 1
    assert (
        result.err.strip()
        == f"error: --host/--port: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_no_database_or_no_schema_fails_before_listening(tmp_path: Path) -> None:
    missing = run(f"sqlite:///{tmp_path / 'missing.db'}", "ui", "--port", "0")
    assert missing.code == 6 and "does not exist" in missing.err
    empty = tmp_path / "empty.db"
    empty.touch()  # an empty file is an empty SQLite database
    behind = run(f"sqlite:///{empty}", "ui", "--port", "0")
    assert behind.code == 3 and "run `stabilize db upgrade`" in behind.err


def test_help_names_the_options() -> None:
    result = run(None, "ui", "-h")
    assert result.code == 0
    for option in ("--url", "--host", "--port", "--refresh", "127.0.0.1", "read-only"):
        assert option in result.out


def test_demo_then_ui_shows_the_demo_run_and_its_dag(
    url: str, store: SqlWorkflowStore, page: Page, artifacts: Path, dialect: str
) -> None:
    demo = run(url, "demo", "--workers", "2", "--stages", "6")
    assert demo.code == 0, demo.err
    (workflow,) = store.get_all_pending_workflows()
    with stabilize_ui("--url", url, "ui", "--port", "0") as ui:
        page.goto(ui.base + "/")
        page.locator(f'tr[data-run-id="{workflow.id}"] a.run-link').click()
        expect(page.locator("#run-name")).to_have_text("fan-out / fan-in")
        expect(page.locator("#dag")).to_have_attribute("data-drawn", "true")
        expect(page.locator("#dag .dag-node")).to_have_count(7)  # 6 stages and the synthetic one
        expect(page.locator('#dag .dag-node[data-status="SUCCEEDED"]')).to_have_count(7)
        page.screenshot(path=str(artifacts / f"demo-run-{dialect}.png"), full_page=True)
        ui.stop()
