"""Migrations from the wheel alone: installed in a fresh venv and run outside the source tree,
Alembic's own command works with the ini the package ships (and with an ini that has no logging
sections), and ``stabilize db`` upgrades, stamps, checks and prints offline SQL."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.helpers import outside_env

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Installed:
    bin: Path
    work: Path

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.bin / program), *args],
            cwd=self.work,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=outside_env(),
            timeout=300,
        )
        assert done.returncode == 0, f"{program} {args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    @property
    def packaged_ini(self) -> Path:
        code = "from stabilize.persistence.sql.migrate import ALEMBIC_INI; print(ALEMBIC_INI)"
        return Path(self.run("python", "-c", code).stdout.strip())


@pytest.fixture
def installed(tmp_path: Path) -> Installed:
    """The wheel built from this tree, installed with its ``cli`` extra in a fresh venv."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[cli]"]
    subprocess.run(pip, check=True, capture_output=True, env=outside_env())
    work = tmp_path / "elsewhere"
    work.mkdir()
    return Installed(venv / "bin", work)


# One test, so the wheel is built once whichever xdist worker runs it.
def test_migrations_from_the_wheel_alone(installed: Installed) -> None:
    # Alembic's own command, with the ini the package ships.
    ini = installed.packaged_ini
    assert "site-packages" in str(ini) and ini.is_file()
    url = f"url=sqlite:///{installed.work / 'alembic.db'}"
    installed.run("alembic", "-c", str(ini), "-x", url, "upgrade", "head")
    assert "(head)" in installed.run("alembic", "-c", str(ini), "-x", url, "current").stdout

    # An ini without logging sections (this once failed with KeyError: 'formatters').
    minimal = installed.work / "minimal.ini"
    minimal.write_text(f"[alembic]\nscript_location = {ini.parent}\n")
    url = f"url=sqlite:///{installed.work / 'minimal.db'}"
    installed.run("alembic", "-c", str(minimal), "-x", url, "upgrade", "head")
    offline = installed.run(
        "alembic", "-c", str(minimal), "-x", "url=mysql://u@h/db", "upgrade", "head", "--sql"
    )
    assert "CREATE TABLE workflows" in offline.stdout

    # stabilize db: heads, stamp, upgrade, check, offline SQL.
    url = f"sqlite:///{installed.work / 'cli.db'}"
    heads = json.loads(installed.run("stabilize", "db", "heads", "--format", "json").stdout)
    assert len(heads) == 1
    installed.run("stabilize", "--url", url, "db", "stamp", "0001")
    shown = json.loads(installed.run("stabilize", "--url", url, "db", "current", "--format", "json").stdout)
    assert shown["current"] == "0001" and shown["state"] == "behind"
    installed.run("stabilize", "--url", url, "db", "stamp", "base")
    installed.run("stabilize", "--url", url, "db", "upgrade")
    assert "matches the models" in installed.run("stabilize", "--url", url, "db", "check").stdout
    offline = installed.run("stabilize", "--url", "postgresql://deploy@db:5432/app", "db", "upgrade", "--sql")
    assert "JSONB" in offline.stdout and "alembic_version" in offline.stdout

    # The license as an SPDX expression (the table form is deprecated).
    code = "from importlib.metadata import metadata; print(metadata('stabilize-store')['License-Expression'])"
    assert installed.run("python", "-c", code).stdout.strip() == "Apache-2.0"
