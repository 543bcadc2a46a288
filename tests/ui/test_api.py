"""The JSON endpoints on a SQLite file and PostgreSQL: the command line's documents where it has
one, exactly; the DAG's nodes and edges; a stage with its ancestors' merged outputs; the queue."""

from __future__ import annotations

from dataclasses import asdict

from starlette.testclient import TestClient

from stabilize.cli import documents
from stabilize.cli.render import COLOURS
from stabilize.models import WorkflowStatus
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.messages import CompleteStage, StartWorkflow
from stabilize.queue.sql import SqlQueue
from tests.ui.builders import NASTY, dead_letter, finished_run, mixed_run, stored

S = WorkflowStatus

SUMMARY_KEYS = [
    "id",
    "application",
    "name",
    "status",
    "pipeline_config_id",
    "start_time",
    "end_time",
    "is_canceled",
    "stage_count",
    "stages_done",
]
NODE_KEYS = [
    "id",
    "ref_id",
    "name",
    "status",
    "colour",
    "ink",
    "parent_stage_id",
    "synthetic_stage_owner",
    "tasks",
    "started",
    "duration",
]


def test_runs_is_runs_list_json_with_a_cursor(client: TestClient, store: SqlWorkflowStore) -> None:
    base = 1_700_000_000_000
    runs = stored(store, *(finished_run("shop", base + i) for i in range(3)), mixed_run("mail"))
    body = client.get("/api/runs", params={"limit": 2}).json()
    assert list(body) == ["runs", "next", "filters"]
    newest = sorted(runs, key=lambda w: -(w.start_time or 0))
    assert body["runs"] == [documents.workflow_summary(store.retrieve(w.id)) for w in newest[:2]]
    assert list(body["runs"][0]) == SUMMARY_KEYS
    assert body["filters"] == {
        "application": None,
        "statuses": [],
        "since": None,
        "until": None,
        "limit": 2,
        "cursor": None,
    }
    rest = client.get("/api/runs", params={"limit": 2, "cursor": body["next"]}).json()
    assert [r["id"] for r in rest["runs"]] == [w.id for w in newest[2:]]
    assert rest["next"] is None
    only = client.get("/api/runs", params={"app": "shop", "status": "SUCCEEDED,TERMINAL"}).json()
    assert only["filters"]["statuses"] == ["SUCCEEDED", "TERMINAL"]
    assert {r["application"] for r in only["runs"]} == {"shop"} and len(only["runs"]) == 3


def test_a_run_is_runs_show_json_plus_its_graph(client: TestClient, store: SqlWorkflowStore) -> None:
    (run,) = stored(store, mixed_run())
    body = client.get(f"/api/runs/{run.id}").json()
    graph = body.pop("graph")
    assert body == documents.workflow_document(store.retrieve(run.id))
    assert body["name"] == NASTY  # JSON carries the text as it is
    assert graph == client.get(f"/api/runs/{run.id}/graph").json()
    assert (graph["status"], graph["colour"], graph["complete"]) == ("RUNNING", COLOURS[S.RUNNING], False)
    nodes = {n["ref_id"]: n for n in graph["nodes"]}
    assert len(graph["nodes"]) == len(run.stages) == 5
    assert list(graph["nodes"][0]) == NODE_KEYS
    for stage in run.stages:
        node = nodes[stage.ref_id]
        assert (node["id"], node["name"], node["status"]) == (stage.id, stage.name, stage.status.name)
        assert node["colour"] == COLOURS[stage.status]
    check = next(s for s in run.stages if s.parent_stage_id)
    assert nodes[check.ref_id]["synthetic_stage_owner"] == "STAGE_BEFORE"
    by_ref = {s.ref_id: s.id for s in run.stages}
    edges = {(e["source"], e["target"], e["kind"]) for e in graph["edges"]}
    assert edges == {
        (by_ref["build"], by_ref["test"], "dag"),
        (by_ref["build"], by_ref["lint"], "dag"),
        (by_ref["test"], by_ref["deploy"], "dag"),
        (by_ref["lint"], by_ref["deploy"], "dag"),
        (by_ref["build"], check.id, "synthetic"),
    }
    assert nodes["build"]["duration"] == "1.5s" and nodes["deploy"]["started"] == "-"


