"""The ``stabilize`` command: the group, the database it acts on, and the one place errors end.

The database comes from ``--url``, else ``STABILIZE_DATABASE_URL``, else ``sqlite:///stabilize.db``.
A SQLite file is created only by the commands that build a schema (``db upgrade``, ``db stamp``,
``db reset``, ``demo``); every other command on a missing file fails (exit 6) instead of
quietly creating an empty one. Without a terminal, even those refuse to create the *default*
file: a pipeline whose URL variable is unset fails instead of migrating ``./stabilize.db``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final, Literal

import click
from rich.console import Console
from sqlalchemy import URL, Engine
from sqlalchemy.exc import DBAPIError, NoSuchModuleError

from stabilize.cli.errors import EXIT_CODES_HELP, CliError, ExitCode, describe, exit_code_for
from stabilize.cli.output import make_console, note
from stabilize.persistence.sql import migrate
from stabilize.persistence.sql.dialects.sqlite import is_memory
from stabilize.persistence.sql.engine import engine_profile, get_engine, mask, normalize_url
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.sql import SqlQueue

DEFAULT_URL = "sqlite:///stabilize.db"
URL_VARIABLE: Final = "STABILIZE_DATABASE_URL"

UrlSource = Literal["--url", "STABILIZE_DATABASE_URL", "default"]


def package_version() -> str:
    """The installed distribution's version, for ``--version``."""
    try:
        return version("stabilize-store")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL opens, or None (not SQLite, in memory, or a ``file:`` URI whose
    ``mode`` parameter decides creation itself)."""
    if url.get_backend_name() != "sqlite" or is_memory(url) or url.query.get("uri") in ("true", "1"):
        return None
    return Path(url.database) if url.database else None


@dataclass
class Settings:
    """What every subcommand needs: the database (shown only with its password hidden)."""

    url: str
    source: UrlSource = "--url"
    console: Console = field(default_factory=make_console)

    @cached_property
    def target(self) -> URL:
        """The normalised URL; a malformed one or an unknown scheme is a usage error naming it."""
        try:
            url = normalize_url(self.url)
        except ValueError as exc:
            raise CliError(f"{self._field}: {describe(exc)}", ExitCode.USAGE) from None
        try:
            url.get_dialect()
        except NoSuchModuleError:
            raise CliError(
                f"{self._field}: unknown database scheme {url.drivername!r} in {mask(url)}; use "
                "sqlite://, postgresql://, mysql:// or mariadb:// (or another SQLAlchemy dialect's)",
                ExitCode.USAGE,
            ) from None
        return url

    @property
    def _field(self) -> str:
        """Where the URL came from, to name it in an error."""
        return "the default URL" if self.source == "default" else self.source

    @property
    def shown_url(self) -> str:
        """The URL with its password hidden, as every message shows it."""
        return mask(self.target)

    @property
    def in_memory(self) -> bool:
        """Whether the database lives in this process only (``sqlite:///:memory:``)."""
        return self.target.get_backend_name() == "sqlite" and is_memory(self.target)

    def announce(self) -> None:
        """Say on stderr which database a ``db`` command acts on."""
        suffix = f" (the default: --url and {URL_VARIABLE} are unset)" if self.source == "default" else ""
        note(f"database: {self.shown_url}{suffix}")

    def connect(self, *, create: bool = False) -> Engine:
        """The engine; a missing SQLite file is created only when ``create`` (see module doc)."""
        path = sqlite_file(self.target)
        if path is not None and not path.exists():
            if not create:
                raise CliError(
                    f"no database at {self.shown_url}: the file {path} does not exist "
                    f"(create it with `stabilize db upgrade`){self._unset_hint}",
                    ExitCode.UNREACHABLE,
                )
            if self.source == "default" and not sys.stdin.isatty():
                raise CliError(
                    f"no database given: --url and {URL_VARIABLE} are unset, and without a terminal the "
                    f"default {self.shown_url} is not created; pass --url to say which database",
                    ExitCode.USAGE,
                )
            note(f"creating the SQLite database file {path}")
        return self._engine

    @property
    def _unset_hint(self) -> str:
        return f"; --url and {URL_VARIABLE} are unset" if self.source == "default" else ""

    @cached_property
    def _engine(self) -> Engine:
        try:
            return get_engine(self.target)
        except ImportError as exc:
            extra = "postgres" if self.target.get_backend_name() == "postgresql" else "mysql"
            raise CliError(
                f"{self._field}: the database driver for {self.target.drivername} is not installed "
                f"({describe(exc)}); pip install 'stabilize-store[{extra}]'",
                ExitCode.USAGE,
            ) from None

    def explain(self, error: DBAPIError) -> CliError:
        """A driver error as one line naming the database, exit 6 when it means unreachable."""
        engine = self.__dict__.get("_engine")
        cause = error.orig if error.orig is not None else error
        unreachable = error.connection_invalidated or (
            engine is not None and engine_profile(engine).is_unreachable(cause)
        )
        code = ExitCode.UNREACHABLE if unreachable else ExitCode.FAILURE
        return CliError(f"database {self.shown_url}: {describe(error)}", code)

    @cached_property
    def engine(self) -> Engine:
        """The engine of an existing database."""
        return self.connect()

    @cached_property
    def store(self) -> SqlWorkflowStore:
        """The store, after checking the schema is one this package can use."""
        found = migrate.current(self.engine)
        if migrate.schema_state(found) == "behind":
            raise CliError(
                f"the schema of {self.shown_url} is at revision {found or 'none (empty database)'}, this "
                f"package needs {migrate.head()}: run `stabilize db upgrade`",
                ExitCode.BEHIND,
            )
        return SqlWorkflowStore(self.engine)

    @cached_property
    def queue(self) -> SqlQueue:
        """The queue of the same database (the store's schema check first)."""
        self.store  # noqa: B018 - opening the store checks the schema, with a clear error
        return SqlQueue(self.engine)


class OneLineErrors(click.Group):
    """The group whose ``main`` turns every failure into ``error: <message>`` and an exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Click's ``main``, with every failure ended here: ``error: ...`` and its exit code."""
        try:
            returned = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = returned if isinstance(returned, int) else ExitCode.OK
        except click.exceptions.Abort as exc:
            interrupted = isinstance(exc.__cause__, KeyboardInterrupt)
            note("interrupted" if interrupted else "error: aborted: nothing changed")
            code = ExitCode.INTERRUPTED if interrupted else ExitCode.FAILURE
        except CliError as exc:
            note(f"error: {describe(exc)}")
            code = exc.code
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            note(f"error: {describe(exc)}{where}")
            code = exc.exit_code
        except click.ClickException as exc:
            note(f"error: {describe(exc)}")
            code = exc.exit_code
        except KeyboardInterrupt:
            note("interrupted")
            code = ExitCode.INTERRUPTED
        except Exception as exc:  # the point: every other failure ends here, as one line
            note(f"error: {describe(exc)}")
            code = exit_code_for(exc)
        if standalone_mode:
            sys.exit(int(code))
        return int(code)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; an exception it did not explain becomes a ``CliError`` here, where
        the database it was talking to is still known."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except DBAPIError as exc:
            settings = ctx.find_object(Settings)
            if settings is None:
                raise
            raise settings.explain(exc) from exc
        except Exception as exc:  # the point: one line instead of a traceback
            raise CliError(describe(exc), exit_code_for(exc)) from exc


@click.group(
    cls=OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP
    + "\n\n\b\nShell completion (bash; zsh and fish alike):\n"
    + '  eval "$(_STABILIZE_COMPLETE=bash_source stabilize)"',
)
@click.version_option(package_version(), "--version", "-V", prog_name="stabilize")
@click.option(
    "--url",
    envvar=URL_VARIABLE,
    default=DEFAULT_URL,
    show_default=True,
    help=f"Database URL (else {URL_VARIABLE}). Passwords are never printed.",
)
@click.pass_context
def cli(ctx: click.Context, url: str) -> None:
    """Operate a stabilize workflow database: migrations, runs, the queue, and a demo."""
    source = ctx.get_parameter_source("url")
    shown: UrlSource = (
        "--url"
        if source is click.core.ParameterSource.COMMANDLINE
        else URL_VARIABLE
        if source is click.core.ParameterSource.ENVIRONMENT
        else "default"
    )
    ctx.obj = Settings(url, shown)


pass_settings = click.make_pass_decorator(Settings)
