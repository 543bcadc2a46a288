"""``stabilize demo``: a durable workflow run by worker processes, watched live, then drawn."""

from __future__ import annotations

import json
import time

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stabilize.cli import render
from stabilize.cli.app import Settings, cli, pass_settings
from stabilize.persistence.sql import migrate
from stabilize.persistence.sql.dialects.sqlite import is_memory
from stabilize.persistence.sql.engine import normalize_url
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.sql import SqlQueue
from stabilize.runner import Worker, submit
from stabilize.runner.demo import demo_workflow
from stabilize.runner.processes import start_workers

#: The longest a demo may take before it is called stuck.
TIMEOUT_SECONDS = 120


@cli.command()
@click.option("--workers", default=3, show_default=True, type=click.IntRange(1, 32), help="Worker processes.")
@click.option("--stages", default=8, show_default=True, type=click.IntRange(3, 500), help="DAG stages.")
@pass_settings
def demo(settings: Settings, workers: int, stages: int) -> None:
    """Migrate, submit a fan-out / fan-in workflow, run it with worker processes, and show it."""
    migrate.upgrade(settings.engine)
    store = SqlWorkflowStore(settings.url)
    queue = SqlQueue(settings.url)
    workflow = demo_workflow(stages)
    submit(store, queue, workflow)
    settings.print(
        f"submitted workflow {workflow.id} ({len(workflow.stages)} stages) to {settings.shown_url}"
    )

    if is_memory(normalize_url(settings.url)):
        # An in-memory database lives in this process only: run one worker here.
        Worker(store, queue).run(lambda: store.retrieve_execution_summary(workflow.id).status.is_complete)
    else:
        _run_with_progress(settings, store, workflow.id, workers, len(workflow.stages))

    done = store.retrieve(workflow.id)
    settings.print(render.dag_layers(done))
    settings.print(render.stages_table(done))
    settings.print(f"draw it: stabilize runs show {done.id} --format mermaid (or dot)")
    last = done.stages[-1]
    merged = store.get_merged_ancestor_outputs(done.id, last.ref_id)
    settings.print(f"\nmerged outputs of the ancestors of '{last.ref_id}':")
    click.echo(json.dumps(merged, indent=2))
    if not done.status.is_successful:
        raise click.ClickException(f"workflow ended {done.status.name}")


def _run_with_progress(
    settings: Settings, store: SqlWorkflowStore, workflow_id: str, workers: int, total: int
) -> None:
    processes = start_workers(settings.url, workflow_id, workers)
    columns = (TextColumn("stages done"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    deadline = time.monotonic() + TIMEOUT_SECONDS
    with Progress(*columns, console=settings.console, transient=False) as progress:
        bar = progress.add_task("stages", total=total)
        while True:
            current = store.retrieve(workflow_id)
            progress.update(bar, completed=sum(1 for s in current.stages if s.status.is_complete))
            if current.status.is_complete:
                break
            if not any(p.is_alive() for p in processes):
                raise click.ClickException("every worker stopped before the workflow finished")
            if time.monotonic() > deadline:
                raise click.ClickException(f"the workflow did not finish within {TIMEOUT_SECONDS}s")
            time.sleep(0.1)  # a person's refresh rate, not synchronisation
    for process in processes:
        process.join(timeout=10)
