"""The demo interrupted by Ctrl-C (SIGINT) stops its workers cleanly, pauses the run and says how
to go on; ``demo --resume`` then runs it to completion, every task's effect exactly once. A cancel
from another terminal stops a running demo too."""

from __future__ import annotations

import signal
import subprocess

import pytest

from stabilize.cli.errors import ExitCode
from stabilize.models import WorkflowStatus
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.sql import SqlQueue
from tests.cli.helpers import SCRIPT, clean_env, run
from tests.conftest import FILE_OR_SERVER_DIALECTS

pytestmark = pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS)

STAGES = 40
#: A run that lasts several times longer (10-30 s under load) than starting a second ``stabilize``
#: process takes (3-5 s), so ``runs cancel`` meets it running (at 40 stages it once came too late).
LONG_RUN_STAGES = 100


def start_demo(url: str, stages: int = STAGES) -> tuple[subprocess.Popen[str], str]:
    """A demo run in the background, once its first stage has finished; and its workflow id."""
    process = subprocess.Popen(
        [str(SCRIPT), "--url", url, "demo", "--workers", "2", "--stages", str(stages)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert process.stdout is not None
    submitted = process.stdout.readline()
    assert submitted.startswith("submitted workflow "), submitted
    for line in process.stdout:  # outside a terminal the demo prints a line per finished stage
        if line.startswith("stage "):
            break
    return process, submitted.split()[2]


def test_sigint_stops_cleanly_and_the_run_resumes_to_completion(url: str, store: SqlWorkflowStore) -> None:
    process, workflow_id = start_demo(url)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)

    assert process.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err and "Aborted" not in err and "KeyboardInterrupt" not in err
    assert f"demo --resume {workflow_id}" in err and f"runs cancel {workflow_id}" in err
    interrupted = store.retrieve(workflow_id)
    assert interrupted.status is WorkflowStatus.PAUSED
    assert not all(s.status.is_complete for s in interrupted.top_level_stages())
    assert SqlQueue(url).stats().locked == 0  # each worker finished its step and acked it

    resumed = run(url, "demo", "--resume", workflow_id)
    assert resumed.code == 0, resumed.err
    assert f"run {workflow_id}: continuing" in resumed.out
    done = store.retrieve(workflow_id)
    assert done.status is WorkflowStatus.SUCCEEDED and done.paused and done.paused.resume_time
    merged = store.get_merged_ancestor_outputs(workflow_id, "combine")
    expected = ["seed", *(f"work-{i}:seed" for i in range(1, STAGES - 1))]
    assert sorted(merged["items"]) == sorted(expected)  # each task's output once, none lost


def test_a_cancel_from_elsewhere_stops_a_running_demo(url: str, store: SqlWorkflowStore) -> None:
    process, workflow_id = start_demo(url, LONG_RUN_STAGES)
    canceled = run(url, "runs", "cancel", workflow_id, "--reason", "enough")
    _, err = process.communicate(timeout=120)

    assert canceled.code == 0, canceled.err
    assert process.returncode == ExitCode.FAILURE, err
    assert "was canceled by" in err or "ended CANCELED" in err
    assert "Traceback" not in err
    ended = store.retrieve_execution_summary(workflow_id)
    assert ended.status is WorkflowStatus.CANCELED and ended.cancellation_reason == "enough"
