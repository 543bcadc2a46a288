"""The import paths of CONTRACT.md section 2: code written for the Stabilize engine imports these."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PUBLIC = {
    "stabilize.models.status": ["WorkflowStatus"],
    "stabilize.models.workflow": ["Workflow", "WorkflowType", "Trigger", "PausedDetails"],
    "stabilize.models.stage": ["StageExecution", "SyntheticStageOwner"],
    "stabilize.models.task": ["TaskExecution"],
    "stabilize.persistence.store": [
        "WorkflowStore",
        "WorkflowCriteria",
        "WorkflowNotFoundError",
        "StoreTransaction",
        "NoOpTransaction",
    ],
    "stabilize.persistence": ["create_repository", "create_queue", "detect_backend"],
    "stabilize.persistence.sqlite": ["SqliteWorkflowStore"],
    "stabilize.persistence.postgres": ["PostgresWorkflowStore"],
    "stabilize.errors": ["ConcurrencyError"],
    "stabilize.queue": ["Queue", "SqliteQueue", "PostgresQueue"],
    "stabilize.queue.messages": [
        "Message",
        "StartWorkflow",
        "StartStage",
        "CompleteStage",
        "StartTask",
        "RunTask",
        "CompleteTask",
        "CompleteWorkflow",
        "CancelStage",
        "SkipStage",
    ],
    "stabilize": ["Workflow", "StageExecution", "TaskExecution", "WorkflowStatus", "create_repository"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_import_from_their_documented_paths(module: str) -> None:
    loaded = importlib.import_module(module)
    missing = [name for name in PUBLIC[module] if not hasattr(loaded, name)]
    assert missing == []


def test_dead_letter_operations_are_on_the_queue() -> None:
    from stabilize.queue import SqlQueue

    for name in ("move_to_dlq", "list_dlq", "replay_dlq", "dlq_size", "clear_dlq", "check_and_move_expired"):
        assert callable(getattr(SqlQueue, name))


def test_workflow_status_flags() -> None:
    from stabilize.models.status import WorkflowStatus

    assert WorkflowStatus.SUCCEEDED.is_complete and not WorkflowStatus.SUCCEEDED.is_halt
    assert WorkflowStatus.TERMINAL.is_complete and WorkflowStatus.TERMINAL.is_halt
    assert not WorkflowStatus.RUNNING.is_complete


def test_import_stabilize_leaves_the_command_line_out() -> None:
    code = (
        "import sys, stabilize\n"
        "print(any(m.startswith(('stabilize.cli', 'click', 'rich')) for m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
