"""``stabilize demo``: a durable workflow run by worker processes, watched live, then drawn.

Ctrl-C stops the workers cleanly (each finishes its step), pauses the run and says how to
continue or cancel it; the command exits 130. ``demo --resume ID`` continues such a run, and
``runs pause`` / ``runs cancel`` from another terminal stop a demo in progress the same way.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Sequence
from multiprocessing.process import BaseProcess

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stabilize.cli import render
from stabilize.cli.app import Settings, cli, pass_settings
from stabilize.cli.errors import CliError, ExitCode
from stabilize.models.status import WorkflowStatus
from stabilize.models.workflow import Workflow
from stabilize.persistence.sql import migrate
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.runner import Worker, submit
from stabilize.runner.demo import demo_workflow
from stabilize.runner.processes import start_workers, stop_workers

#: The longest a demo may take before it is called stuck.
TIMEOUT_SECONDS = 120
#: The application of the demo's runs: only those have the tasks the demo's workers know.
DEMO_APPLICATION = "demo"


class Halted(Exception):
    """The run was paused or canceled from elsewhere while the demo watched it."""


@cli.command()
@click.option("--workers", default=3, show_default=True, type=click.IntRange(1, 32), help="Worker processes.")
@click.option(
    "--stages",
    default=8,
    show_default=True,
    type=click.IntRange(3, 500),
    help="DAG stages (synthetic ones aside).",
)
@click.option("--resume", "resume_id", default=None, help="Continue this interrupted (or paused) demo run.")
@pass_settings
def demo(settings: Settings, workers: int, stages: int, resume_id: str | None) -> None:
    """Migrate, submit a fan-out / fan-in workflow, run it with worker processes, and show it.

    Ctrl-C stops the workers cleanly and pauses the run (exit 130); --resume continues it.
    """
    migrate.upgrade(settings.connect(create=True))
    store = settings.store
    workflow = _resumed(settings, store, resume_id) if resume_id else _submitted(settings, store, stages)
    if not workflow.status.is_complete:
        if settings.in_memory:
            # An in-memory database lives in this process only: run one worker here.
            done = lambda: store.retrieve_execution_summary(workflow.id).status.is_complete  # noqa: E731
            Worker(store, settings.queue).run(done)
        else:
            _run_workers(settings, store, workflow, workers)
    _show(settings, store, workflow.id)


def _submitted(settings: Settings, store: SqlWorkflowStore, stages: int) -> Workflow:
    workflow = demo_workflow(stages)
    submit(store, settings.queue, workflow)
    top = len(workflow.top_level_stages())
    synthetic = len(workflow.stages) - top
    click.echo(
        f"submitted workflow {workflow.id} ({top} stages, plus {synthetic} synthetic) to {settings.shown_url}"
    )
    return workflow


def _resumed(settings: Settings, store: SqlWorkflowStore, workflow_id: str) -> Workflow:
    workflow = store.retrieve(workflow_id)
    if workflow.application != DEMO_APPLICATION:
        raise CliError(
            f"--resume: run {workflow_id} is not a demo run (application {workflow.application!r}); "
            "the demo's workers only know the demo's tasks"
        )
    if workflow.status is WorkflowStatus.PAUSED:
        store.resume(workflow_id)
        workflow.status = WorkflowStatus.RUNNING
    state = "already ended " + workflow.status.name if workflow.status.is_complete else "continuing"
    click.echo(f"run {workflow_id}: {state}")
    return workflow


def _run_workers(settings: Settings, store: SqlWorkflowStore, workflow: Workflow, count: int) -> None:
    """Run the workers until the workflow ends; on Ctrl-C, or a pause or cancel from elsewhere,
    stop them cleanly and say what to do next."""
    processes: Sequence[BaseProcess] = []
    try:
        processes = start_workers(settings.url, workflow.id, count)
        _watch(settings, store, workflow, processes)
    except (KeyboardInterrupt, Halted) as stop:
        _stop(settings, store, workflow.id, processes, interrupted=isinstance(stop, KeyboardInterrupt))
    for process in processes:
        process.join(timeout=10)


def _watch(
    settings: Settings, store: SqlWorkflowStore, workflow: Workflow, processes: Sequence[BaseProcess]
) -> None:
    """A progress bar on a terminal; elsewhere one line per stage that ends."""
    total = len(workflow.top_level_stages())
    deadline = time.monotonic() + TIMEOUT_SECONDS
    reported: set[str] = set()
    with Progress(
        TextColumn("stages done"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=settings.console,
        disable=not settings.console.is_terminal,
    ) as progress:
        bar = progress.add_task("stages", total=total)
        while True:
            current = store.retrieve(workflow.id)
            done = [s for s in current.top_level_stages() if s.status.is_complete]
            progress.update(bar, completed=len(done))
            if not settings.console.is_terminal:
                for stage in (s for s in done if s.id not in reported):
                    reported.add(stage.id)
                    click.echo(f"stage {stage.ref_id} {stage.status.name} ({len(reported)}/{total} done)")
            if current.status.is_complete:
                return
            if current.status is WorkflowStatus.PAUSED or current.is_canceled:
                raise Halted()
            if not any(p.is_alive() for p in processes):
                raise CliError("every worker stopped before the workflow finished")
            if time.monotonic() > deadline:
                raise CliError(f"the workflow did not finish within {TIMEOUT_SECONDS}s")
            time.sleep(0.1)  # a person's refresh rate, not synchronisation


def _stop(
    settings: Settings,
    store: SqlWorkflowStore,
    workflow_id: str,
    processes: Sequence[BaseProcess],
    *,
    interrupted: bool,
) -> None:
    """Stop the workers (a second Ctrl-C is ignored meanwhile), then pause the run if it is still
    going, and exit: 130 after a Ctrl-C, 1 when it was paused or canceled from elsewhere."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        click.echo(f"\nstopping {len(processes)} worker(s); each finishes its current step", err=True)
        killed = stop_workers(processes)
        workflow = store.retrieve(workflow_id)
        if interrupted and not workflow.status.is_complete and workflow.status is not WorkflowStatus.PAUSED:
            store.pause(workflow_id, "stabilize demo (interrupted)")
    finally:
        signal.signal(signal.SIGINT, previous)
    top = workflow.top_level_stages()
    done = sum(1 for s in top if s.status.is_complete)
    url = f" --url '{settings.shown_url}'" if settings.source == "--url" else ""
    if workflow.status.is_complete:
        state = f"ended {workflow.status.name}"
    elif workflow.is_canceled:
        state = f"was canceled by {workflow.canceled_by}"
    else:
        state = "is paused"
    lines = [f"run {workflow_id} {state} with {done} of {len(top)} stages done"]
    if killed:
        lines.append(
            f"{len(killed)} worker(s) did not stop in time and were killed; their messages are "
            "delivered again when their locks lapse"
        )
    if not workflow.status.is_complete and not workflow.is_canceled:
        lines.append(f"  continue it: stabilize{url} demo --resume {workflow_id}")
        lines.append(f"  cancel it:   stabilize{url} runs cancel {workflow_id}")
    click.echo("\n".join(lines), err=True)
    raise click.exceptions.Exit(int(ExitCode.INTERRUPTED if interrupted else ExitCode.FAILURE))


def _show(settings: Settings, store: SqlWorkflowStore, workflow_id: str) -> None:
    done = store.retrieve(workflow_id)
    settings.console.print(render.dag_layers(done))
    settings.console.print(render.stages_table(done))
    click.echo(f"draw it: stabilize runs show {done.id} --format mermaid (or dot)")
    last = done.stages[-1]
    merged = store.get_merged_ancestor_outputs(done.id, last.ref_id)
    click.echo(f"\nmerged outputs of the ancestors of '{last.ref_id}':")
    click.echo(json.dumps(merged, indent=2))
    if not done.status.is_successful:
        raise CliError(f"workflow ended {done.status.name}")
