"""What a user puts on the URL is honoured alongside the profile's own settings, never replaced
(issue 11, CONTRACT.md section 6b): PostgreSQL ``options`` (``-c`` settings, a schema through
``search_path``), MariaDB's ``init_command``, SQLite's URI parameters. Where both set one thing,
the user's value wins; the profile's other settings stay. Each setting is read back from the
server through a Session on the store's own engine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, MetaData, Table, bindparam, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from stabilize.persistence.sql.engine import engine_profile, engine_state, get_engine
from stabilize.persistence.sql.migrate import current, head, upgrade
from stabilize.persistence.sql.rows import WorkflowRow, table_of
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue import StartWorkflow
from stabilize.queue.sql import SqlQueue
from tests.integration.builders import chain


def _with_query(url: str, **query: str) -> str:
    return make_url(url).update_query_dict(query).render_as_string(hide_password=False)


def _read(engine: Engine, sql: str) -> Any:
    """One row read through a Session on ``engine`` (a pooled connection, as the store's calls)."""
    with Session(engine) as session:
        return session.execute(text(sql)).one()


def _pg_settings(connection: Connection | Session) -> dict[str, str]:
    """The session's settings, in their base units (timeouts in ms, without the unit)."""
    names = ("search_path", "TimeZone", "statement_timeout", "jit", "lock_timeout", "application_name")
    query = text("SELECT name, setting FROM pg_settings WHERE name IN :names")
    rows = connection.execute(query.bindparams(bindparam("names", expanding=True)), {"names": names})
    return {name.lower(): setting for name, setting in rows}


# -- PostgreSQL -----------------------------------------------------------------------------------


def _workflows_in(schema: str) -> Table:
    """The workflows table of one schema, named in full (no search_path involved)."""
    return table_of(WorkflowRow).to_metadata(MetaData(), schema=schema)


@pytest.mark.parametrize("dialect", ["postgresql"])
def test_two_stores_on_two_schemas_of_one_database_stay_apart(fresh_url: Callable[[], str]) -> None:
    database = fresh_url()
    with get_engine(database).begin() as connection:
        connection.execute(text("CREATE SCHEMA tenant_a"))
        connection.execute(text("CREATE SCHEMA tenant_b"))
    url_a = database + "?options=-csearch_path%3Dtenant_a"  # as a user writes it
    url_b = _with_query(database, options="-c search_path=tenant_b")
    for url in (url_a, url_b):
        upgrade(get_engine(url))
        assert current(get_engine(url)) == head()  # each schema has its own alembic_version
    store_a, store_b = SqlWorkflowStore(url_a), SqlWorkflowStore(url_b)
    queue_a, queue_b = SqlQueue(url_a), SqlQueue(url_b)
    workflow_a, workflow_b = chain(2, 1), chain(3, 1)

    store_a.store(workflow_a)
    store_b.store(workflow_b)
    queue_a.push(StartWorkflow(execution_id=workflow_a.id))

    assert store_a.exists(workflow_a.id) and not store_a.exists(workflow_b.id)
    assert store_b.exists(workflow_b.id) and not store_b.exists(workflow_a.id)
    assert len(store_b.retrieve(workflow_b.id).stages) == 3
    assert queue_b.size() == 0 and queue_a.size() == 1
    with get_engine(database).connect() as connection:  # the database's default schema: untouched
        rows = {
            schema: connection.execute(select(_workflows_in(schema).c.id)).scalars().all()
            for schema in ("tenant_a", "tenant_b")
        }
        public = connection.execute(
            text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        ).scalar_one()
    assert rows == {"tenant_a": [workflow_a.id], "tenant_b": [workflow_b.id]}
    assert public == 0
    delivered = queue_a.poll_one()
    assert delivered is not None and delivered.execution_id == workflow_a.id  # type: ignore[attr-defined]


@pytest.mark.parametrize("dialect", ["postgresql"])
def test_postgres_settings_on_the_url_win_and_the_profiles_others_stay(url: str) -> None:
    options = "-c timezone=Asia/Tokyo -c statement_timeout=4321 -c jit=on"
    user_url = _with_query(url, options=options, application_name="tenant-a-workers")
    store = SqlWorkflowStore(user_url)
    bounds = engine_state(store.engine).bounds

    with Session(store.engine) as session:
        settings = _pg_settings(session)

    assert settings["timezone"] == "Asia/Tokyo"
    assert settings["statement_timeout"] == "4321"  # the user's, not the profile's 5 s
    assert settings["jit"] == "on"  # the profile turns it off; the user turned it on
    assert settings["application_name"] == "tenant-a-workers"  # a libpq keyword, passed on
    assert settings["lock_timeout"] == str(bounds.lock_wait_ms)  # the profile's own, kept
    workflow = chain(2, 1)
    store.store(workflow)  # the store works under them
    assert store.retrieve(workflow.id).id == workflow.id


@pytest.mark.parametrize("dialect", ["postgresql"])
def test_postgres_settings_on_the_url_survive_a_migration_on_the_connection(url: str) -> None:
    """A migration lifts the call bounds on its connection and sets them again before the
    connection goes back to the pool: to the user's values, not the profile's."""
    engine = get_engine(_with_query(url, options="-c statement_timeout=4321 -c lock_timeout=1234"))
    profile, bounds = engine_profile(engine), engine_state(engine).bounds
    with engine.connect() as connection:
        profile.lift_bounds(connection)
        assert _pg_settings(connection)["statement_timeout"] == "0"
        profile.restore_bounds(connection, bounds)
        settings = _pg_settings(connection)
    assert (settings["statement_timeout"], settings["lock_timeout"]) == ("4321", "1234")
    upgrade(engine)  # a no-op migration at head, through the same path
    assert _read(engine, "SHOW statement_timeout")[0] == "4321ms"


@pytest.mark.parametrize("dialect", ["postgresql"])
def test_postgres_options_given_twice_are_both_kept(url: str) -> None:
    query = "options=-c%20timezone%3DAsia/Tokyo&options=-c%20jit%3Don"
    engine = get_engine(url + "?" + query)
    assert tuple(_read(engine, "SELECT current_setting('timezone'), current_setting('jit')")) == (
        "Asia/Tokyo",
        "on",
    )


# -- MariaDB --------------------------------------------------------------------------------------

_MYSQL_SESSION = (
    "SELECT @@SESSION.group_concat_max_len, @@SESSION.innodb_lock_wait_timeout, @tenant, "
    "@@SESSION.sql_mode, @@SESSION.max_recursive_iterations"
)
#: A session variable of the user's, one the profile sets too, and a user variable with a %.
_INIT_COMMAND = "SET SESSION group_concat_max_len = 12345, innodb_lock_wait_timeout = 7, @tenant = 'a%b'"


def _assert_mysql_session(row: Any) -> None:
    group_concat, lock_wait, tenant, sql_mode, recursion = row
    assert (group_concat, lock_wait, tenant) == (12345, 7, "a%b")  # the user's, 7 over the profile's
    assert "STRICT_ALL_TABLES" in sql_mode  # the profile's own, kept
    assert recursion == 4294967295  # the profile's lifted recursion limit, kept


@pytest.mark.parametrize("dialect", ["mariadb"])
def test_mariadb_init_command_is_honoured_alongside_the_profiles_settings(url: str) -> None:
    store = SqlWorkflowStore(_with_query(url, init_command=_INIT_COMMAND))

    _assert_mysql_session(_read(store.engine, _MYSQL_SESSION))
    workflow = chain(2, 1)
    store.store(workflow)
    assert store.retrieve(workflow.id).id == workflow.id


@pytest.mark.parametrize("dialect", ["mariadb"])
def test_mariadb_init_command_survives_a_migration_on_the_connection(url: str) -> None:
    """The migration's lifted bounds are set again before the connection goes back to the pool;
    the user's init_command then runs again, so its settings win as at connect."""
    engine = get_engine(_with_query(url, init_command=_INIT_COMMAND))
    profile, bounds = engine_profile(engine), engine_state(engine).bounds
    with engine.connect() as connection:
        profile.lift_bounds(connection)
        profile.restore_bounds(connection, bounds)
        _assert_mysql_session(connection.execute(text(_MYSQL_SESSION)).one())
    upgrade(engine)
    _assert_mysql_session(_read(engine, _MYSQL_SESSION))


# -- SQLite ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["sqlite_file"])
def test_sqlite_uri_parameters_are_kept(dialect: str, tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    writer = SqlWorkflowStore(f"sqlite:///{path}", create_tables=True)
    workflow = chain(2, 1)
    writer.store(workflow)

    reader = SqlWorkflowStore(f"sqlite:///file:{path}?mode=ro&uri=true")

    assert reader.retrieve(workflow.id).id == workflow.id
    with pytest.raises(OperationalError, match="readonly"):
        reader.store(chain(2, 1))  # mode=ro reached SQLite: the reader cannot write
    assert [w.id for w in writer.retrieve_by_application("app")] == [workflow.id]


@pytest.mark.parametrize("dialect", ["sqlite_file"])
def test_sqlite_timeout_on_the_url_wins_over_the_profiles_busy_timeout(dialect: str, tmp_path: Path) -> None:
    path = tmp_path / "timeouts.db"
    default = SqlWorkflowStore(f"sqlite:///{path}", create_tables=True)
    given = SqlWorkflowStore(f"sqlite:///{path}?timeout=3")
    query = "SELECT * FROM pragma_busy_timeout, pragma_foreign_keys, pragma_journal_mode"

    busy, foreign_keys, journal = _read(given.engine, query)

    assert busy == 3000  # the URL's 3 s
    assert (foreign_keys, journal) == (1, "wal")  # the profile's own pragmas, kept
    assert _read(default.engine, query)[0] == int(engine_state(default.engine).bounds.attempt * 1000)
