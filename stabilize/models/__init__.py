"""Domain models: plain dataclasses with no persistence imports."""

from stabilize.models.stage import StageExecution, SyntheticStageOwner
from stabilize.models.status import WorkflowStatus
from stabilize.models.task import TaskExecution
from stabilize.models.workflow import PausedDetails, Trigger, Workflow, WorkflowType

__all__ = [
    "PausedDetails",
    "StageExecution",
    "SyntheticStageOwner",
    "TaskExecution",
    "Trigger",
    "Workflow",
    "WorkflowStatus",
    "WorkflowType",
]
