"""A stage: a node of the workflow DAG, holding its tasks and its place in the graph."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from stabilize.models.ids import new_id
from stabilize.models.multi_instance import MultiInstanceConfig
from stabilize.models.status import WorkflowStatus
from stabilize.models.task import TaskExecution

if TYPE_CHECKING:
    from stabilize.models.workflow import Workflow


class SyntheticStageOwner(Enum):
    """Whether a synthetic stage runs before its parent's tasks or after the parent completes."""

    STAGE_BEFORE = "STAGE_BEFORE"
    STAGE_AFTER = "STAGE_AFTER"


class JoinType(Enum):
    """How a stage with several requisites waits for them.

    AND waits for all of them; OR for the branches an OR-split activated; MULTI_MERGE fires once
    per requisite that completes; DISCRIMINATOR fires on the first; N_OF_M once
    ``join_threshold`` of them completed.
    """

    AND = "AND"
    OR = "OR"
    MULTI_MERGE = "MULTI_MERGE"
    DISCRIMINATOR = "DISCRIMINATOR"
    N_OF_M = "N_OF_M"


class SplitType(Enum):
    """Which of a stage's downstream stages run: all (AND), or those whose condition in
    ``split_conditions`` holds (OR)."""

    AND = "AND"
    OR = "OR"


