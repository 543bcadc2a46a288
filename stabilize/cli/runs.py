"""``stabilize runs``: what ran, what is running, run control, and clearing out what is long finished."""

from __future__ import annotations

import getpass
import re

import click

from stabilize.cli import documents, graph, render
from stabilize.cli.app import Settings, cli, pass_settings
from stabilize.cli.errors import CliError
from stabilize.cli.output import confirm, emit_json, emit_plain, format_option, yes_option
from stabilize.models.status import WorkflowStatus
from stabilize.models.workflow import Workflow
from stabilize.persistence.ids import now_ms
from stabilize.persistence.store.interface import WorkflowCriteria

STATUS = click.Choice([s.name for s in WorkflowStatus], case_sensitive=False)
_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_age(text: str) -> int:
    """'30d', '12h', '90m' -> milliseconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if not match:
        raise click.BadParameter(f"{text!r} is not an age like 30d, 12h or 90m", param_hint="'--older-than'")
    return int(match.group(1)) * _UNITS[match.group(2)]


def operator() -> str:
    """Who is at the keyboard, for ``paused_by`` / ``canceled_by``."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in a bare container
        return "stabilize-cli"


@cli.group()
def runs() -> None:
    """Workflow runs: list, show, pause, resume, cancel, purge."""


@runs.command("list")
@click.option("--app", "application", help="Only this application.")
@click.option("--config-id", help="Only this pipeline config id.")
@click.option("--status", "statuses", multiple=True, type=STATUS, help="Only these statuses (repeatable).")
@click.option(
    "--limit", default=20, show_default=True, type=click.IntRange(min=0), help="At most this many (0: all)."
)
@format_option("table", "json", "plain")
@pass_settings
def list_runs(
    settings: Settings,
    application: str | None,
    config_id: str | None,
    statuses: tuple[str, ...],
    limit: int,
    fmt: str,
) -> None:
    """Workflows, newest first (not started first, then by start time); every application by default.

    plain: one line per run: id, status, application, name, started, ended, stages (tab-separated).
    """
    if application is not None and config_id is not None:
        raise click.UsageError("give at most one of --app and --config-id")
    criteria = WorkflowCriteria(
        page_size=limit, statuses={WorkflowStatus[s.upper()] for s in statuses} or None
    )
    store = settings.store
    if application is not None:
        found = list(store.retrieve_by_application(application, criteria))
    elif config_id is not None:
        found = list(store.retrieve_by_pipeline_config_id(config_id, criteria))
    else:
        found = store.get_all_pending_workflows(criteria)
    if fmt == "json":
        emit_json([documents.workflow_summary(w) for w in found])
    elif fmt == "plain":
        emit_plain(documents.workflow_record(w) for w in found)
    else:
        settings.console.print(render.workflows_table(found))


@runs.command()
@click.argument("workflow_id")
@format_option("table", "tree", "json", "plain", "mermaid", "dot")
@pass_settings
def show(settings: Settings, workflow_id: str, fmt: str) -> None:
    """One workflow with its stages; mermaid and dot draw the DAG coloured by status.

    plain: one line per stage: id, ref id, status, depth, name, started, ended, requisites.
    """
    workflow = settings.store.retrieve(workflow_id)
    if fmt == "table":
        settings.console.print(render.stages_table(workflow))
    elif fmt == "tree":
        settings.console.print(render.stages_tree(workflow))
    elif fmt == "json":
        emit_json(documents.workflow_document(workflow))
    elif fmt == "plain":
        emit_plain(documents.stage_record(d, s) for d, s in render.ordered_with_children(workflow))
    else:
        click.echo(graph.mermaid(workflow) if fmt == "mermaid" else graph.dot(workflow))


def _unfinished(settings: Settings, workflow_id: str, action: str) -> Workflow:
    workflow = settings.store.retrieve_execution_summary(workflow_id)
    if workflow.status.is_complete:
        raise CliError(f"run {workflow_id} already ended {workflow.status.name}: nothing to {action}")
    return workflow


