"""Safe migrations (issue #6): processes that upgrade one database at once end with one schema.

Every replica of a deployment may start with ``create_tables=True`` (or run ``stabilize db
upgrade`` / ``alembic upgrade head``) at the same moment. The dialect profile's migration lock,
taken before Alembic reads the version table, makes them migrate one after the other: the first
builds the schema, the others find it at head and do nothing.

``WORKERS`` spawned processes open ``ROUNDS`` fresh databases; before each round they meet at a
barrier, so all of them start upgrading the same empty database together. Each worker uses a
different entry point per round: ``migrate.upgrade``, ``SqlWorkflowStore(create_tables=True)``,
the ``alembic`` command line (its own engine in ``migrations/env.py``) and ``stabilize db
upgrade``. Also here: a database behind head is refused by a store opened without
``create_tables``, with a message that names the upgrade command.
"""

from __future__ import annotations

import gc
import os
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, func, inspect, select, table, text
from sqlalchemy.pool import NullPool

from stabilize.errors import SchemaError
from stabilize.persistence.sql.engine import engine_profile, get_engine, install_profile
from stabilize.persistence.sql.migrate import check, current, head, upgrade
from stabilize.persistence.sql.rows import Base
from stabilize.persistence.sql.store import SqlWorkflowStore
from tests.conftest import FILE_OR_SERVER_DIALECTS
from tests.processes import run_together

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_TABLES = {t.name for t in Base.metadata.sorted_tables}
WORKERS = 4
ROUNDS = 3
ENTRY_POINTS = ["migrate.upgrade", "create_tables", "alembic", "stabilize db upgrade"]
#: Generous: a barrier that a crashed worker never reaches fails the round instead of hanging.
BARRIER_TIMEOUT = 120.0


# -- the worker process ------------------------------------------------------------------------


def _upgrade_by(entry_point: str, url: str) -> None:
    if entry_point == "migrate.upgrade":
        upgrade(get_engine(url))
    elif entry_point == "create_tables":
        SqlWorkflowStore(url, create_tables=True)
    elif entry_point == "alembic":
        from alembic.config import main as alembic_main

        alembic_main(argv=["-c", str(REPO_ROOT / "alembic.ini"), "-x", f"url={url}", "upgrade", "head"])
    else:
        import stabilize.cli.main  # noqa: F401 - registers the subcommands
        from stabilize.cli.app import cli

        cli.main(["--url", url, "db", "upgrade"], prog_name="stabilize", standalone_mode=False)


def upgrade_worker(index: int, urls: list[str], barrier: Any, results: Any) -> None:
    """Upgrade each database in turn, starting together with the other workers each time."""
    os.chdir(REPO_ROOT)
    for round_number, url in enumerate(urls):
        entry_point = ENTRY_POINTS[(index + round_number) % len(ENTRY_POINTS)]
        try:
            barrier.wait(BARRIER_TIMEOUT)
            _upgrade_by(entry_point, url)
            results.put((round_number, index, entry_point, None))
        except BaseException:
            results.put((round_number, index, entry_point, traceback.format_exc()))
    from stabilize.persistence.sql.engine import dispose_engines

    dispose_engines()


# -- checks ------------------------------------------------------------------------------------


def version_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(table("alembic_version"))).scalar_one()
        )


def assert_one_schema_at_head(url: str) -> None:
    engine = get_engine(url)
    assert current(engine) == head()
    assert version_rows(engine) == 1  # one version row: no second migrator recorded a second head
    assert set(inspect(engine).get_table_names()) == MODEL_TABLES | {"alembic_version"}
    check(engine)  # no drift: every table, column and index exists exactly as the models say


# -- concurrent upgrades -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS)
def test_concurrent_upgrades_end_with_one_schema_at_head(fresh_url: Callable[[], str]) -> None:
    urls = [fresh_url() for _ in range(ROUNDS)]
    outcomes = run_together(upgrade_worker, [(i, urls) for i in range(WORKERS)], results_each=ROUNDS)

    failures = [f"round {r}, worker {i} ({how}):\n{error}" for r, i, how, error in outcomes if error]
    assert not failures, "\n".join(failures)
    assert {(r, how) for r, _, how, _ in outcomes} == {
        (r, how) for r in range(ROUNDS) for how in ENTRY_POINTS
    }  # every entry point raced in every round
    for url in urls:
        assert_one_schema_at_head(url)


