"""``is_healthy()`` / ``health()`` / ``stabilize health`` tell the truth (issue #6).

Unhealthy, never an exception: the database cannot be reached, or its schema is not at this
code's head (behind it, or ahead of it after a newer release migrated it; the store still works
on a newer schema, but a probe flags the mismatch). The report also measures the queue (depth,
oldest unacked message, dead letters) with bounded queries.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

import stabilize.cli.main  # noqa: F401 - registers the subcommands
from stabilize.cli.app import cli
from stabilize.errors import DatabaseUnavailableError
from stabilize.models.ids import now_ms
from stabilize.persistence.sql.dialects.sqlite import is_memory
from stabilize.persistence.sql.engine import get_engine, normalize_url
from stabilize.persistence.sql.health import check_health, database_is_healthy
from stabilize.persistence.sql.migrate import downgrade, head, upgrade
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.messages import StartWorkflow
from stabilize.queue.sql import SqlQueue

SCRIPT = Path(sys.executable).parent / "stabilize"
PASSWORD = "pa55-w0rd"
#: Nothing listens on port 1; the SQLite file's directory does not exist.
UNREACHABLE = {
    "postgresql": f"postgresql://health:{PASSWORD}@127.0.0.1:1/nowhere",
    "mariadb": f"mysql://health:{PASSWORD}@127.0.0.1:1/nowhere",
    "sqlite": "sqlite:////nonexistent-stabilize-dir/sub/health.db",
}


# -- a live database at head ---------------------------------------------------------------------


def test_a_database_at_head_is_healthy(store: SqlWorkflowStore) -> None:
    report = store.health()

    assert store.is_healthy() is True
    assert report.healthy and report.reachable and report.at_head
    assert report.revision == report.head == head()
    assert report.schema == "at head"
    assert (report.queue_depth, report.oldest_message_age_ms, report.dead_letters) == (0, None, 0)
    assert not report.queue_depth_capped and not report.dead_letters_capped
    assert report.error is None and report.problems == []


def test_the_report_measures_the_queue(url: str, store: SqlWorkflowStore) -> None:
    queue = SqlQueue(url)
    before = now_ms()
    oldest = StartWorkflow(execution_id="oldest", created_at=before - 60_000)
    queue.push(oldest)
    queue.push(StartWorkflow(execution_id="newer", created_at=before - 1_000))
    queue.push(StartWorkflow(execution_id="later"), delay=3_600)  # not due yet: still unacked
    dead = StartWorkflow(execution_id="dead")
    queue.push(dead)
    assert queue.move_to_dlq(dead.message_id, "gave up")

    report = store.health()
    after = now_ms()

    assert report.healthy
    assert report.queue_depth == 3 and not report.queue_depth_capped
    assert report.dead_letters == 1 and not report.dead_letters_capped
    assert report.oldest_message_age_ms is not None
    assert 60_000 <= report.oldest_message_age_ms <= after - oldest.created_at


def test_counts_stop_at_the_limit(url: str, store: SqlWorkflowStore) -> None:
    queue = SqlQueue(url)
    messages = [StartWorkflow(execution_id=f"wf-{i}") for i in range(5)]
    for message in messages:
        queue.push(message)
    for message in messages[:3]:
        assert queue.move_to_dlq(message.message_id, "gave up")

    capped = check_health(store.engine, count_limit=1)
    exact = check_health(store.engine, count_limit=3)

    assert (capped.queue_depth, capped.queue_depth_capped) == (1, True)
    assert (capped.dead_letters, capped.dead_letters_capped) == (1, True)
    assert (exact.queue_depth, exact.queue_depth_capped) == (2, False)
    assert (exact.dead_letters, exact.dead_letters_capped) == (3, False)
    assert capped.healthy and exact.healthy  # a deep queue is information, not ill health


# -- schema behind (or ahead of) head ------------------------------------------------------------


def test_an_empty_database_is_unhealthy(fresh_url: Callable[[], str]) -> None:
    engine = get_engine(fresh_url())
    report = check_health(engine)

    assert database_is_healthy(engine) is False
    assert report.reachable and not report.healthy and not report.at_head
    assert report.revision is None and report.schema == "behind"
    assert report.queue_depth is None and report.dead_letters is None
    assert report.error is None
    assert report.problems == [
        f"schema at revision none (empty database), this code needs {head()}: run `stabilize db upgrade`"
    ]


def test_a_store_whose_database_falls_behind_head_turns_unhealthy(fresh_url: Callable[[], str]) -> None:
    url = fresh_url()
    store = SqlWorkflowStore(url, create_tables=True)
    assert store.is_healthy() is True

    downgrade(store.engine, "0001")  # e.g. restored from an old backup under a running service
    report = store.health()

    assert store.is_healthy() is False
    assert report.reachable and not report.healthy
    assert report.revision == "0001" and not report.at_head and report.schema == "behind"
    assert report.queue_depth == 0 and report.dead_letters == 0  # still measured: the tables exist
    assert "run `stabilize db upgrade`" in report.problems[0]

    upgrade(store.engine)
    assert store.is_healthy() is True


def test_a_database_ahead_of_head_is_reported_unhealthy(url: str, store: SqlWorkflowStore) -> None:
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'zzzz-newer'"))
    try:
        report = store.health()
        assert store.is_healthy() is False
        assert not report.healthy and report.schema == "ahead"
        assert report.revision == "zzzz-newer" and not report.at_head
    finally:
        with store.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head()})


# -- unreachable -----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", sorted(UNREACHABLE))
def test_an_unreachable_database_is_unhealthy_without_raising(target: str) -> None:
    engine = get_engine(UNREACHABLE[target])

    report = check_health(engine)

    assert database_is_healthy(engine) is False
    assert not report.reachable and not report.healthy and not report.at_head
    assert report.revision is None and report.schema is None and report.queue_depth is None
    assert report.error is not None and "\n" not in report.error
    assert report.error.startswith("OperationalError: ")
    assert PASSWORD not in report.error and PASSWORD not in report.url
    assert report.problems == [f"database unreachable: {report.error}"]
    if target != "sqlite":
        assert "***" in report.url


@pytest.mark.parametrize("target", ["postgresql", "mariadb"])
def test_an_unreachable_store_reports_through_the_store(target: str) -> None:
    unreachable = SqlWorkflowStore(UNREACHABLE[target])

    assert unreachable.is_healthy() is False
    report = unreachable.health()
    assert not report.reachable and report.error and PASSWORD not in report.error


def _everything_shown(error: BaseException) -> str:
    """The text of an error and of every error behind it, as a traceback or a log would show it."""
    shown: list[str] = []
    seen: BaseException | None = error
    while seen is not None:
        shown += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(shown)


@pytest.mark.parametrize("target", ["postgresql", "mariadb"])
def test_a_password_is_never_shown_by_errors_reprs_reports_or_logs(
    target: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = SqlWorkflowStore(UNREACHABLE[target], operation_timeout=2)
    queue = SqlQueue(UNREACHABLE[target], operation_timeout=2)

    with pytest.raises(DatabaseUnavailableError) as raised:
        store.retrieve("some-workflow")
    with pytest.raises(DatabaseUnavailableError) as pushed:
        queue.push(StartWorkflow(execution_id="queued"))
    report = store.health()

    shown = [
        _everything_shown(raised.value),
        _everything_shown(pushed.value),
        repr(store),
        repr(queue),
        report.url,
        str(report.error),
        *report.problems,
        *(record.getMessage() for record in caplog.records),
    ]
    assert all(PASSWORD not in text for text in shown), [text for text in shown if PASSWORD in text]
    assert ":***@127.0.0.1:1/" in str(raised.value)  # the URL is shown, rendered without it


@pytest.mark.parametrize("target", ["postgresql", "mariadb"])
@pytest.mark.parametrize("password", ["1", "127", "0.0"])
def test_a_password_that_is_part_of_the_address_leaves_the_message_whole(target: str, password: str) -> None:
    # Masking renders the URL without its password; it never edits text: with the password "1",
    # editing once turned "127.0.0.1" into "***27.0.0.***".
    url = normalize_url(UNREACHABLE[target]).set(password=password).render_as_string(hide_password=False)
    store = SqlWorkflowStore(url, operation_timeout=2)

    with pytest.raises(DatabaseUnavailableError) as raised:
        store.retrieve("some-workflow")
    report = store.health()

    message = str(raised.value)
    assert message.startswith("database ") and "health:***@127.0.0.1:1/nowhere" in message
    assert "127.0.0.1" in message.split(" is unavailable: ", 1)[1]  # the driver's words, unedited
    assert "health:***@127.0.0.1:1/nowhere" in report.url and repr(store).count("***") == 1
    assert report.error is not None and "127.0.0.1" in report.error and "***" not in report.error


# -- the command line ------------------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_health(url: str, *args: str) -> Result:
    """``stabilize --url URL health ARGS``: a subprocess, or in-process for an in-memory database."""
    argv = ["--url", url, "health", *args]
    if is_memory(normalize_url(url)):
        result = CliRunner().invoke(cli, argv)
        return Result(result.exit_code, result.stdout, result.stderr)
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, env=env, timeout=120)
    return Result(done.returncode, done.stdout, done.stderr)


def test_cli_health_of_a_healthy_database(url: str) -> None:
    SqlQueue(url).push(StartWorkflow(execution_id="queued"))

    result = run_health(url)

    assert result.code == 0, result.err
    assert "reachable       yes" in result.out
    assert f"{head()} (head {head()}): at head" in result.out
    assert "queue depth     1" in result.out
    assert "status          healthy" in result.out


def test_cli_health_json(url: str) -> None:
    result = run_health(url, "--format", "json")

    assert result.code == 0, result.err
    shown = json.loads(result.out)
    assert shown["healthy"] is True and shown["revision"] == head() and shown["problems"] == []
    assert shown["queue_depth"] == 0 and shown["dead_letters"] == 0


def test_cli_health_exits_3_behind_head(fresh_url: Callable[[], str]) -> None:
    url = fresh_url()
    upgrade(get_engine(url), "0001")

    result = run_health(url)

    assert result.code == 3
    assert "status          UNHEALTHY" in result.out
    assert f"0001 (head {head()}): behind" in result.out
    assert "run `stabilize db upgrade`" in result.err


@pytest.mark.parametrize("target", sorted(UNREACHABLE))
def test_cli_health_exits_6_when_unreachable_and_masks_the_password(target: str) -> None:
    result = run_health(UNREACHABLE[target], "--format", "json")

    assert result.code == 6, result.err
    shown = json.loads(result.out)
    assert shown["reachable"] is False and shown["healthy"] is False and shown["state"] == "unreachable"
    # A missing SQLite file is reported without opening it (opening would create it).
    assert shown["error"].startswith("no database at " if target == "sqlite" else "OperationalError: ")
    assert PASSWORD not in result.out + result.err
