"""Migrations from the wheel alone: installed in a fresh venv and run outside the source tree,
Alembic's own command works with the ini the package ships (and with an ini that has no logging
sections), and ``stabilize db`` upgrades, stamps, checks and prints offline SQL."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.helpers import clean_env

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
            env=clean_env(),
            timeout=300,
        )
        assert done.returncode == 0, f"{program} {args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    @property
    def packaged_ini(self) -> Path:
        code = "from stabilize.persistence.sql.migrate import ALEMBIC_INI; print(ALEMBIC_INI)"
        return Path(self.run("python", "-c", code).stdout.strip())


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    tmp = tmp_path_factory.mktemp("wheel-cli")
    dist = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[cli]"]
    subprocess.run(pip, check=True, capture_output=True)
    work = tmp / "elsewhere"
    work.mkdir()
    yield Installed(venv / "bin", work)


def test_alembic_runs_from_the_packaged_ini(installed: Installed) -> None:
    ini = installed.packaged_ini
    assert "site-packages" in str(ini) and ini.is_file()
    url = f"url=sqlite:///{installed.work / 'alembic.db'}"
    installed.run("alembic", "-c", str(ini), "-x", url, "upgrade", "head")
    shown = installed.run("alembic", "-c", str(ini), "-x", url, "current")
    assert "(head)" in shown.stdout


def test_alembic_runs_with_an_ini_without_logging_sections(installed: Installed) -> None:
    minimal = installed.work / "minimal.ini"
    minimal.write_text(f"[alembic]\nscript_location = {installed.packaged_ini.parent}\n")
    url = f"url=sqlite:///{installed.work / 'minimal.db'}"
    installed.run("alembic", "-c", str(minimal), "-x", url, "upgrade", "head")  # once: KeyError 'formatters'
    offline = installed.run(
        "alembic", "-c", str(minimal), "-x", "url=mysql://u@h/db", "upgrade", "head", "--sql"
    )
    assert "CREATE TABLE workflows" in offline.stdout


def test_stabilize_db_from_the_wheel(installed: Installed) -> None:
    url = f"sqlite:///{installed.work / 'cli.db'}"
    heads = json.loads(installed.run("stabilize", "db", "heads", "--format", "json").stdout)
    assert len(heads) == 1
    installed.run("stabilize", "--url", url, "db", "stamp", "0001")
    assert (
        json.loads(installed.run("stabilize", "--url", url, "db", "current", "--format", "json").stdout)[
            "current"
        ]
        == "0001"
    )
    installed.run("stabilize", "--url", url, "db", "stamp", "base")
    installed.run("stabilize", "--url", url, "db", "upgrade")
    assert "matches the models" in installed.run("stabilize", "--url", url, "db", "check").stdout
    offline = installed.run("stabilize", "--url", "postgresql://deploy@db:5432/app", "db", "upgrade", "--sql")
    assert "JSONB" in offline.stdout and "alembic_version" in offline.stdout


def test_the_license_is_an_spdx_expression(installed: Installed) -> None:
    code = "from importlib.metadata import metadata; print(metadata('stabilize-store')['License-Expression'])"
    assert installed.run("python", "-c", code).stdout.strip() == "Apache-2.0"
