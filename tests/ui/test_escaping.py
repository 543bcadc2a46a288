"""User text is data on every page: names, contexts, errors holding ``<script>``, ``[/]`` and both
quotes come out escaped in HTML (Jinja2's autoescape), intact in JSON, and cannot end the JSON
island a run page carries for its picture."""

from __future__ import annotations

import html
import json
import re

from starlette.testclient import TestClient

from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.sql import SqlQueue
from stabilize.ui.documents import run_graph
from tests.ui.builders import ISLAND_BREAKER, NASTY, dead_letter, mixed_run, stored

#: What Jinja2 makes of NASTY: every <, >, &, and both quotes as entities.
ESCAPED = (
    "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Fix [/] "
    "&#39;it&#39; &amp; &#34;ship&#34; &lt;/script&gt;"
)
ISLAND = re.compile(r'<script type="application/json" id="run-graph">(.*?)</script>', re.S)


def assert_no_markup_from_data(page: str) -> None:
    assert NASTY not in page
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "<b>" not in page


def test_the_escaped_form_is_what_the_browser_shows() -> None:
    assert html.unescape(ESCAPED) == NASTY


def test_names_are_escaped_on_the_runs_page(client: TestClient, store: SqlWorkflowStore) -> None:
    stored(store, mixed_run(application='app <i>"x"</i>'))
    page = client.get("/runs").text
    assert_no_markup_from_data(page)
    assert '<a class="run-link" href="/runs/' in page and f">{ESCAPED}</a>" in page
    assert "app &lt;i&gt;&#34;x&#34;&lt;/i&gt;" in page
    filtered = client.get("/runs", params={"app": 'app <i>"x"</i>'}).text
    assert 'value="app &lt;i&gt;&#34;x&#34;&lt;/i&gt;"' in filtered  # the search box keeps it as text


def test_names_contexts_and_the_json_island_on_the_run_page(
    client: TestClient, store: SqlWorkflowStore
) -> None:
    (run,) = stored(store, mixed_run())
    page = client.get(f"/runs/{run.id}", params={"stage": "build"}).text
    assert_no_markup_from_data(page)
    assert f'<h1 id="run-name">{ESCAPED}</h1>' in page
    assert "Test [unit]" in page and "Check &lt;inputs&gt;" in page
    assert "&#34;note&#34;: &#34;&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&#34;" in page  # context
    # Only the page's own scripts: three files and one JSON island, which the data cannot close.
    assert page.count("<script") == 4
    (island,) = ISLAND.findall(page)
    assert "</" not in island and "\\u003c/script\\u003e" in island
    assert json.loads(island) == json.loads(json.dumps(run_graph(store.retrieve(run.id))))


def test_dead_letter_errors_are_escaped(client: TestClient, store: SqlWorkflowStore, queue: SqlQueue) -> None:
    (run,) = stored(store, mixed_run())
    dead_letter(queue, run, NASTY)
    page = client.get("/queue").text
    assert_no_markup_from_data(page)
    assert f'<summary class="last-error">{ESCAPED}</summary>' in page
    assert f'<pre class="error-text">{ESCAPED}</pre>' in page


def test_errors_echo_user_input_escaped(client: TestClient) -> None:
    page = client.get("/runs", params={"status": "<script>alert(1)</script>"}).text
    assert "<script>alert(1)" not in page
    assert "unknown status &#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39;" in page
    missing = client.get("/runs/%3Cscript%3Ealert(1)%3C%2Fscript%3E").text
    assert "<script>alert(1)" not in missing


def test_json_keeps_the_text_as_it_is(client: TestClient, store: SqlWorkflowStore, queue: SqlQueue) -> None:
    (run,) = stored(store, mixed_run())
    dead_letter(queue, run, NASTY)
    assert client.get("/api/runs").json()["runs"][0]["name"] == NASTY
    assert client.get(f"/api/runs/{run.id}").json()["stages"][0]["context"]["note"] == ISLAND_BREAKER
    assert client.get("/api/queue").json()["dead_letters"][0]["last_error"] == NASTY
