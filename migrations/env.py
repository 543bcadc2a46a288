"""Alembic environment: offline (``--sql``) and online, for every dialect, from one stream.

The URL comes from ``-x url=...``, else ``STABILIZE_DATABASE_URL``, else ``sqlalchemy.url``;
code (``stabilize.persistence.sql.migrate``) may instead pass an open connection in
``config.attributes["connection"]``, or the URL offline mode writes for in
``config.attributes["url"]``. Any ini works, or none: logging is configured only from an ini
that has logging sections (the one packaged beside this file does). Migration scripts never
import the ORM rows; only autogenerate compares against them, here.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from stabilize.persistence.sql.engine import engine_profile, install_profile, normalize_url
from stabilize.persistence.sql.rows import Base

config = context.config
_LOGGING_SECTIONS = ("loggers", "handlers", "formatters")
if (
    config.config_file_name is not None
    and "connection" not in config.attributes
    and all(config.file_config.has_section(section) for section in _LOGGING_SECTIONS)
):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    url = url or os.environ.get("STABILIZE_DATABASE_URL")
    url = url or config.get_main_option("sqlalchemy.url") or "sqlite:///stabilize.db"
    return normalize_url(url).render_as_string(hide_password=False)


#: Tables of the database that are not the models': Galera's cluster-wide migration lock row
#: (``dialects.mysql.CLUSTER_LOCK_TABLE``), made by the lock, never by a migration.
NOT_MODELS = {"stabilize_migration_lock"}


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    return not (type_ == "table" and name in NOT_MODELS)


def configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        include_name=include_name,
        # SQLite alters tables by copying them; batch mode does that for every ALTER.
        render_as_batch=True,
        compare_type=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_offline() -> None:
    configure(url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_with(connection: Connection) -> None:
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        # From stabilize.persistence.sql.migrate, which holds the migration lock already.
        run_with(given)
        return
    # The plain ``alembic`` command: the dialect profile's connection settings (SQLite's WAL,
    # busy timeout and BEGIN hook; MySQL's strict mode) and its migration lock, taken before the
    # version table is read, so concurrent ``alembic upgrade`` runs migrate one after the other.
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    install_profile(engine)
    try:
        with engine.connect() as connection:
            engine_profile(engine).lift_bounds(connection)  # DDL runs as long as it needs
            with engine_profile(engine).migration_lock(connection):
                run_with(connection)  # committed by the lock's block before the lock is released
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
