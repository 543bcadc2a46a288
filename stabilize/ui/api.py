"""The JSON endpoints: the data of each page, in the command line's shapes where it has one.

- ``GET /api/runs``: ``{runs: [runs list --format json item], next: cursor | null, filters}``
- ``GET /api/runs/{id}``: ``runs show --format json``'s document plus ``graph`` (nodes, edges)
- ``GET /api/runs/{id}/graph``: the DAG alone (what a running run's page polls)
- ``GET /api/runs/{id}/stages/{stage_id}``: ``{stage, requisites, synthetic_stages,
  merged_ancestor_outputs}``
- ``GET /api/queue``: ``{stats, by_type, by_type_complete, oldest_due, messages, dead_letters}``
- ``GET /health``: ``stabilize health --format json``'s document; 503 unless usable

A failure is ``{error, status}`` with its HTTP status (400 bad parameter, 404 unknown, 503
database unavailable).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from stabilize.cli import documents as cli_documents
from stabilize.ui import documents
from stabilize.ui.context import dashboard
from stabilize.ui.listing import fetch_page
from stabilize.ui.reads import filters_of, stage_of_run


def runs(request: Request) -> JSONResponse:
    """A page of runs, newest first, with the cursor of the next page."""
    filters = filters_of(request)
    page = fetch_page(dashboard(request).store, filters)
    return JSONResponse(
        {
            "runs": [cli_documents.workflow_summary(w) for w in page.runs],
            "next": None if page.next is None else str(page.next),
            "filters": filters.document(),
        }
    )


def run(request: Request) -> JSONResponse:
    """One run with its stages, tasks and DAG."""
    workflow = dashboard(request).store.retrieve(request.path_params["run_id"])
    return JSONResponse(documents.run_document(workflow))


def graph(request: Request) -> JSONResponse:
    """One run's DAG: statuses, colours, times."""
    workflow = dashboard(request).store.retrieve(request.path_params["run_id"])
    return JSONResponse(documents.run_graph(workflow))


def stage(request: Request) -> JSONResponse:
    """One stage, around it its requisites and synthetic stages, and its ancestors' merged outputs."""
    dash = dashboard(request)
    run_id = request.path_params["run_id"]
    found = stage_of_run(dash, run_id, request.path_params["stage_id"])
    merged = dash.store.get_merged_ancestor_outputs(run_id, found.ref_id)
    return JSONResponse(documents.stage_detail(found, merged))


def queue(request: Request) -> JSONResponse:
    """Depth, messages by type, the next messages and the dead letters."""
    return JSONResponse(documents.queue_overview(dashboard(request).queue))


def health(request: Request) -> JSONResponse:
    """The store's health report; 503 when the store cannot be used."""
    document, usable = documents.health_document(dashboard(request).store.health())
    return JSONResponse(document, status_code=200 if usable else 503)
