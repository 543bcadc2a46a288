"""``stabilize runs``: what ran, what is running, and clearing out what is long finished."""

from __future__ import annotations

import re

import click

from stabilize.cli import render
from stabilize.cli.app import Settings, cli, pass_settings
from stabilize.models.ids import now_ms
from stabilize.models.status import WorkflowStatus
from stabilize.persistence.store.interface import WorkflowCriteria

STATUS = click.Choice([s.name for s in WorkflowStatus], case_sensitive=False)
_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_age(text: str) -> int:
    """'30d', '12h', '90m' -> milliseconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if not match:
        raise click.BadParameter(f"{text!r} is not an age like 30d, 12h or 90m")
    return int(match.group(1)) * _UNITS[match.group(2)]


@cli.group()
def runs() -> None:
    """Workflow runs."""


@runs.command("list")
@click.option("--app", "application", help="Application name.")
@click.option("--config-id", help="Pipeline config id.")
@click.option("--status", "statuses", multiple=True, type=STATUS, help="Only these statuses (repeatable).")
@click.option("--limit", default=20, show_default=True, help="At most this many (0: all).")
@pass_settings
def list_runs(
    settings: Settings, application: str | None, config_id: str | None, statuses: tuple[str, ...], limit: int
) -> None:
    """A table of workflows, newest first."""
    if (application is None) == (config_id is None):
        raise click.UsageError("give exactly one of --app or --config-id")
    criteria = WorkflowCriteria(
        page_size=limit, statuses={WorkflowStatus[s.upper()] for s in statuses} or None
    )
    store = settings.store
    found = (
        store.retrieve_by_application(application, criteria)
        if application is not None
        else store.retrieve_by_pipeline_config_id(config_id or "", criteria)
    )
    settings.print(render.workflows_table(list(found)))


@runs.command()
@click.argument("workflow_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "tree", "json", "mermaid", "dot"]),
    default="table",
    show_default=True,
)
@pass_settings
def show(settings: Settings, workflow_id: str, fmt: str) -> None:
    """One workflow with its stages; mermaid and dot draw the DAG coloured by status."""
    workflow = settings.store.retrieve(workflow_id)
    if fmt == "table":
        settings.print(render.stages_table(workflow))
    elif fmt == "tree":
        settings.print(render.stages_tree(workflow))
    else:
        text = {"json": render.workflow_json, "mermaid": render.mermaid, "dot": render.dot}[fmt](workflow)
        click.echo(text)


@runs.command()
@click.option("--older-than", required=True, help="Age like 30d, 12h, 90m (by end time).")
@click.option("--status", "statuses", multiple=True, type=STATUS, help="Only these finished statuses.")
@click.option("--dry-run", is_flag=True, help="Count, delete nothing.")
@pass_settings
def purge(settings: Settings, older_than: str, statuses: tuple[str, ...], dry_run: bool) -> None:
    """Delete finished workflows older than a cut-off, in small batches. Running ones are never touched."""
    cutoff = now_ms() - parse_age(older_than)
    chosen = {WorkflowStatus[s.upper()] for s in statuses} or None
    if chosen and not all(s.is_complete for s in chosen):
        raise click.UsageError("only finished statuses can be purged")
    count = settings.store.purge_finished(cutoff, chosen, dry_run=dry_run)
    settings.print(f"{'would remove' if dry_run else 'removed'} {count} workflow(s)")
