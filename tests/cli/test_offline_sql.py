"""``stabilize db ... --sql``: the SQL a migration would run, without connecting; for a
``mysql://`` URL it applies on MariaDB (and, by the servers' executable comments, on MySQL 8)."""

from __future__ import annotations

import os
import subprocess

from stabilize.cli.errors import ExitCode
from stabilize.persistence.sql.engine import get_engine, normalize_url
from stabilize.persistence.sql.migrate import current, head
from tests.cli.helpers import run
from tests.conftest import ThrowAwayDatabases

NOWHERE = "postgresql://deploy:secret@127.0.0.1:1/app"  # offline: nothing listens there


def test_offline_sql_of_a_mysql_url_applies_on_mariadb(databases: ThrowAwayDatabases) -> None:
    target = normalize_url(databases.new("mariadb"))
    as_mysql = target.set(drivername="mysql").render_as_string(hide_password=False)
    offline = run(as_mysql.split("?")[0], "db", "upgrade", "--sql")
    assert offline.code == 0, offline.err
    assert "/*M!100202 utf8mb4_nopad_bin */" in offline.out and "/*!80000 utf8mb4_0900_bin */" in offline.out

    client = [  # the MariaDB client, as a DBA applies a reviewed script
        "mariadb",
        "--protocol=tcp",
        f"--host={target.host}",
        f"--port={target.port or 3306}",
        f"--user={target.username}",
        str(target.database),
    ]
    env = {**os.environ, "MYSQL_PWD": target.password or ""}
    applied = subprocess.run(client, input=offline.out, capture_output=True, text=True, env=env, timeout=120)
    assert applied.returncode == 0, applied.stderr

    url = target.render_as_string(hide_password=False)
    assert current(get_engine(url)) == head()
    check = run(url, "db", "check")  # the offline schema is the online one: no drift
    assert check.code == 0, check.err


def test_offline_downgrade_stamp_and_ranges() -> None:
    down = run(NOWHERE, "db", "downgrade", "base", "--sql")  # from head by default; never asks
    assert down.code == 0, down.err
    assert "DROP TABLE workflows" in down.out and "DELETE FROM alembic_version" in down.out
    assert "database (offline, SQL for its dialect): postgresql+psycopg://deploy:***@" in down.err

    stamp = run(NOWHERE, "db", "stamp", "head", "--sql")
    assert stamp.code == 0 and "INSERT INTO alembic_version" in stamp.out and f"'{head()}'" in stamp.out

    step = run(NOWHERE, "db", "upgrade", "--sql", "--from", "0001")
    assert step.code == 0 and "CREATE TABLE workflows" not in step.out
    assert "ix_queue_messages_deliver_at_id" in step.out and "CREATE TABLE stage_claims" in step.out
    assert "secret" not in down.out + down.err + stamp.out + step.out


def test_online_commands_do_not_pretend_offline() -> None:
    result = run(NOWHERE, "db", "upgrade")
    assert result.code == ExitCode.UNREACHABLE and "secret" not in result.err
