"""``stabilize db``: Alembic from the installed package, for deploy pipelines.

Every command that acts on a database names it on stderr first (password hidden). ``--sql``
writes the SQL a migration would run, for the URL's dialect, without connecting (Alembic's
offline mode); for a ``mysql://`` URL that SQL applies on MySQL 8 and MariaDB alike.
"""

from __future__ import annotations

from dataclasses import asdict

import click
from sqlalchemy import Engine

from stabilize.cli import render
from stabilize.cli.app import Settings, cli, pass_settings
from stabilize.cli.errors import CliError, ExitCode
from stabilize.cli.output import confirm, emit_json, emit_pairs, emit_plain, format_option, note, yes_option
from stabilize.persistence.sql import migrate

SQL_OPTION = click.option(
    "--sql", is_flag=True, help="Print the SQL instead of running it (offline: no connection is made)."
)
FROM_OPTION = click.option(
    "--from",
    "from_revision",
    default=None,
    help="With --sql: the revision the database is at (default: base for upgrade, head for downgrade).",
)


@cli.group()
def db() -> None:
    """Schema migrations (Alembic), from the installed package.

    \b
    db check exits 0 at head, 3 behind, 4 ahead of this package, 5 drifted,
    6 unreachable.
    """


def _state(engine: Engine) -> tuple[str | None, migrate.SchemaState]:
    found = migrate.current(engine)
    return found, migrate.schema_state(found)


def _refuse_ahead(settings: Settings, found: str | None, doing: str) -> None:
    raise CliError(
        f"cannot {doing}: {settings.shown_url} is at revision {found}, which this package (head "
        f"{migrate.head()}) does not know: a newer release migrated it; upgrade the stabilize-store "
        "package instead. Nothing changed",
        ExitCode.AHEAD,
    )


def _offline(settings: Settings, action: migrate.OfflineCommand, revision: str) -> None:
    note(f"database (offline, SQL for its dialect): {settings.shown_url}")
    click.echo(migrate.offline_sql(settings.target, action, revision), nl=False)


@db.command()
@click.argument("revision", default="head")
@SQL_OPTION
@FROM_OPTION
@pass_settings
def upgrade(settings: Settings, revision: str, sql: bool, from_revision: str | None) -> None:
    """Upgrade the schema to REVISION (default: head); creates a new SQLite file."""
    if sql:
        _offline(settings, "upgrade", f"{from_revision}:{revision}" if from_revision else revision)
        return
    engine = settings.connect(create=True)
    settings.announce()
    before, state = _state(engine)
    if state == "ahead":
        _refuse_ahead(settings, before, "upgrade")
    migrate.upgrade(engine, revision)
    after = migrate.current(engine)
    if after == before:
        click.echo(f"already at {after or 'base'}; nothing to do")
    else:
        click.echo(f"upgraded from {before or 'base'} to {after or 'base'}")


@db.command()
@click.argument("revision")
@SQL_OPTION
@FROM_OPTION
@yes_option
@pass_settings
def downgrade(settings: Settings, revision: str, sql: bool, from_revision: str | None, yes: bool) -> None:
    """Downgrade the schema to REVISION ('base' drops every table with its data).

    Asks first on a terminal; needs --yes otherwise (not with --sql, which changes nothing).
    """
    if sql:
        _offline(settings, "downgrade", f"{from_revision or migrate.head()}:{revision}")
        return
    engine = settings.engine
    settings.announce()
    before, state = _state(engine)
    if state == "ahead":
        _refuse_ahead(settings, before, "downgrade")
    loses = "drops every stabilize table and its data" if revision == "base" else "may drop data"
    confirm(f"downgrade {settings.shown_url} from {before or 'base'} to {revision} ({loses})", yes)
    migrate.downgrade(engine, revision)
    click.echo(f"downgraded from {before or 'base'} to {migrate.current(engine) or 'base'}")


@db.command()
@yes_option
@pass_settings
def reset(settings: Settings, yes: bool) -> None:
    """Drop every stabilize table with its data, then build the schema at head again.

    Asks first on a terminal; needs --yes otherwise.
    """
    engine = settings.connect(create=True)
    settings.announce()
    before, state = _state(engine)
    if state == "ahead":
        _refuse_ahead(settings, before, "reset")
    confirm(f"drop every stabilize table of {settings.shown_url} with its data, then rebuild it at head", yes)
    migrate.downgrade(engine, "base")
    migrate.upgrade(engine)
    click.echo(f"reset: the schema is empty and at {migrate.current(engine)}")


