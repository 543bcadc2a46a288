"""Throw-away databases for the benchmarks: a SQLite file, or a PostgreSQL / MariaDB database
created on the local server (the test suite's admin URLs) and dropped afterwards."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

POSTGRES_ADMIN = os.environ.get("STABILIZE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN = os.environ.get("STABILIZE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


def _admin(admin_url: str, statement: str) -> None:
    from sqlalchemy import create_engine, text

    from stabilize.persistence.sql.engine import normalize_url

    engine = create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))  # a generated identifier, never user input
    finally:
        engine.dispose()


def server_up(admin_url: str) -> bool:
    try:
        _admin(admin_url, "SELECT 1")
    except Exception as exc:
        print(f"  skipped: {admin_url} unreachable ({type(exc).__name__})", flush=True)
        return False
    return True


class Database:
    """A fresh database for one side and round; dropped (or deleted) on exit."""

    def __init__(self, dialect: str, tmp: Path) -> None:
        self.dialect = dialect
        self.name = f"stab_bench_{uuid.uuid4().hex[:10]}"
        self.admin = {"postgresql": POSTGRES_ADMIN, "mysql": MYSQL_ADMIN}.get(dialect)
        if self.admin is None:
            self.url = f"sqlite:///{tmp / (self.name + '.db')}"
        else:
            from stabilize.persistence.sql.engine import normalize_url

            _admin(self.admin, f"CREATE DATABASE {self.name}")
            if dialect == "postgresql":
                # Commits do not wait for the WAL flush (both sides alike): the bench measures the
                # libraries, not this machine's fsync. SQLite runs WAL with synchronous=NORMAL,
                # which does not sync on commit either. MariaDB keeps the server's setting.
                _admin(self.admin, f"ALTER DATABASE {self.name} SET synchronous_commit = off")
            url = normalize_url(self.admin).set(database=self.name)
            if dialect == "postgresql":  # a libpq URL: upstream's psycopg pool takes no driver suffix
                url = url.set(drivername="postgresql")
            self.url = url.render_as_string(hide_password=False)

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        if self.admin is not None:
            drop = f"DROP DATABASE IF EXISTS {self.name}"
            if self.dialect == "postgresql":
                drop += " WITH (FORCE)"
            _admin(self.admin, drop)
