"""Exit codes and one-line error messages: what a script reads from a failed ``stabilize`` call.

Every failure becomes ``error: <message>`` on one line of stderr and one of the exit codes below,
so a deploy pipeline can tell "run the upgrade" from "the database is down" without parsing text.
Messages never show a password: a URL is rendered with ``hide_password`` before any message is
built, and no message is edited afterwards.
"""

from __future__ import annotations

from enum import IntEnum

import click
from sqlalchemy.exc import DBAPIError

from stabilize.persistence.errors import DatabaseUnavailableError, StabilizeError


class ExitCode(IntEnum):
    """The exit statuses of every ``stabilize`` command (``MEANINGS`` says what each means)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    BEHIND = 3
    AHEAD = 4
    DRIFTED = 5
    UNREACHABLE = 6
    INTERRUPTED = 130


MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "done (health: also a schema ahead of this package, with a warning)",
    ExitCode.FAILURE: "failed: an error, an unknown run, refused input, a declined prompt",
    ExitCode.USAGE: "bad option or argument, or --yes missing where there is no terminal to ask",
    ExitCode.BEHIND: "schema behind this package's head, or empty: run `stabilize db upgrade`",
    ExitCode.AHEAD: "schema ahead: a newer release migrated it; upgrade this package",
    ExitCode.DRIFTED: "schema at head but the tables differ from the models (db check)",
    ExitCode.UNREACHABLE: "database unreachable: refused, down, wrong address, missing SQLite file",
    ExitCode.INTERRUPTED: "interrupted by Ctrl-C (SIGINT)",
}

#: The epilog of ``stabilize --help`` (``\\b`` keeps click from rewrapping the lines).
EXIT_CODES_HELP = "\b\nExit codes:\n" + "\n".join(
    f"  {code.value:<4} {text}" for code, text in MEANINGS.items()
)


class CliError(click.ClickException):
    """A failure the command line explains itself: one line, and its exit code (``code``)."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILURE) -> None:
        """A failure to report as ``message``, one line, exiting with ``code``."""
        super().__init__(message)
        self.code = code


def first_line(text: str) -> str:
    """The first non-blank line of ``text``, whitespace collapsed."""
    for line in text.splitlines():
        if line.strip():
            return " ".join(line.split())
    return ""


def describe(error: BaseException) -> str:
    """One line saying what went wrong, from the exception alone (the caller adds the context).

    A driver error is shown as the driver's own first line (SQLAlchemy's wrapper adds the SQL
    and a link, neither of which fits one line); the library's errors are their message.
    """
    if isinstance(error, DBAPIError) and error.orig is not None:
        cause: BaseException = error.orig
        return f"{type(cause).__name__}: {first_line(str(cause)) or type(cause).__name__}"
    message = first_line(str(error))
    if isinstance(error, StabilizeError | click.ClickException):
        return message or type(error).__name__
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code of an exception no command turned into a ``CliError`` itself."""
    if isinstance(error, DatabaseUnavailableError):
        return ExitCode.UNREACHABLE
    return ExitCode.FAILURE