@db.command()
@click.argument("revision", default="head")
@SQL_OPTION
@click.option("--purge", is_flag=True, help="Replace what the version table holds, even an unknown revision.")
@pass_settings
def stamp(settings: Settings, revision: str, sql: bool, purge: bool) -> None:
    """Record REVISION as the schema's revision without running any migration."""
    if sql:
        _offline(settings, "stamp", revision)
        return
    engine = settings.connect(create=True)
    settings.announce()
    before, state = _state(engine)
    if state == "ahead" and not purge:
        _refuse_ahead(settings, before, "stamp (--purge replaces it)")
    migrate.stamp(engine, revision, purge=purge)
    click.echo(f"stamped {migrate.current(engine) or 'base'} (was {before or 'base'})")


@db.command()
@format_option("table", "json")
@pass_settings
def current(settings: Settings, fmt: str) -> None:
    """The database's revision, this package's head, and where one stands against the other.

    json: {"database", "current", "head", "state": "at head" | "behind" | "ahead"}.
    """
    engine = settings.engine
    settings.announce()
    found, state = _state(engine)
    document = {"database": settings.shown_url, "current": found, "head": migrate.head(), "state": state}
    if fmt == "json":
        emit_json(document)
        return
    pairs = [("database", settings.shown_url), ("current", found or "none"), ("head", migrate.head())]
    emit_pairs([*pairs, ("state", state)])


@db.command()
@format_option("table", "json", "plain")
@pass_settings
def history(settings: Settings, fmt: str) -> None:
    """This package's migrations, newest first (no database needed).

    plain: one line per revision: revision, down revision, head or -, description.
    """
    revisions = migrate.history()
    if fmt == "json":
        emit_json([asdict(r) for r in revisions])
    elif fmt == "plain":
        emit_plain((r.revision, r.down_revision, "head" if r.is_head else None, r.doc) for r in revisions)
    else:
        rows = ((r.revision, r.down_revision, r.is_head, r.doc) for r in revisions)
        settings.console.print(render.revisions_table(rows))


@db.command()
@format_option("table", "json", "plain")
@pass_settings
def heads(settings: Settings, fmt: str) -> None:
    """This package's head revision(s) (no database needed)."""
    found = migrate.heads()
    if fmt == "json":
        emit_json(found)
    else:
        emit_plain((h,) for h in found)


@db.command()
@format_option("table", "json")
@pass_settings
def check(settings: Settings, fmt: str) -> None:
    """Exit 0 when the schema is at head and matches the models.

    \b
    Exit codes: 3 behind head (run `stabilize db upgrade`); 4 ahead (a newer
    release migrated it: upgrade this package); 5 drifted (the tables differ
    from the models); 6 unreachable.
    json: {"database", "current", "head", "state": "at head" | "behind" |
    "ahead" | "drifted", "differences": [...]}.
    """
    engine = settings.engine
    settings.announce()
    found, state = _state(engine)
    newest = migrate.head()
    differences = migrate.drift(engine) if state == "at head" else []
    shown_state = "drifted" if differences else state
    if fmt == "json":
        document = {"database": settings.shown_url, "current": found, "head": newest}
        emit_json({**document, "state": shown_state, "differences": differences})
    elif shown_state == "at head":
        click.echo(f"{settings.shown_url} is at head ({newest}) and matches the models")
    for difference in differences:
        note(f"drift: {difference}")
    if shown_state == "behind":
        raise CliError(
            f"the schema is at {found or 'none (empty database)'}, behind this package's head {newest}: "
            "run `stabilize db upgrade`",
            ExitCode.BEHIND,
        )
    if shown_state == "ahead":
        raise CliError(
            f"the schema is at {found}, which this package (head {newest}) does not know: a newer release "
            "migrated it; upgrade the stabilize-store package (do not run `db upgrade`)",
            ExitCode.AHEAD,
        )
    if shown_state == "drifted":
        raise CliError(
            f"the schema is at head ({newest}) but differs from the models in {len(differences)} place(s)",
            ExitCode.DRIFTED,
        )