@runs.command()
@click.argument("workflow_id")
@click.option("--by", "paused_by", default=None, help="Who pauses it (default: your login name).")
@pass_settings
def pause(settings: Settings, workflow_id: str, paused_by: str | None) -> None:
    """Pause a run: it shows PAUSED, and an engine that honours pauses starts nothing new in it."""
    workflow = _unfinished(settings, workflow_id, "pause")
    if workflow.status is WorkflowStatus.PAUSED:
        click.echo(f"run {workflow_id} is already paused")
        return
    settings.store.pause(workflow_id, paused_by or operator())
    was = workflow.status.name
    click.echo(f"paused run {workflow_id} (was {was}); resume it: stabilize runs resume {workflow_id}")


@runs.command()
@click.argument("workflow_id")
@pass_settings
def resume(settings: Settings, workflow_id: str) -> None:
    """Resume a paused run: it is RUNNING again, with the pause's length recorded."""
    workflow = _unfinished(settings, workflow_id, "resume")
    if workflow.status is not WorkflowStatus.PAUSED:
        raise CliError(f"run {workflow_id} is {workflow.status.name}, not PAUSED: nothing to resume")
    settings.store.resume(workflow_id)
    paused = settings.store.retrieve_execution_summary(workflow_id).paused
    took = f" after {render.duration(0, paused.paused_ms)} paused" if paused and paused.paused_ms else ""
    click.echo(f"resumed run {workflow_id}{took}")


@runs.command()
@click.argument("workflow_id")
@click.option("--reason", default="canceled from the command line", show_default=True, help="Why.")
@click.option("--by", "canceled_by", default=None, help="Who cancels it (default: your login name).")
@pass_settings
def cancel(settings: Settings, workflow_id: str, reason: str, canceled_by: str | None) -> None:
    """Cancel a run: record who and why, end it CANCELED, and drop its queued messages so no
    worker continues it. A run that already ended is left as it is."""
    workflow = _unfinished(settings, workflow_id, "cancel")
    store = settings.store
    store.cancel(workflow_id, canceled_by or operator(), reason)
    workflow = store.retrieve_execution_summary(workflow_id)
    workflow.status, workflow.end_time = WorkflowStatus.CANCELED, now_ms()
    store.update_status(workflow)
    dropped = settings.queue.purge_workflow(workflow_id)
    click.echo(f"canceled run {workflow_id}; dropped {dropped} queued message(s) of it")


@runs.command()
@click.option("--older-than", required=True, help="Age like 30d, 12h, 90m (by end time).")
@click.option("--status", "statuses", multiple=True, type=STATUS, help="Only these finished statuses.")
@click.option("--dry-run", is_flag=True, help="Count, delete nothing.")
@yes_option
@pass_settings
def purge(settings: Settings, older_than: str, statuses: tuple[str, ...], dry_run: bool, yes: bool) -> None:
    """Delete finished workflows older than a cut-off, in small batches. Running ones are never touched.

    Asks first on a terminal; needs --yes otherwise.
    """
    cutoff = now_ms() - parse_age(older_than)
    chosen = {WorkflowStatus[s.upper()] for s in statuses} or None
    if chosen and not all(s.is_complete for s in chosen):
        raise click.BadParameter("only finished statuses can be purged", param_hint="'--status'")
    store = settings.store
    count = store.purge_finished(cutoff, chosen, dry_run=True)
    if dry_run or count == 0:
        click.echo(f"would remove {count} workflow(s)" if dry_run else "removed 0 workflow(s)")
        return
    what = f"{count} finished workflow(s) older than {older_than.strip()}"
    confirm(f"delete {what} from {settings.shown_url}", yes)
    click.echo(f"removed {store.purge_finished(cutoff, chosen)} workflow(s)")
