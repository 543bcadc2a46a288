"""``stabilize health``: can the store run against this database, and how is its queue doing."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from stabilize.cli import render
from stabilize.cli.app import Settings, cli, pass_settings
from stabilize.persistence.sql.health import HealthReport, check_health


def _count(value: int | None, capped: bool) -> str:
    if value is None:
        return "-"
    return f"more than {value}" if capped else str(value)


def _lines(report: HealthReport) -> list[tuple[str, str]]:
    schema = "-" if not report.reachable else f"{report.revision or 'none'} (head {report.head})"
    if report.schema is not None:
        schema += f": {report.schema}"
    return [
        ("database", report.url),
        ("reachable", "yes" if report.reachable else "no"),
        ("schema", schema),
        ("queue depth", _count(report.queue_depth, report.queue_depth_capped)),
        ("oldest message", render.duration(0, report.oldest_message_age_ms)),
        ("dead letters", _count(report.dead_letters, report.dead_letters_capped)),
        ("status", "healthy" if report.healthy else "UNHEALTHY"),
    ]


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_settings
def health(settings: Settings, fmt: str) -> None:
    """Reachability, schema revision against head, queue depth, oldest message, dead letters.

    Exits 1 when the database is unreachable or its schema is behind this package's head.
    """
    report = check_health(settings.engine)
    if fmt == "json":
        click.echo(settings.scrub(json.dumps({**asdict(report), "problems": report.problems}, indent=2)))
    else:
        width = max(len(name) for name, _ in _lines(report))
        for name, value in _lines(report):
            click.echo(settings.scrub(f"{name:<{width}}  {value}"))
        for problem in report.problems:
            click.echo(settings.scrub(f"problem: {problem}"), err=True)
    if not report.healthy:
        raise click.exceptions.Exit(1)
