"""Real databases for every test: SQLite (file and in-memory), PostgreSQL and MariaDB.

Each test session creates its own throw-away databases on the servers and drops them at the end,
so parallel runs never collide. A server that cannot be reached is an error, never a skip: CI must
prove every dialect. The server URLs can be moved with STABILIZE_TEST_POSTGRES_URL and
STABILIZE_TEST_MYSQL_URL (admin URLs whose user may create databases).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import URL, create_engine, delete, text
from sqlalchemy.engine import make_url

from stabilize.persistence.sql.engine import get_engine, normalize_url
from stabilize.persistence.sql.migrate import upgrade
from stabilize.persistence.sql.rows import Base
from stabilize.persistence.sql.store import SqlWorkflowStore

POSTGRES_ADMIN = os.environ.get("STABILIZE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN = os.environ.get("STABILIZE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")

DIALECTS = ["sqlite_file", "sqlite_memory", "postgresql", "mariadb"]
#: The dialects with a server process of their own (for multi-process and restart tests).
FILE_OR_SERVER_DIALECTS = ["sqlite_file", "postgresql", "mariadb"]


class ThrowAwayDatabases:
    """Creates empty databases on demand for one test session and drops them all at its end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.created: list[tuple[str, str]] = []

    def new(self, dialect: str) -> str:
        name = f"stab_{uuid.uuid4().hex[:12]}"
        if dialect == "sqlite_file":
            return f"sqlite:///{self.tmp / (name + '.db')}"
        if dialect == "sqlite_memory":
            return f"sqlite:///file:{name}?mode=memory&cache=shared&uri=true"
        admin = POSTGRES_ADMIN if dialect == "postgresql" else MYSQL_ADMIN
        self._admin(admin, f"CREATE DATABASE {name}")
        self.created.append((admin, name))
        return normalize_url(admin).set(database=name).render_as_string(hide_password=False)

    @staticmethod
    def _admin(admin: str, statement: str) -> None:
        try:
            engine = create_engine(normalize_url(admin), isolation_level="AUTOCOMMIT")
            with engine.connect() as connection:
                connection.execute(text(statement))  # a generated identifier, never user input
            engine.dispose()
        except Exception as exc:  # turned into a clear failure below
            pytest.fail(
                f"database server for {make_url(normalize_url(admin)).render_as_string()} is unreachable "
                f"or refused {statement!r}: {exc}. Start it (see DEVELOPERS.md); CI never skips a dialect.",
                pytrace=False,
            )

    def drop_all(self) -> None:
        for admin, name in self.created:
            self._admin(admin, f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowAwayDatabases]:
    dbs = ThrowAwayDatabases(tmp_path_factory.mktemp("sqlite"))
    yield dbs
    from stabilize.persistence.sql.engine import dispose_engines

    dispose_engines()
    dbs.drop_all()


@pytest.fixture(scope="session")
def migrated_urls(databases: ThrowAwayDatabases) -> dict[str, str]:
    """One database per dialect, built from the migrations (never ``create_all``)."""
    urls: dict[str, str] = {}
    for dialect in DIALECTS:
        url = databases.new(dialect) if dialect != "sqlite_memory" else "sqlite:///:memory:"
        upgrade(get_engine(url))
        urls[dialect] = url
    return urls


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(dialect: str, migrated_urls: dict[str, str]) -> str:
    """The dialect's migrated database, emptied before the test."""
    target = migrated_urls[dialect]
    engine = get_engine(target)
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(delete(table))
    return target


@pytest.fixture
def store(url: str) -> SqlWorkflowStore:
    return SqlWorkflowStore(url)


@pytest.fixture
def fresh_url(dialect: str, databases: ThrowAwayDatabases) -> Callable[[], str]:
    """A factory of empty, unmigrated databases of the test's dialect."""
    return lambda: databases.new(dialect)


def url_of(value: str | URL) -> URL:
    return normalize_url(value)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Per-dialect counts, so a run shows that every dialect really ran."""
    counts: dict[str, dict[str, int]] = {d: {} for d in DIALECTS}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            for dialect in DIALECTS:
                if f"[{dialect}" in nodeid or f"-{dialect}]" in nodeid or f"-{dialect}-" in nodeid:
                    counts[dialect][outcome] = counts[dialect].get(outcome, 0) + 1
    terminalreporter.section("tests per dialect")
    for dialect, by_outcome in counts.items():
        shown = ", ".join(f"{n} {o}" for o, n in sorted(by_outcome.items())) or "none ran"
        terminalreporter.write_line(f"{dialect:14} {shown}")
