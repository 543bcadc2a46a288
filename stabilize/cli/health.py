"""``stabilize health``: can the store run against this database, and how is its queue doing."""

from __future__ import annotations

from dataclasses import asdict

import click

from stabilize.cli import render
from stabilize.cli.app import Settings, cli, pass_settings
from stabilize.cli.errors import CliError, ExitCode
from stabilize.cli.output import emit_json, emit_pairs, format_option, note
from stabilize.persistence.sql.health import HealthReport, check_health, unreachable_report


def _count(value: int | None, capped: bool) -> str:
    if value is None:
        return "-"
    return f"more than {value}" if capped else str(value)


def state_of(report: HealthReport) -> tuple[str, ExitCode]:
    """The report's state and the exit code ``health`` ends with (see ``stabilize health -h``)."""
    if not report.reachable:
        return "unreachable", ExitCode.UNREACHABLE
    if report.schema == "behind":
        return "behind", ExitCode.BEHIND
    if report.error is not None:
        return "failed", ExitCode.FAILURE
    if report.schema == "ahead":
        return "ahead", ExitCode.OK  # a newer release migrated it (rolling deploy): still usable
    return "healthy", ExitCode.OK


def _lines(report: HealthReport, state: str) -> list[tuple[str, str]]:
    schema = "-" if not report.reachable else f"{report.revision or 'none'} (head {report.head})"
    if report.schema is not None:
        schema += f": {report.schema}"
    return [
        ("database", report.url),
        ("reachable", "yes" if report.reachable else "no"),
        ("schema", schema),
        ("queue depth", _count(report.queue_depth, report.queue_depth_capped)),
        ("oldest message", render.age(report.oldest_message_age_ms)),
        ("dead letters", _count(report.dead_letters, report.dead_letters_capped)),
        ("status", {"healthy": "healthy", "ahead": "healthy (schema ahead)"}.get(state, "UNHEALTHY")),
    ]


def _report(settings: Settings) -> HealthReport:
    try:
        engine = settings.engine
    except CliError as exc:
        if exc.code != ExitCode.UNREACHABLE:
            raise
        return unreachable_report(settings.shown_url, exc.format_message())
    return check_health(engine)


@cli.command()
@format_option("table", "json")
@pass_settings
def health(settings: Settings, fmt: str) -> None:
    """Reachability, schema revision against head, queue depth, oldest message, dead letters.

    \b
    Exit codes: 0 healthy; 0 with a warning when the schema is ahead of this
    package (a newer release migrated it during a rolling deploy: this one still
    works); 3 behind head (run `stabilize db upgrade`); 6 unreachable; 1 another
    failure of the check. json adds "state" (healthy, ahead, behind, unreachable,
    failed) and "problems" to the report's fields.
    """
    report = _report(settings)
    state, code = state_of(report)
    if fmt == "json":
        emit_json({**asdict(report), "state": state, "problems": report.problems})
    else:
        emit_pairs(_lines(report, state))
    for problem in report.problems:
        note(f"{'warning' if code == ExitCode.OK else 'problem'}: {problem}")
    if code != ExitCode.OK:
        raise click.exceptions.Exit(int(code))
