"""The ``stabilize`` command: group, shared options, and the one place errors become one line."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import click
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from stabilize.persistence.sql.engine import get_engine, mask, normalize_url
from stabilize.persistence.sql.store import SqlWorkflowStore

DEFAULT_URL = "sqlite:///stabilize.db"


@dataclass
class Settings:
    """What every subcommand needs: the database, and a console that never shows its password."""

    url: str
    console: Console = field(default_factory=Console)

    @cached_property
    def password(self) -> str | None:
        try:
            return make_url(normalize_url(self.url)).password
        except Exception:  # an unparseable URL has no password to hide
            return None

    def scrub(self, text: str) -> str:
        return text.replace(self.password, "***") if self.password else text

    @property
    def shown_url(self) -> str:
        return mask(self.url)

    @cached_property
    def engine(self) -> Engine:
        return get_engine(self.url)

    @cached_property
    def store(self) -> SqlWorkflowStore:
        return SqlWorkflowStore(self.url)

    def print(self, *objects: Any) -> None:
        if all(isinstance(o, str) for o in objects):
            objects = tuple(self.scrub(o) for o in objects)
        self.console.print(*objects)


class OneLineErrors(click.Group):
    """Any failure below becomes ``error: <message>`` on stderr and exit status 1, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # the point: catch everything once, here
            settings = ctx.find_object(Settings)
            message = " ".join(str(exc).split("\n")[0].split()) or type(exc).__name__
            text = f"error: {type(exc).__name__}: {message}"
            if settings is not None:
                text = settings.scrub(text)
            click.echo(text, err=True)
            sys.exit(1)


@click.group(cls=OneLineErrors)
@click.option(
    "--url",
    envvar="STABILIZE_DATABASE_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Database URL (else STABILIZE_DATABASE_URL). Passwords are never printed.",
)
@click.pass_context
def cli(ctx: click.Context, url: str) -> None:
    """Operate a stabilize workflow database: migrations, runs, the queue, and a demo."""
    ctx.obj = Settings(url)


pass_settings = click.make_pass_decorator(Settings)
