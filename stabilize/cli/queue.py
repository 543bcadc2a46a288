"""``stabilize queue``: how deep the queue is, what comes next, and the dead letters."""

from __future__ import annotations

import click
from rich.table import Table

from stabilize.cli import render
from stabilize.cli.app import Settings, cli, pass_settings
from stabilize.queue.sql import SqlQueue


def _queue(settings: Settings) -> SqlQueue:
    settings.store  # noqa: B018 - opening the store checks the schema is at head, with a clear error
    return SqlQueue(settings.url)


def _age(ms: int | None) -> str:
    return "-" if ms is None else render.duration(0, ms)


@cli.group()
def queue() -> None:
    """The SQL message queue."""


@queue.command()
@pass_settings
def stats(settings: Settings) -> None:
    """Depth, due now, locked (in flight), age of the oldest message, dead letters."""
    s = _queue(settings).stats()
    table = Table(title="queue", show_header=True)
    for column in ("depth", "due now", "locked", "oldest", "dead letters"):
        table.add_column(column, justify="right")
    table.add_row(str(s.depth), str(s.due_now), str(s.locked), _age(s.oldest_age_ms), str(s.dead_letters))
    settings.print(table)


@queue.command()
@click.option("-n", "limit", default=10, show_default=True, type=click.IntRange(1, 1000))
@pass_settings
def peek(settings: Settings, limit: int) -> None:
    """The next messages in delivery order, without claiming them."""
    rows = _queue(settings).peek(limit)
    table = Table(title=f"next {len(rows)} message(s)")
    for column in ("id", "type", "message id", "due", "attempts", "locked until"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["message_type"],
            row["message_id"],
            render.when(row["deliver_at"]),
            str(row["attempts"]),
            render.when(row["locked_until"]),
        )
    settings.print(table)


@queue.command()
@click.option("--replay", "replay_id", help="Requeue this dead letter (its id or message id), due now.")
@click.option("-n", "limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@pass_settings
def dlq(settings: Settings, replay_id: str | None, limit: int) -> None:
    """List the dead letters, or replay one."""
    q = _queue(settings)
    if replay_id is not None:
        key: int | str = int(replay_id) if replay_id.isdigit() else replay_id
        if not q.replay_dlq(key):
            raise click.ClickException(f"no dead letter {replay_id!r}")
        settings.print(f"replayed {replay_id}")
        return
    table = Table(title=f"dead letters ({q.dlq_size()})")
    for column in ("id", "type", "message id", "attempts", "failed", "last error"):
        table.add_column(column)
    for row in q.list_dlq(limit):
        table.add_row(
            str(row["id"]),
            str(row["message_type"]),
            str(row["message_id"]),
            str(row["attempts"]),
            render.when(row["failed_at"]),
            str(row.get("last_error") or "")[:80],
        )
    settings.print(table)
