"""The built wheel carries the migrations: installed in a fresh venv and run outside the source
tree, ``create_tables=True`` migrates a new SQLite file and a workflow round-trips."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.cli.helpers import outside_env

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import stabilize, sys
    from pathlib import Path
    assert "site-packages" in stabilize.__file__, stabilize.__file__
    from stabilize.models import StageExecution, Workflow
    from stabilize.persistence import create_repository
    store = create_repository("sqlite:///x.db", create_tables=True)
    workflow = Workflow.create("app", "wheel", [StageExecution.create("t", "A", "a")])
    store.store(workflow)
    print(store.retrieve(workflow.id).stages[0].ref_id)
    """
)


def test_wheel_installs_and_migrates_outside_the_source_tree(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        env=outside_env(),
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    result = subprocess.run(
        [str(python), "-c", SCRIPT], cwd=work, check=True, capture_output=True, text=True, env=outside_env()
    )
    assert result.stdout.strip() == "a"
    assert (work / "x.db").exists()