@dataclass
class StageExecution:
    """A stage of a workflow.

    The DAG lives in ``requisite_stage_ref_ids``: the ref ids this stage waits for. Synthetic
    stages hang off a parent through ``parent_stage_id`` instead. ``version`` is the
    compare-and-set token the store checks and increments on every update.

    The control-flow fields after ``version`` are the engine's (joins, splits, multi-instance,
    deferred choice, milestones, mutexes, cancel regions); the store keeps them as written when
    the stage was added.
    """

    id: str = field(default_factory=new_id)
    ref_id: str = ""
    type: str = ""
    name: str = ""
    status: WorkflowStatus = WorkflowStatus.NOT_STARTED
    context: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    tasks: list[TaskExecution] = field(default_factory=list)
    requisite_stage_ref_ids: set[str] = field(default_factory=set)
    parent_stage_id: str | None = None
    synthetic_stage_owner: SyntheticStageOwner | None = None
    start_time: int | None = None
    end_time: int | None = None
    start_time_expiry: int | None = None
    scheduled_time: int | None = None
    version: int = 0
    join_type: JoinType = JoinType.AND
    #: For ``JoinType.N_OF_M``: how many requisites must complete.
    join_threshold: int = 0
    split_type: SplitType = SplitType.AND
    #: For ``SplitType.OR``: downstream ref id -> the condition that activates it.
    split_conditions: dict[str, str] = field(default_factory=dict)
    mi_config: MultiInstanceConfig | None = None
    #: Stages of one group race: the first to start wins, the others are canceled.
    deferred_choice_group: str | None = None
    #: The stage may run only while the stage ``milestone_ref_id`` has ``milestone_status``.
    milestone_ref_id: str | None = None
    milestone_status: str | None = None
    #: Stages sharing a key never run at the same time.
    mutex_key: str | None = None
    #: The region a cancellation of any of its stages cancels as a whole.
    cancel_region: str | None = None
    _execution: weakref.ReferenceType[Workflow] | Workflow | None = field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        """Attach every task given to the constructor to this stage."""
        for task in self.tasks:
            task.stage = self

    # -- the owning workflow ------------------------------------------------------------------

    @property
    def execution(self) -> Workflow:
        """The workflow this stage belongs to; raises when the stage is detached."""
        workflow = (
            self._execution() if isinstance(self._execution, weakref.ReferenceType) else self._execution
        )
        if workflow is None:
            raise ValueError(f"stage {self.id} is not attached to a workflow")
        return workflow

    @execution.setter
    def execution(self, value: Workflow) -> None:
        self._execution = weakref.ref(value)

    def set_execution_strong(self, value: Workflow) -> None:
        """Hold the workflow strongly, for a stage handed out with a partial workflow."""
        self._execution = value

    def has_execution(self) -> bool:
        """Whether the stage is attached to a workflow that is still alive."""
        if isinstance(self._execution, weakref.ReferenceType):
            return self._execution() is not None
        return self._execution is not None

    # -- tasks ----------------------------------------------------------------------------------

    def add_task(self, task: TaskExecution) -> None:
        """Append ``task`` and attach it to this stage."""
        task.stage = self
        self.tasks.append(task)

    def first_task(self) -> TaskExecution | None:
        """The stage's first task, or None without tasks."""
        return self.tasks[0] if self.tasks else None

    def next_task(self, task: TaskExecution) -> TaskExecution | None:
        """The task that runs after ``task`` (matched by identity), or None after a ``stage_end`` task,
        the last task, or a task not of this stage.
        """
        if task.stage_end:
            return None
        index = next((i for i, t in enumerate(self.tasks) if t is task), None)
        if index is None or index + 1 >= len(self.tasks):
            return None
        return self.tasks[index + 1]

    def has_tasks(self) -> bool:
        """Whether the stage has any task."""
        return bool(self.tasks)

    # -- navigation within the workflow --------------------------------------------------------

    def is_initial(self) -> bool:
        """Whether the stage waits for no other stage."""
        return not self.requisite_stage_ref_ids

    def is_join(self) -> bool:
        """Whether the stage waits for more than one stage."""
        return len(self.requisite_stage_ref_ids) > 1

    def is_synthetic(self) -> bool:
        """Whether the stage hangs off a parent stage (``parent_stage_id``)."""
        return self.parent_stage_id is not None

    def upstream_stages(self) -> list[StageExecution]:
        """The stages of the workflow this stage waits for.

        Raises:
            ValueError: the stage is not attached to a workflow (as for every method that walks it).
        """
        return [s for s in self.execution.stages if s.ref_id in self.requisite_stage_ref_ids]

    def downstream_stages(self) -> list[StageExecution]:
        """The stages of the workflow that wait for this stage."""
        return [s for s in self.execution.stages if self.ref_id in s.requisite_stage_ref_ids]

    def all_upstream_stages_complete(self) -> bool:
        """Whether every stage this stage waits for has a complete status."""
        return all(s.status.is_complete for s in self.upstream_stages())

    def synthetic_stages(self) -> list[StageExecution]:
        """The synthetic stages whose parent is this stage, in the workflow's order."""
        return [s for s in self.execution.stages if s.parent_stage_id == self.id]

    def before_stages(self) -> list[StageExecution]:
        """The synthetic stages that run before this stage's tasks."""
        return [
            s for s in self.synthetic_stages() if s.synthetic_stage_owner is SyntheticStageOwner.STAGE_BEFORE
        ]

    def after_stages(self) -> list[StageExecution]:
        """The synthetic stages that run after this stage completes."""
        return [
            s for s in self.synthetic_stages() if s.synthetic_stage_owner is SyntheticStageOwner.STAGE_AFTER
        ]

    def parent(self) -> StageExecution:
        """The parent of this synthetic stage.

        Raises:
            ValueError: the stage is not synthetic, or its parent is not in the workflow.
        """
        if self.parent_stage_id is None:
            raise ValueError(f"stage {self.id} is not synthetic and has no parent")
        return self.execution.stage_by_id(self.parent_stage_id)

    # -- factories ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        type: str,
        name: str,
        ref_id: str,
        context: dict[str, Any] | None = None,
        requisite_stage_ref_ids: set[str] | None = None,
    ) -> StageExecution:
        """A new top-level stage, ``NOT_STARTED``, with a fresh id and no workflow yet
        (``Workflow.add_stage``); ``requisite_stage_ref_ids`` is copied.
        """
        return cls(
            type=type,
            name=name,
            ref_id=ref_id,
            context=context or {},
            requisite_stage_ref_ids=set(requisite_stage_ref_ids or ()),
        )

    @classmethod
    def create_synthetic(
        cls,
        type: str,
        name: str,
        parent: StageExecution,
        owner: SyntheticStageOwner,
        context: dict[str, Any] | None = None,
    ) -> StageExecution:
        """A stage injected before or after ``parent``; it gets a unique ref id of its own."""
        stage = cls(
            type=type,
            name=name,
            ref_id=new_id(),
            context=context or {},
            parent_stage_id=parent.id,
            synthetic_stage_owner=owner,
        )
        if parent.has_execution():
            stage.execution = parent.execution
        return stage
