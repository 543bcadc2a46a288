"""Running ``stabilize`` as a user runs it, and workflows whose names are hard to print.

A subprocess per command for the file and server dialects, with no terminal (stdin is
/dev/null, stdout and stderr are pipes) unless a test asks for one; in-process for the
in-memory database, which no other process can open.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from stabilize.cli.main import cli
from stabilize.models import StageExecution, SyntheticStageOwner, TaskExecution, Workflow, WorkflowStatus
from stabilize.persistence.sql.dialects.sqlite import is_memory
from stabilize.persistence.sql.engine import normalize_url
from stabilize.persistence.sql.store import SqlWorkflowStore

SCRIPT = Path(sys.executable).parent / "stabilize"

#: Names that are Rich markup, quotes, newlines and the special characters of DOT and Mermaid.
NASTY_NAMES = [
    "Fix [/] bracket",
    "Deploy [prod] to eu-west",
    "[bold]not bold[/bold]",
    'say "hi" <b>now</b> & #quot; `tick`',
    "two\nlines \\n back\\slash",
]


@dataclass
class Result:
    code: int
    out: str
    err: str


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without STABILIZE_DATABASE_URL (tests say which database), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "STABILIZE_DATABASE_URL"}
    return {**env, **extra}


def outside_env(**extra: str) -> dict[str, str]:
    """``clean_env`` without PYTHONPATH, for a venv the wheel is installed into: with this source
    tree (and the egg-info a build leaves in it) on the path, pip takes the package as installed
    and skips it, and the installed programs would import the tree's code instead of the wheel's."""
    env = clean_env(**extra)
    env.pop("PYTHONPATH", None)
    return env


def run(url: str | None, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Result:
    """``stabilize [--url URL] ARGS`` without a terminal."""
    argv = (["--url", url] if url else []) + list(args)
    if url and is_memory(normalize_url(url)):
        result = CliRunner().invoke(cli, argv)
        return Result(result.exit_code, result.stdout, result.stderr)
    done = subprocess.run(
        [str(SCRIPT), *argv],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env or clean_env(),
        cwd=cwd,
        timeout=120,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def run_at_terminal(url: str, *args: str, answer: str) -> Result:
    """``stabilize --url URL ARGS`` with a terminal as stdin, typing ``answer`` and Enter."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, (answer + "\n").encode())  # waits in the terminal until read
        done = subprocess.run(
            [str(SCRIPT), "--url", url, *args],
            stdin=terminal,
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=120,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    return Result(done.returncode, done.stdout, done.stderr)


def nasty_workflow(store: SqlWorkflowStore, application: str = "cli-nasty") -> Workflow:
    """A stored workflow whose workflow, stage and task names are ``NASTY_NAMES``, with ref ids
    that sort differently as text and as numbers (work-2 before work-10)."""
    build = StageExecution.create("build", NASTY_NAMES[0], "build")
    build.add_task(TaskExecution.create(NASTY_NAMES[0], "tasks.Compile", stage_start=True, stage_end=True))
    lint = StageExecution.create_synthetic("lint", NASTY_NAMES[2], build, SyntheticStageOwner.STAGE_BEFORE)
    work_2 = StageExecution.create("work", NASTY_NAMES[3], "work-2", requisite_stage_ref_ids={"build"})
    work_10 = StageExecution.create("work", NASTY_NAMES[4], "work-10", requisite_stage_ref_ids={"build"})
    end = StageExecution.create("end", "End", "end", requisite_stage_ref_ids={"work-10", "work-2"})
    workflow = Workflow.create(
        application, NASTY_NAMES[1], [build, lint, work_2, work_10, end], pipeline_config_id="cfg-n"
    )
    workflow.start_time = 1_700_000_000_000  # 2023-11-14T22:13:20Z
    build.status = WorkflowStatus.SUCCEEDED
    store.store(workflow)
    return workflow
