"""``stabilize queue``: how deep the queue is, what comes next, the dead letters, and clearing it."""

from __future__ import annotations

from dataclasses import asdict

import click

from stabilize.cli import documents, render
from stabilize.cli.app import Settings, cli, pass_settings
from stabilize.cli.errors import CliError
from stabilize.cli.output import confirm, emit_json, emit_plain, format_option, yes_option


@cli.group()
def queue() -> None:
    """The SQL message queue."""


@queue.command()
@format_option("table", "json")
@pass_settings
def stats(settings: Settings, fmt: str) -> None:
    """Depth, due now, locked (in flight), age of the oldest message, dead letters."""
    found = asdict(settings.queue.stats())
    if fmt == "json":
        emit_json(found)
    else:
        settings.console.print(render.queue_stats_table(found))


@queue.command()
@click.option("-n", "limit", default=10, show_default=True, type=click.IntRange(1, 1000), help="How many.")
@format_option("table", "json", "plain")
@pass_settings
def peek(settings: Settings, limit: int, fmt: str) -> None:
    """The next messages in delivery order, without claiming them.

    plain: one line per message: id, message id, type, due, attempts, locked until.
    """
    rows = settings.queue.peek(limit)
    if fmt == "json":
        emit_json([documents.pick(row, documents.MESSAGE_KEYS) for row in rows])
    elif fmt == "plain":
        emit_plain(documents.message_record(row) for row in rows)
    else:
        settings.console.print(render.messages_table(rows))


@queue.command()
@click.option("--replay", "replay_id", help="Requeue this dead letter (its id or message id), due now.")
@click.option("-n", "limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="How many.")
@format_option("table", "json", "plain")
@pass_settings
def dlq(settings: Settings, replay_id: str | None, limit: int, fmt: str) -> None:
    """List the dead letters, newest first, or replay one.

    plain: one line per dead letter: id, message id, type, attempts, execution id, failed, last error.
    """
    q = settings.queue
    if replay_id is not None:
        key: int | str = int(replay_id) if replay_id.isdigit() else replay_id
        if not q.replay_dlq(key):
            raise CliError(f"--replay: no dead letter {replay_id!r}")
        click.echo(f"replayed dead letter {replay_id}")
        return
    rows = q.list_dlq(limit)
    if fmt == "json":
        emit_json([documents.pick(row, documents.DEAD_LETTER_KEYS) for row in rows])
    elif fmt == "plain":
        emit_plain(documents.dead_letter_record(row) for row in rows)
    else:
        settings.console.print(render.dead_letters_table(rows, q.dlq_size()))


@queue.command()
@click.option("--dead-letters", is_flag=True, help="Clear the dead letters instead of the queue.")
@yes_option
@pass_settings
def clear(settings: Settings, dead_letters: bool, yes: bool) -> None:
    """Delete every queued message (or, with --dead-letters, every dead letter).

    Asks first on a terminal; needs --yes otherwise.
    """
    q = settings.queue
    if dead_letters:
        confirm(f"delete all {q.dlq_size()} dead letter(s) of {settings.shown_url}", yes)
        click.echo(f"removed {q.clear_dlq()} dead letter(s)")
        return
    confirm(f"delete all {q.size()} queued message(s), in flight included, of {settings.shown_url}", yes)
    q.clear()
    click.echo("cleared the queue")
