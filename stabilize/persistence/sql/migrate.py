"""Alembic, driven from code: what ``create_tables=True``, the tests and the CLI call.

The migration scripts ship inside the package (``stabilize/_migrations`` is the repository's
``migrations/`` directory), so an installed wheel can migrate a database without the source tree;
so does an ini for Alembic's own command (``alembic -c <ALEMBIC_INI> upgrade head``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine

from stabilize.persistence.errors import SchemaError
from stabilize.persistence.sql.engine import engine_profile, engine_state

SCRIPT_LOCATION = Path(__file__).resolve().parents[2] / "_migrations"
#: An Alembic ini inside the package: ``alembic -c <this> -x url=... upgrade head`` from a wheel.
ALEMBIC_INI = SCRIPT_LOCATION / "alembic.ini"


def alembic_config(
    connection: Connection | None = None, *, url: str | URL | None = None, output: io.StringIO | None = None
) -> Config:
    """A Config for the packaged scripts.

    Args:
        connection: the connection env.py migrates on (online mode).
        url: the database whose dialect offline (``--sql``) mode writes for.
        output: where offline mode writes its SQL (default: stdout).
    """
    config = Config(output_buffer=output) if output is not None else Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if connection is not None:
        config.attributes["connection"] = connection
    if url is not None:
        config.attributes["url"] = url
    return config


@cache
def _revisions() -> tuple[str, frozenset[str]]:
    """(head, every revision) of the packaged scripts, read once per process."""
    scripts = ScriptDirectory.from_config(alembic_config())
    newest = scripts.get_current_head()
    assert newest is not None, "the migrations have no head revision"
    return newest, frozenset(script.revision for script in scripts.walk_revisions())


def head() -> str:
    """The newest revision of the packaged scripts."""
    return _revisions()[0]


def heads() -> list[str]:
    """Every head revision of the packaged scripts (one, unless a branch was left unmerged)."""
    return list(ScriptDirectory.from_config(alembic_config()).get_heads())


@dataclass(frozen=True)
class Revision:
    """One migration script, as ``stabilize db history`` lists it."""

    revision: str
    down_revision: str | None
    doc: str
    is_head: bool


def history() -> list[Revision]:
    """The packaged migrations, newest first."""
    scripts = ScriptDirectory.from_config(alembic_config())
    found = []
    for script in scripts.walk_revisions():
        down = script.down_revision
        found.append(
            Revision(
                revision=script.revision,
                down_revision=down if isinstance(down, str) or down is None else ",".join(down),
                doc=script.doc or "",
                is_head=script.is_head,
            )
        )
    return found


def current(engine: Engine) -> str | None:
    """The revision recorded in the database behind ``engine`` (None for an empty one)."""
    with engine.connect() as connection:
        return current_of(connection)


def current_of(connection: Connection) -> str | None:
    """The revision recorded in the database (None for an empty one), read on ``connection``."""
    return MigrationContext.configure(connection).get_current_revision()


SchemaState = Literal["at head", "behind", "ahead"]


def schema_state(found: str | None) -> SchemaState:
    """Where revision ``found`` stands against this code's head.

    ``ahead`` is a revision these scripts do not know: a newer release migrated the database
    (a rolling deploy). That is accepted, as migrations only add what older code can ignore.
    """
    newest, known = _revisions()
    if found == newest:
        return "at head"
    return "behind" if found is None or found in known else "ahead"


def ensure_current(engine: Engine) -> None:
    """Raise ``SchemaError`` when the database is behind this code's newest migration.

    A database *ahead* of it (a newer release migrated it during a rolling deploy) is accepted:
    migrations only add what older code can ignore.
    """
    found = current(engine)
    if schema_state(found) == "behind":
        raise SchemaError(
            f"the database schema is at revision {found or 'none (empty database)'}, this code needs "
            f"{head()}: run `stabilize db upgrade` (or `alembic upgrade head`), or open the store with "
            "create_tables=True"
        )


@contextmanager
def migrating(engine: Engine) -> Iterator[Connection]:
    """A connection holding the database's migration lock (the dialect profile's
    ``migration_lock``), taken before Alembic reads the version table.

    Processes that upgrade one database at once (every replica of a deployment starting with
    ``create_tables=True``, say) migrate one after the other: the first builds the schema, the
    others then find it at head and do nothing. The block's work commits before the lock goes.
    """
    profile = engine_profile(engine)
    with engine.connect() as connection:
        # DDL runs as long as it needs: the call bounds of the store's sessions do not apply
        # while it migrates, and are set again before the connection goes back to the pool.
        profile.lift_bounds(connection)
        try:
            with profile.migration_lock(connection):
                yield connection
        finally:
            if not connection.invalidated:
                profile.restore_bounds(connection, engine_state(engine).bounds)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade to ``revision`` under the migration lock."""
    with migrating(engine) as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade to ``revision`` (``base``: drop every table) under the migration lock."""
    with migrating(engine) as connection:
        command.downgrade(alembic_config(connection), revision)


def stamp(engine: Engine, revision: str, *, purge: bool = False) -> None:
    """Record ``revision`` in the version table without running migrations (``purge``: replace
    whatever it holds, even a revision these scripts do not know)."""
    with migrating(engine) as connection:
        command.stamp(alembic_config(connection), revision, purge=purge)


def check(engine: Engine) -> None:
    """Raise ``alembic.util.exc.AutogenerateDiffsDetected`` when the models and the database differ."""
    with engine.begin() as connection:
        command.check(alembic_config(connection))


def drift(engine: Engine) -> list[str]:
    """What autogenerate would change to make the database match the models, one line per
    difference (empty when they match): the comparison ``check`` makes, with ``env.py``'s options."""
    from stabilize.persistence.sql.rows import Base  # the models: only this comparison needs them

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return [_describe_difference(d) for d in compare_metadata(context, Base.metadata)]


def _describe_difference(difference: Any) -> str:
    """``add_column workflows.extra``: the operation and the names it touches."""
    if isinstance(difference, list):  # modify_* operations come grouped per column
        return "; ".join(_describe_difference(d) for d in difference)
    kind, *args = difference
    if kind.startswith("modify_"):  # (kind, schema, table, column, existing, old, new)
        return f"{kind} {args[1]}.{args[2]}: {args[4]!r} -> {args[5]!r}"
    objects = [_qualified(arg) for arg in args if getattr(arg, "name", None) is not None]
    return " ".join([kind, *(objects or [arg for arg in args if isinstance(arg, str)])])


def _qualified(element: Any) -> str:
    """``table.name`` for a column, index or constraint; the name alone for a table."""
    table = getattr(getattr(element, "table", None), "name", None)
    return f"{table}.{element.name}" if table is not None else str(element.name)


OfflineCommand = Literal["upgrade", "downgrade", "stamp"]


def offline_sql(url: str | URL, action: OfflineCommand, revision: str) -> str:
    """The SQL that ``action`` to ``revision`` would run, written for ``url``'s dialect without
    connecting (Alembic's offline mode). A downgrade needs ``from:to``; so may an upgrade."""
    output = io.StringIO()
    config = alembic_config(url=url, output=output)
    getattr(command, action)(config, revision, sql=True)
    return output.getvalue()
