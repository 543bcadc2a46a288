"""Failures read the same everywhere: one ``error:`` line, the right exit code, the URL shown
without its password and the driver's message untouched (even when the password is a piece of
the host name); -h, --version; and no SQLite file appears unless a schema command makes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from stabilize.cli.errors import ExitCode
from stabilize.persistence.sql.engine import normalize_url
from tests.cli.helpers import clean_env, run
from tests.conftest import MYSQL_ADMIN


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("password", ["1", "127", "0.0"])
def test_a_password_inside_the_host_name_leaves_the_message_whole(password: str) -> None:
    result = run(f"postgresql://someone:{password}@127.0.0.1:1/nowhere", "runs", "list")
    assert result.code == ExitCode.UNREACHABLE
    line = one_error_line(result.err)
    assert "postgresql+psycopg://someone:***@127.0.0.1:1/nowhere" in line
    assert 'connection to server at "127.0.0.1", port 1 failed' in line


def test_a_wrong_mariadb_password_equal_to_the_user_name_is_not_blanked_out() -> None:
    url = normalize_url(MYSQL_ADMIN).set(password="root").render_as_string(hide_password=False)
    result = run(url, "runs", "list")
    assert result.code == ExitCode.FAILURE
    line = one_error_line(result.err)
    assert "Access denied for user 'root'" in line and ":***@" in line


def test_a_scheme_typo_names_the_field() -> None:
    result = run("postgersql://u:secret@127.0.0.1/db", "runs", "list")
    assert result.code == ExitCode.USAGE
    line = one_error_line(result.err)
    assert line.startswith("error: --url: unknown database scheme 'postgersql'") and "secret" not in line
    assert "Can't load plugin" not in result.err

    from_env = run(None, "runs", "list", env=clean_env(STABILIZE_DATABASE_URL="mysqll://x@h/db"))
    assert from_env.code == ExitCode.USAGE
    assert one_error_line(from_env.err).startswith("error: STABILIZE_DATABASE_URL: unknown database scheme")


def test_usage_errors_are_one_line_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    for args in (["runs", "lst"], ["runs", "list", "--limit", "many"], ["runs", "show"], ["--nope"]):
        result = run(url, *args)
        assert result.code == ExitCode.USAGE, args
        assert one_error_line(result.err).endswith("--help')")


def test_help_and_version() -> None:
    short, long = run(None, "-h"), run(None, "--help")
    assert short.code == long.code == 0 and short.out == long.out
    assert "Exit codes:" in short.out and "130" in short.out and "_STABILIZE_COMPLETE" in short.out
    assert "3 behind" in run(None, "db", "check", "-h").out.replace("  ", " ")
    version = run(None, "--version")
    assert version.code == 0 and version.out.startswith("stabilize, version ")


def test_without_a_url_nothing_is_created_quietly(tmp_path: Path) -> None:
    listing = run(None, "runs", "list", cwd=tmp_path)
    assert listing.code == ExitCode.UNREACHABLE
    assert "--url and STABILIZE_DATABASE_URL are unset" in one_error_line(listing.err)
    upgrade = run(None, "db", "upgrade", cwd=tmp_path)  # no terminal: a CI job with the variable unset
    assert upgrade.code == ExitCode.USAGE and "pass --url" in one_error_line(upgrade.err)
    assert list(tmp_path.iterdir()) == []

    named = run("sqlite:///stabilize.db", "db", "upgrade", cwd=tmp_path)
    assert named.code == 0, named.err
    assert "creating the SQLite database file stabilize.db" in named.err
    assert (tmp_path / "stabilize.db").exists()
    assert run(None, "runs", "list", cwd=tmp_path).code == 0  # the default, now that it exists
