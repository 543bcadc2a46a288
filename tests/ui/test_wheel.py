"""The wheel carries the dashboard: its templates, scripts and the vendored dagre are package data,
so ``pip install 'stabilize-store[ui]'`` then ``stabilize ui`` works outside the source tree."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.cli.helpers import outside_env
from tests.ui.conftest import ROOT
from tests.ui.helpers import get, stabilize_ui

STATIC = ROOT / "stabilize" / "ui" / "static"
ASSETS = [
    "stabilize/ui/templates/base.html",
    "stabilize/ui/templates/run.html",
    "stabilize/ui/static/dag.js",
    "stabilize/ui/static/run.js",
    "stabilize/ui/static/app.css",
    "stabilize/ui/static/vendor/dagre.min.js",
    "stabilize/ui/static/vendor/dagre.LICENSE.txt",
]


# One test, so the wheel is built once whichever xdist worker runs it.
def test_the_wheel_serves_the_dashboard_outside_the_source_tree(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)]
    subprocess.run(build, check=True, capture_output=True)
    wheel = next(dist.glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert set(ASSETS) <= names, set(ASSETS) - names
        shipped = archive.read("stabilize/ui/static/vendor/dagre.min.js")
    assert shipped == (STATIC / "vendor" / "dagre.min.js").read_bytes()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[ui]"]
    subprocess.run(pip, check=True, capture_output=True, env=outside_env())
    work = tmp_path / "elsewhere"
    work.mkdir()
    program = venv / "bin" / "stabilize"
    database = f"sqlite:///{work / 'app.db'}"
    subprocess.run(
        [str(program), "--url", database, "db", "upgrade"],
        check=True,
        capture_output=True,
        cwd=work,
        env=outside_env(),
    )
    with stabilize_ui(
        "--url", database, "ui", "--port", "0", cwd=work, program=program, env=outside_env()
    ) as ui:
        status, page = get(ui.base + "/runs")
        assert status == 200 and "No runs match." in page
        status, script = get(ui.base + "/static/vendor/dagre.min.js")
        assert status == 200 and script.encode() == shipped
        assert get(ui.base + "/static/dag.js")[0] == 200
        code, _ = ui.stop()
    assert code == 130
