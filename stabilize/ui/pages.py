"""The HTML pages: runs, one run, the queue. Each renders the documents its ``/api`` twin returns."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from stabilize.cli import render
from stabilize.models.status import WorkflowStatus
from stabilize.ui import documents
from stabilize.ui.context import dashboard
from stabilize.ui.listing import LIMITS, fetch_page
from stabilize.ui.reads import chosen_stage, filters_of, merged_outputs
from stabilize.ui.templating import status_css


def home(request: Request) -> Response:
    """``/``: the runs."""
    return RedirectResponse("/runs", status_code=302)


def runs(request: Request) -> Response:
    """Every application's runs or one's, filtered by status and start time, newest first."""
    dash = dashboard(request)
    filters = filters_of(request)
    page = fetch_page(dash.store, filters)
    return dash.page(
        "runs.html",
        filters=filters,
        page=page,
        statuses=list(WorkflowStatus),
        limits=LIMITS,
        badge=documents.status_badge,
    )


def run(request: Request) -> Response:
    """One run: its DAG, its stages and tasks, their documents, and a stage's merged inputs."""
    dash = dashboard(request)
    workflow = dash.store.retrieve(request.path_params["run_id"])
    chosen = chosen_stage(workflow, request.query_params.get("stage"))
    return dash.page(
        "run.html",
        workflow=workflow,
        rows=render.ordered_with_children(workflow),
        graph=documents.run_graph(workflow),
        chosen=chosen,
        merged=merged_outputs(dash, workflow, chosen),
        refresh_ms=dash.refresh_ms,
        badge=documents.status_badge,
        statuses=sorted({s.status for s in workflow.stages}, key=lambda s: s.name),
    )


def queue(request: Request) -> Response:
    """The queue: counts, messages by type, the next messages, the dead letters."""
    dash = dashboard(request)
    return dash.page("queue.html", overview=documents.queue_overview(dash.queue))


def status_stylesheet(request: Request) -> Response:
    """``/assets/status.css``: the status colours, from the one table the terminal uses too."""
    return Response(status_css(), media_type="text/css", headers={"cache-control": "max-age=3600"})
