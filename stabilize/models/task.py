"""A task: the smallest unit of work, run in order inside its stage."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stabilize.models.ids import new_id
from stabilize.models.status import WorkflowStatus

if TYPE_CHECKING:
    from stabilize.models.stage import StageExecution


@dataclass
class TaskExecution:
    """A task of a stage.

    ``stage`` is a weak back-reference (the stage owns its tasks), so a workflow graph does not
    keep itself alive through cycles.
    """

    id: str = field(default_factory=new_id)
    name: str = ""
    implementing_class: str = ""
    status: WorkflowStatus = WorkflowStatus.NOT_STARTED
    start_time: int | None = None
    end_time: int | None = None
    stage_start: bool = False
    stage_end: bool = False
    loop_start: bool = False
    loop_end: bool = False
    task_exception_details: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    _stage: weakref.ReferenceType[StageExecution] | StageExecution | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def stage(self) -> StageExecution | None:
        """The stage holding this task, or None when the task is detached or the stage was collected."""
        if isinstance(self._stage, weakref.ReferenceType):
            return self._stage()
        return self._stage

    @stage.setter
    def stage(self, value: StageExecution) -> None:
        self._stage = weakref.ref(value)

    def set_stage_strong(self, value: StageExecution) -> None:
        """Hold the stage strongly, for a task handed out without its stage's owner."""
        self._stage = value

    def has_stage(self) -> bool:
        """Whether the task is attached to a stage that is still alive."""
        return self.stage is not None

    @property
    def is_stage_start(self) -> bool:
        """Whether this task starts its stage (``stage_start``)."""
        return self.stage_start

    @property
    def is_stage_end(self) -> bool:
        """Whether this task ends its stage (``stage_end``): no task after it runs."""
        return self.stage_end

    def set_exception_details(self, exception: dict[str, Any]) -> None:
        """Record ``exception`` under the ``"exception"`` key of ``task_exception_details``."""
        self.task_exception_details["exception"] = exception

    @classmethod
    def create(
        cls,
        name: str,
        implementing_class: str,
        stage_start: bool = False,
        stage_end: bool = False,
        loop_start: bool = False,
        loop_end: bool = False,
    ) -> TaskExecution:
        """A new task, ``NOT_STARTED``, with a fresh id and no stage yet (``StageExecution.add_task``)."""
        return cls(
            name=name,
            implementing_class=implementing_class,
            stage_start=stage_start,
            stage_end=stage_end,
            loop_start=loop_start,
            loop_end=loop_end,
        )
