"""How commands print: Rich on a terminal, whole lines in a pipe, and the scriptable formats.

- ``table`` (the default) is for people. On a terminal it fits the window without ever cutting an
  id; in a pipe or a file it is never wrapped or truncated, whatever ``COLUMNS`` says.
- ``json`` is one JSON document on stdout, with the shapes the README documents.
- ``plain`` (for lists) is one record per line, fields separated by a tab, no header; a tab,
  newline, carriage return or backslash inside a field is written ``\\t``, ``\\n``, ``\\r``, ``\\\\``.

Everything from the database is data, never markup: renderables are built from ``rich.text.Text``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click
from rich.console import Console

from stabilize.cli.errors import CliError, ExitCode

#: The width of output that is not a terminal: wide enough that nothing wraps.
UNLIMITED_WIDTH = 100_000

F = TypeVar("F", bound=Callable[..., Any])


def make_console(stderr: bool = False) -> Console:
    """A console for stdout (or stderr) that never wraps or cuts lines outside a terminal."""
    console = Console(stderr=stderr, highlight=False)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, highlight=False, width=UNLIMITED_WIDTH, soft_wrap=True)


def format_option(*choices: str, default: str = "table") -> Callable[[F], F]:
    """The ``--format`` option of a command that prints data."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=default,
        show_default=True,
        help="Output format (json and plain are for scripts; see the README for their shapes).",
    )


def yes_option(function: F) -> F:
    """The ``--yes`` flag of a destructive command."""
    return click.option(
        "--yes", "-y", is_flag=True, help="Do not ask first (required when stdin is not a terminal)."
    )(function)


def emit_json(document: Any) -> None:
    """Print one JSON document (UTF-8, not ASCII-escaped) on stdout."""
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


_PLAIN_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def plain_field(value: object) -> str:
    """One field of a ``plain`` record: ``-`` for None, separators escaped."""
    return "-" if value is None else str(value).translate(_PLAIN_ESCAPES)


def emit_plain(records: Iterable[Sequence[object]]) -> None:
    """Print one tab-separated line per record on stdout."""
    for record in records:
        click.echo("\t".join(plain_field(value) for value in record))


def emit_pairs(pairs: Sequence[tuple[str, str]]) -> None:
    """Print ``name  value`` lines on stdout, the values aligned."""
    width = max((len(name) for name, _ in pairs), default=0)
    for name, value in pairs:
        click.echo(f"{name:<{width}}  {value}")


def note(message: str) -> None:
    """A line for the person running the command, on stderr: stdout stays data only."""
    click.echo(message, err=True)


def confirm(action: str, yes: bool) -> None:
    """Go ahead only with ``--yes``, or when a person at a terminal answers yes.

    Raises:
        CliError: without ``--yes`` when stdin is not a terminal (exit 2), or when the person
            declines (exit 1). Nothing has been changed either way.
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliError(
            f"--yes is required to {action} (stdin is not a terminal to ask); nothing changed",
            ExitCode.USAGE,
        )
    if not click.confirm(f"{action[0].upper()}{action[1:]}?", default=False, err=True):
        raise CliError("aborted: nothing changed", ExitCode.FAILURE)
