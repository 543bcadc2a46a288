"""A task for runner tests: it logs every run of its body to a file (not transactional, so it
counts re-runs) and records its effect through the step's session (transactional, so it counts
committed effects). A stage may ask it to SIGKILL its own worker once, mid-step."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from stabilize.runner import TaskContext, registered_task

EFFECTS = Table(
    "test_effects",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workflow_id", String(26), nullable=False),
    Column("task_id", String(26), nullable=False),
)


@registered_task("test.effect")
def effect(context: TaskContext) -> dict[str, Any]:
    with Path(context.stage.context["body_log"]).open("a") as log:
        log.write(context.task.id + "\n")
    marker = context.stage.context.get("kill_marker")
    if marker and not Path(marker).exists():
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)  # dies holding the message, before the step commits
    context.execute(insert(EFFECTS).values(workflow_id=context.workflow_id, task_id=context.task.id))
    return {"items": [context.stage.ref_id], "last": context.stage.ref_id}