# -- the lock itself -------------------------------------------------------------------------------


@contextmanager
def lock_held_elsewhere(engine: Engine) -> Iterator[None]:
    """The migration lock, held by another connection (session) for the block."""
    with engine.connect() as connection, engine_profile(engine).migration_lock(connection):
        yield


@contextmanager
def lock_timeout(engine: Engine, seconds: float) -> Iterator[None]:
    profile = engine_profile(engine)
    saved = profile.migration_lock_timeout
    profile.migration_lock_timeout = seconds
    try:
        yield
    finally:
        profile.migration_lock_timeout = saved


@pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS)
def test_a_migrator_that_cannot_get_the_lock_fails_clearly_and_changes_nothing(
    fresh_url: Callable[[], str],
) -> None:
    engine = get_engine(fresh_url())
    refused = pytest.raises(SchemaError, match="could not take the migration lock")
    with lock_held_elsewhere(engine), lock_timeout(engine, 0.001), refused:
        upgrade(engine)
    assert current(engine) is None
    assert set(inspect(engine).get_table_names()) - {"alembic_version"} == set()

    upgrade(engine)  # released: the next migrator gets it at once
    assert_one_schema_at_head(engine.url.render_as_string(hide_password=False))


@pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS)
def test_the_lock_is_released_when_a_migration_fails(fresh_url: Callable[[], str]) -> None:
    engine = get_engine(fresh_url())
    with pytest.raises(CommandError):
        upgrade(engine, "no-such-revision")
    with lock_timeout(engine, 0.001):  # would fail at once if the failed run still held it
        upgrade(engine)
    assert current(engine) == head()


def test_the_lock_needs_a_connection_outside_a_transaction(url: str) -> None:
    engine = get_engine(url)
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        lock = engine_profile(engine).migration_lock(connection)
        with pytest.raises(RuntimeError, match="outside a transaction"), lock:
            pass  # pragma: no cover - never entered


# -- a store on a database behind head -------------------------------------------------------------


def test_a_store_on_an_empty_database_asks_for_the_upgrade(fresh_url: Callable[[], str]) -> None:
    url = fresh_url()
    with pytest.raises(SchemaError) as caught:
        SqlWorkflowStore(url)
    message = str(caught.value)
    assert "none (empty database)" in message
    assert f"needs {head()}" in message
    assert "stabilize db upgrade" in message and "create_tables=True" in message
    assert set(inspect(get_engine(url)).get_table_names()) == set()  # nothing was created


def test_a_store_on_an_older_revision_asks_for_the_upgrade(fresh_url: Callable[[], str]) -> None:
    url = fresh_url()
    engine = get_engine(url)
    upgrade(engine, "0001")
    assert current(engine) == "0001" != head()

    with pytest.raises(
        SchemaError, match=rf"at revision 0001, this code needs {head()}: run `stabilize db upgrade`"
    ):
        SqlWorkflowStore(url)
    assert current(engine) == "0001"  # refused, not migrated behind the user's back


def test_create_tables_upgrades_an_older_revision(fresh_url: Callable[[], str]) -> None:
    url = fresh_url()
    engine = get_engine(url)
    upgrade(engine, "0001")

    SqlWorkflowStore(url, create_tables=True)

    assert current(engine) == head()
    check(engine)
    SqlWorkflowStore(url)  # now at head: opens without create_tables


# -- the plain alembic command's own engines ----------------------------------------------------------


@pytest.mark.parametrize("dialect", ["sqlite_file"])
def test_every_new_engine_gets_the_profile_hooks(fresh_url: Callable[[], str]) -> None:
    """``migrations/env.py`` builds (and drops) an engine per ``alembic`` run; the SQLite lock
    relies on the profile's BEGIN hook. A new engine must get its hooks even when it reuses the
    memory (and so the ``id()``) of a collected one."""
    url = fresh_url()
    for _ in range(30):
        engine = create_engine(url, poolclass=NullPool)
        install_profile(engine)
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # the connect hook ran
        engine.dispose()
        del engine
        gc.collect()
