"""The reads a page and its ``/api`` twin share: one function per question, store calls only."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from stabilize.models.stage import StageExecution
from stabilize.models.workflow import Workflow
from stabilize.ui.context import Dashboard
from stabilize.ui.listing import RunFilters, parse_filters


def filters_of(request: Request) -> RunFilters:
    """The runs listing's filters from the query string (``BadFilter`` names a bad parameter)."""
    params = request.query_params
    return parse_filters(params, params.getlist("status"))


def chosen_stage(workflow: Workflow, ref_id: str | None) -> StageExecution | None:
    """The stage of ``workflow`` whose ref id is ``ref_id`` (None when none was chosen).

    Raises:
        HTTPException: 404 when the run has no such stage.
    """
    if not ref_id:
        return None
    for stage in workflow.stages:
        if stage.ref_id == ref_id:
            return stage
    raise HTTPException(404, f"run {workflow.id} has no stage with ref id {ref_id!r}")


def merged_outputs(
    dash: Dashboard, workflow: Workflow, stage: StageExecution | None
) -> dict[str, Any] | None:
    """What the chosen stage receives from its ancestors (None when no stage was chosen)."""
    if stage is None:
        return None
    return dash.store.get_merged_ancestor_outputs(workflow.id, stage.ref_id)


def stage_of_run(dash: Dashboard, run_id: str, stage_id: str) -> StageExecution:
    """A stage with its requisites and synthetic stages (``retrieve_stage``), if it is ``run_id``'s.

    Raises:
        HTTPException: 404 when no stage has this id in that run.
    """
    try:
        stage = dash.store.retrieve_stage(stage_id)
    except ValueError:
        raise HTTPException(404, f"run {run_id} has no stage {stage_id!r}") from None
    if stage.execution.id != run_id:
        raise HTTPException(404, f"run {run_id} has no stage {stage_id!r}")
    return stage
