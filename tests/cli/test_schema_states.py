"""Behind, ahead, drifted, unreachable: each schema state has its own advice and exit code, on
every dialect (``db check``, ``health``, and the commands that would make things worse)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from stabilize.cli.errors import ExitCode
from stabilize.persistence.sql.engine import get_engine
from stabilize.persistence.sql.migrate import current, head, upgrade
from tests.cli.helpers import run
from tests.conftest import FILE_OR_SERVER_DIALECTS

on_every_dialect = pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS)

FUTURE = "9999_newer_release"


@on_every_dialect
def test_behind_head_says_run_the_upgrade(fresh_url: Callable[[], str]) -> None:
    url = fresh_url()
    upgrade(get_engine(url), "0001")

    check = run(url, "db", "check")
    assert check.code == ExitCode.BEHIND, check.err
    assert "run `stabilize db upgrade`" in check.err and check.err.count("error:") == 1
    assert json.loads(run(url, "db", "check", "--format", "json").out)["state"] == "behind"
    health = run(url, "health")
    assert health.code == ExitCode.BEHIND and "UNHEALTHY" in health.out
    listing = run(url, "runs", "list")
    assert listing.code == ExitCode.BEHIND and "run `stabilize db upgrade`" in listing.err

    upgraded = run(url, "db", "upgrade")
    assert upgraded.code == 0 and f"upgraded from 0001 to {head()}" in upgraded.out
    assert run(url, "db", "check").code == 0


@on_every_dialect
def test_ahead_of_head_says_upgrade_the_code(fresh_url: Callable[[], str]) -> None:
    url = fresh_url()
    engine = get_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": FUTURE})

    check = run(url, "db", "check")
    assert check.code == ExitCode.AHEAD
    assert "upgrade the stabilize-store package" in check.err and "do not run `db upgrade`" in check.err
    health = run(url, "health", "--format", "json")
    assert health.code == 0, health.err  # an old replica's probe passes during a rolling deploy
    assert json.loads(health.out)["state"] == "ahead" and "warning: " in health.err
    for refused in (["db", "upgrade"], ["db", "downgrade", "0001", "--yes"], ["db", "reset", "--yes"]):
        result = run(url, *refused)
        assert result.code == ExitCode.AHEAD, (refused, result.err)
        assert "Can't locate revision" not in result.err and "Nothing changed" in result.err
    assert current(engine) == FUTURE
    assert run(url, "runs", "list").code == 0  # the store still works on a newer schema

    stamped = run(url, "db", "stamp", "head", "--purge")
    assert stamped.code == 0, stamped.err
    assert current(engine) == head() and run(url, "db", "check").code == 0


@on_every_dialect
def test_drift_is_named_and_exits_5(fresh_url: Callable[[], str]) -> None:
    url = fresh_url()
    engine = get_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE workflows ADD COLUMN extra INTEGER"))

    check = run(url, "db", "check", "--format", "json")
    assert check.code == ExitCode.DRIFTED
    shown = json.loads(check.out)
    assert shown["state"] == "drifted" and shown["current"] == head()
    assert shown["differences"] == ["remove_column workflows.extra"]
    assert "drift: remove_column workflows.extra" in check.err

    assert run(url, "db", "reset", "--yes").code == 0
    assert run(url, "db", "check").code == 0


@pytest.mark.parametrize(
    "unreachable",
    [
        "postgresql://health:pw@127.0.0.1:1/nowhere",
        "mysql://health:pw@127.0.0.1:1/nowhere",
        "sqlite:///{tmp}/missing.db",
    ],
)
def test_unreachable_exits_6(unreachable: str, tmp_path: Path) -> None:
    url = unreachable.format(tmp=tmp_path)
    for command in (["db", "check"], ["db", "current"], ["health"], ["runs", "list"], ["queue", "stats"]):
        result = run(url, *command)
        assert result.code == ExitCode.UNREACHABLE, (command, result.err)
        assert result.err.count("error:") <= 1 and "Traceback" not in result.err
    assert not (tmp_path / "missing.db").exists()
