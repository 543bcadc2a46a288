"""Every page over HTTP on a SQLite file and PostgreSQL: status codes, what each page lists, the
runs listing's filters and pages, errors, and that nothing but GET is answered."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from stabilize.models import WorkflowStatus
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.persistence.store.interface import WorkflowCriteria
from stabilize.queue.sql import SqlQueue
from stabilize.ui.app import create_app
from stabilize.ui.server import allowed_hosts
from tests.ui.builders import dead_letter, finished_run, mixed_run, stored

S = WorkflowStatus


def run_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-run-id="([^"]+)"', html)


def test_each_page_answers_with_the_security_headers(client: TestClient, store: SqlWorkflowStore) -> None:
    (run,) = stored(store, mixed_run())
    for path in ("/runs", f"/runs/{run.id}", f"/runs/{run.id}?stage=deploy", "/queue"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert "script-src 'self';" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert re.fullmatch(r"app;dur=\d+\.\d", response.headers["server-timing"])
    home = client.get("/", follow_redirects=False)
    assert (home.status_code, home.headers["location"]) == (302, "/runs")


def test_static_files_and_status_colours(client: TestClient) -> None:
    for name in ("dag.js", "run.js", "app.css", "vendor/dagre.min.js", "favicon.svg"):
        assert client.get(f"/static/{name}").status_code == 200, name
    css = client.get("/assets/status.css")
    assert css.headers["content-type"].startswith("text/css")
    assert ".status-RUNNING{background:#1e88e5;color:#ffffff}" in css.text
    assert client.get("/static/../app.py").status_code == 404


def test_run_page_shows_stages_tasks_documents_and_the_dag_data(
    client: TestClient, store: SqlWorkflowStore
) -> None:
    (run,) = stored(store, mixed_run())
    html = client.get(f"/runs/{run.id}").text
    for stage in run.stages:
        assert f'data-stage-id="{stage.id}"' in html
        for task in stage.tasks:
            assert f"<code>{task.implementing_class}</code>" in html
    assert html.count('class="stage ') == len(run.stages)
    assert "app-1.0.tar" in html  # build's outputs, as JSON
    assert '<span class="live"' in html  # the run is RUNNING: the page refreshes itself
    assert 'data-live="true"' in html
    assert '<script type="application/json" id="run-graph">' in html
    assert "Click a stage in the picture" in html


def test_a_chosen_stage_shows_its_merged_ancestor_outputs(
    client: TestClient, store: SqlWorkflowStore
) -> None:
    (run,) = stored(store, mixed_run())
    html = client.get(f"/runs/{run.id}", params={"stage": "deploy"}).text
    assert '<strong id="chosen-stage">Deploy &#39;prod&#39;</strong>' in html
    merged = store.get_merged_ancestor_outputs(run.id, "deploy")
    assert merged["tags"] == ["a", "b"] and merged["lint"] == "failed"
    assert "&#34;tags&#34;: [\n    &#34;a&#34;,\n    &#34;b&#34;\n  ]" in html
    missing = client.get(f"/runs/{run.id}", params={"stage": "nope"})
    assert missing.status_code == 404
    assert "has no stage with ref id &#39;nope&#39;" in missing.text


def test_a_finished_run_is_not_refreshed(client: TestClient, store: SqlWorkflowStore) -> None:
    (run,) = stored(store, finished_run("shop", 1_700_000_000_000))
    html = client.get(f"/runs/{run.id}").text
    assert 'data-live="false"' in html and '<span class="live"' not in html


def test_runs_lists_every_application_newest_first_and_filters(
    client: TestClient, store: SqlWorkflowStore
) -> None:
    base = 1_700_000_000_000
    old, mid, new = stored(
        store,
        finished_run("shop", base),
        finished_run("mail", base + 1000, S.TERMINAL),
        finished_run("shop", base + 2000),
    )
    pending = mixed_run("mail")
    pending.status, pending.start_time = S.NOT_STARTED, None
    stored(store, pending)
    assert run_ids(client.get("/runs").text) == [pending.id, new.id, mid.id, old.id]
    assert run_ids(client.get("/runs?app=shop").text) == [new.id, old.id]
    assert run_ids(client.get("/runs?status=TERMINAL").text) == [mid.id]
    assert run_ids(client.get("/runs?status=succeeded&status=TERMINAL").text) == [new.id, mid.id, old.id]
    # The window is inclusive, and a run that has not started is inside every window; times are
    # epoch ms or ISO 8601 (UTC unless the text names an offset), as the form's inputs send them.
    window = [pending.id, new.id, mid.id]
    assert run_ids(client.get("/runs", params={"since": base + 1000, "until": base + 2000}).text) == window
    iso = {"since": "2023-11-14T22:13:21", "until": "2023-11-14T23:13:22+01:00"}
    assert run_ids(client.get("/runs", params=iso).text) == window
    nobody = client.get("/runs?app=nobody").text
    assert run_ids(nobody) == [] and "No runs match." in nobody


def test_runs_pages_cover_every_run_once_in_the_stores_order(
    client: TestClient, store: SqlWorkflowStore
) -> None:
    base = 1_700_000_000_000
    runs = [finished_run("shop", base + (i // 3) * 1000) for i in range(13)]  # three runs per instant
    for _ in range(5):  # more runs that have not started than a page holds
        waiting = finished_run("shop", base)
        waiting.status, waiting.start_time, waiting.end_time = S.NOT_STARTED, None, None
        runs.append(waiting)
    stored(store, *runs, finished_run("other", base + 500))
    expected = [w.id for w in store.retrieve_by_application("shop", WorkflowCriteria(page_size=None))]
    seen: list[str] = []
    query = "app=shop&limit=4"
    for _ in range(len(runs)):  # bounded: a page never comes back empty before the last
        html = client.get(f"/runs?{query}").text
        page = run_ids(html)
        assert 0 < len(page) <= 4, query
        seen += page
        older = re.search(r'id="older" href="/runs\?([^"]+)"', html)
        if older is None:
            break
        query = older.group(1).replace("&amp;", "&")
        assert "cursor=" in query and "app=shop" in query and "limit=4" in query
    assert seen == expected


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("status=DONE", "status: unknown status &#39;DONE&#39;"),
        ("limit=0", "limit: &#39;0&#39; is not a number from 1 to 500"),
        ("limit=x", "limit: &#39;x&#39; is not a number"),
        ("since=yesterday", "since: &#39;yesterday&#39; is neither epoch milliseconds nor an ISO 8601 time"),
        ("cursor=nonsense", "cursor: &#39;nonsense&#39; is not a cursor of this listing"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(client: TestClient, query: str, problem: str) -> None:
    response = client.get(f"/runs?{query}")
    assert response.status_code == 400
    assert problem in response.text


def test_unknown_things_are_404(client: TestClient) -> None:
    for path in ("/runs/01NOSUCHRUN0000000000000000", "/nowhere", "/static/nothing.js"):
        response = client.get(path)
        assert response.status_code == 404, path
    assert (
        "workflow &#39;01NOSUCHRUN0000000000000000&#39; not found"
        in client.get("/runs/01NOSUCHRUN0000000000000000").text
    )


def test_queue_page_shows_counts_types_and_dead_letters(
    client: TestClient, store: SqlWorkflowStore, queue: SqlQueue
) -> None:
    (run,) = stored(store, mixed_run())
    letter = dead_letter(queue, run, "boom: <b>bad</b>\nTraceback line 2")
    html = client.get("/queue").text
    assert '<dd data-field="dead_letters">1</dd>' in html
    assert f'id="dead-letter-{letter}"' in html
    assert f'<a class="dead-letter-run" href="/runs/{run.id}">{run.id}</a>' in html
    assert '<summary class="last-error">boom: &lt;b&gt;bad&lt;/b&gt;</summary>' in html
    assert "Traceback line 2" in html
    assert "The queue is empty." in html


@pytest.mark.parametrize("dialect", ["postgresql"])  # a SQLite URL has no password to hide
def test_the_database_password_is_never_shown(store: SqlWorkflowStore) -> None:
    # The test server trusts local connections, so a URL with a password still connects.
    url = store.engine.url.set(password="s3cr3t-Pa55")
    with_password = SqlWorkflowStore(url.render_as_string(hide_password=False))
    with TestClient(create_app(with_password)) as client:
        for path in ("/runs", "/queue", "/health", "/runs/01NOSUCHRUN0000000000000000"):
            text = client.get(path).text
            assert "s3cr3t-Pa55" not in text, path
        assert ":***@" in client.get("/runs").text


def test_an_unreachable_database_is_a_503_with_the_url_masked() -> None:
    store = SqlWorkflowStore("postgresql://watcher:hunter2-secret@127.0.0.1:9/nowhere")
    with TestClient(create_app(store), raise_server_exceptions=False) as client:
        for path in ("/runs", "/api/runs", "/queue"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert "hunter2-secret" not in response.text
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["state"] == "unreachable"
        assert health.json()["url"] == "postgresql+psycopg://watcher:***@127.0.0.1:9/nowhere"
        assert "hunter2-secret" not in health.text


ROUTES = [
    "/",
    "/runs",
    "/runs/{run}",
    "/queue",
    "/health",
    "/api/runs",
    "/api/runs/{run}",
    "/api/runs/{run}/graph",
    "/api/runs/{run}/stages/{stage}",
    "/api/queue",
    "/assets/status.css",
    "/static/dag.js",
]


def test_read_only_every_route_refuses_every_other_method(
    client: TestClient, store: SqlWorkflowStore, queue: SqlQueue
) -> None:
    (run,) = stored(store, mixed_run())
    dead_letter(queue, run, "failed")
    before = (store.retrieve(run.id), queue.stats(), queue.list_dlq(10))
    for route in ROUTES:
        path = route.format(run=run.id, stage=run.stages[0].id)
        assert client.head(path).status_code in (200, 302), path
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            response = client.request(method, path)
            assert response.status_code == 405, (method, path)
    assert (store.retrieve(run.id), queue.stats(), queue.list_dlq(10)) == before


def test_only_loopback_host_names_are_answered_when_bound_to_loopback(store: SqlWorkflowStore) -> None:
    app = create_app(store, allowed_hosts=allowed_hosts("127.0.0.1"))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health", headers={"host": "localhost:8000"}).status_code == 200
        assert client.get("/health", headers={"host": "attacker.example"}).status_code == 400
    assert allowed_hosts("0.0.0.0") is None
