"""Domain models: plain dataclasses with no persistence imports."""

from stabilize.models.multi_instance import MultiInstanceConfig
from stabilize.models.stage import JoinType, SplitType, StageExecution, SyntheticStageOwner
from stabilize.models.status import WorkflowStatus
from stabilize.models.task import TaskExecution
from stabilize.models.workflow import PausedDetails, Trigger, Workflow, WorkflowType

__all__ = [
    "JoinType",
    "MultiInstanceConfig",
    "PausedDetails",
    "SplitType",
    "StageExecution",
    "SyntheticStageOwner",
    "TaskExecution",
    "Trigger",
    "Workflow",
    "WorkflowStatus",
    "WorkflowType",
]