def test_a_stage_comes_with_its_neighbours_and_merged_ancestor_outputs(
    client: TestClient, store: SqlWorkflowStore
) -> None:
    (run,) = stored(store, mixed_run())
    build, deploy = (next(s for s in run.stages if s.ref_id == ref) for ref in ("build", "deploy"))
    body = client.get(f"/api/runs/{run.id}/stages/{deploy.id}").json()
    assert list(body) == ["stage", "requisites", "synthetic_stages", "merged_ancestor_outputs"]
    assert body["stage"] == documents.stage_document(store.retrieve_stage(deploy.id))
    assert sorted(r["ref_id"] for r in body["requisites"]) == ["lint", "test"]
    assert body["synthetic_stages"] == []
    assert body["merged_ancestor_outputs"] == store.get_merged_ancestor_outputs(run.id, "deploy")
    assert body["merged_ancestor_outputs"] == {
        "artifact": "app-1.0.tar",
        "tags": ["a", "b"],
        "lint": "failed",
    }
    around_build = client.get(f"/api/runs/{run.id}/stages/{build.id}").json()
    assert [s["name"] for s in around_build["synthetic_stages"]] == ["Check <inputs>"]
    assert around_build["merged_ancestor_outputs"] == {}
    (other,) = stored(store, finished_run("shop", 1))
    assert client.get(f"/api/runs/{other.id}/stages/{deploy.id}").status_code == 404
    assert client.get(f"/api/runs/{run.id}/stages/01NOSUCHSTAGE").json() == {
        "error": f"run {run.id} has no stage '01NOSUCHSTAGE'",
        "status": 404,
    }


def test_queue_overview(client: TestClient, store: SqlWorkflowStore, queue: SqlQueue) -> None:
    (run,) = stored(store, mixed_run())
    empty = client.get("/api/queue").json()
    assert empty == {
        "stats": {"depth": 0, "due_now": 0, "locked": 0, "oldest_age_ms": None, "dead_letters": 0},
        "by_type": [],
        "by_type_complete": True,
        "by_type_counted": 0,
        "oldest_due": None,
        "messages": [],
        "dead_letters": [],
    }
    for stage in run.stages[:3]:
        queue.push(CompleteStage(execution_id=run.id, stage_id=stage.id))
    first = StartWorkflow(execution_id=run.id)
    queue.push(first)
    queue.push(StartWorkflow(execution_id=run.id), delay=3600)
    letter = dead_letter(queue, run, "it <failed>")
    body = client.get("/api/queue").json()
    age = body["stats"].pop("oldest_age_ms")
    assert isinstance(age, int) and age >= 0  # the age moves on with the clock
    assert body["stats"] == {"depth": 5, "due_now": 4, "locked": 0, "dead_letters": 1}
    assert body["by_type"] == [
        {"message_type": "CompleteStage", "count": 3},
        {"message_type": "StartWorkflow", "count": 2},
    ]
    assert body["by_type_counted"] == 5 and body["by_type_complete"] is True
    assert body["messages"] == [documents.pick(row, documents.MESSAGE_KEYS) for row in queue.peek(50)]
    assert body["oldest_due"] == body["messages"][0]
    (dead,) = body["dead_letters"]
    assert list(dead) == [*documents.DEAD_LETTER_KEYS, "payload"]
    assert (dead["id"], dead["execution_id"], dead["last_error"]) == (letter, run.id, "it <failed>")
    assert dead["payload"]["execution_id"] == run.id


def test_health_is_the_health_commands_document(client: TestClient, store: SqlWorkflowStore) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body == {**asdict(store.health()), "state": "healthy", "problems": []}
    assert body["url"] == str(store.engine.url.render_as_string(hide_password=True))
