"""A workflow execution: the root of the state the store persists."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from stabilize.models.ids import new_id, now_ms
from stabilize.models.stage import StageExecution
from stabilize.models.status import WorkflowStatus


class WorkflowType(Enum):
    """Whether a workflow is a configured pipeline or an ad hoc orchestration (``Workflow.create*``)."""
    PIPELINE = "PIPELINE"
    ORCHESTRATION = "ORCHESTRATION"


@dataclass
class Trigger:
    """What started a workflow, and the parameters it passed."""

    type: str = "manual"
    user: str = "anonymous"
    parameters: dict[str, Any] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    payload: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The trigger as a JSON-ready dict; its containers are the trigger's own, not copies."""
        return {
            "type": self.type,
            "user": self.user,
            "parameters": self.parameters,
            "artifacts": self.artifacts,
            "payload": self.payload,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trigger:
        """A trigger from ``to_dict``'s form; a missing key takes the field's default."""
        return cls(
            type=data.get("type", "manual"),
            user=data.get("user", "anonymous"),
            parameters=data.get("parameters", {}),
            artifacts=data.get("artifacts", []),
            payload=data.get("payload", {}),
        )


@dataclass
class PausedDetails:
    """Who paused a workflow and when (epoch ms); ``paused_ms`` is how long the last pause lasted,
    set on ``resume``.
    """
    paused_by: str = ""
    pause_time: int | None = None
    resume_time: int | None = None
    paused_ms: int = 0

    @property
    def is_paused(self) -> bool:
        """Whether a pause began and has not been resumed."""
        return self.pause_time is not None and self.resume_time is None


@dataclass
class Workflow:
    """A workflow execution with all its stages, synthetic ones included."""

    id: str = field(default_factory=new_id)
    type: WorkflowType = WorkflowType.PIPELINE
    application: str = ""
    name: str = ""
    status: WorkflowStatus = WorkflowStatus.NOT_STARTED
    stages: list[StageExecution] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    trigger: Trigger = field(default_factory=Trigger)
    start_time: int | None = None
    end_time: int | None = None
    start_time_expiry: int | None = None
    is_canceled: bool = False
    canceled_by: str | None = None
    cancellation_reason: str | None = None
    paused: PausedDetails | None = None
    pipeline_config_id: str | None = None
    is_limit_concurrent: bool = False
    max_concurrent_executions: int = 0
    keep_waiting_pipelines: bool = False
    origin: str = "unknown"
    config_version: str | None = None
    #: The queue table the workflow's messages go to (the engine records it when it starts).
    queue_table: str | None = None

    def __post_init__(self) -> None:
        """Attach every stage given to the constructor to this workflow."""
        for stage in self.stages:
            stage.execution = self

    def add_stage(self, stage: StageExecution) -> None:
        """Append ``stage`` and attach it to this workflow."""
        stage.execution = self
        self.stages.append(stage)

    def remove_stage(self, stage_id: str) -> None:
        """Drop the stage with id ``stage_id`` from ``stages``, if there is one (nothing is stored)."""
        self.stages = [s for s in self.stages if s.id != stage_id]

    def stage_by_id(self, stage_id: str) -> StageExecution:
        """The stage with id ``stage_id``.

        Raises:
            ValueError: no stage of this workflow has the id.
        """
        for stage in self.stages:
            if stage.id == stage_id:
                return stage
        raise ValueError(f"stage {stage_id} not found in workflow {self.id}")

    def stage_by_ref_id(self, ref_id: str) -> StageExecution | None:
        """The stage with ref id ``ref_id``, or None."""
        return next((s for s in self.stages if s.ref_id == ref_id), None)

    def initial_stages(self) -> list[StageExecution]:
        """The stages that start the workflow: no requisites, and not synthetic."""
        return [s for s in self.stages if s.is_initial() and not s.is_synthetic()]

    def top_level_stages(self) -> list[StageExecution]:
        """The stages that are not synthetic, in order."""
        return [s for s in self.stages if not s.is_synthetic()]

    def update_status(self, status: WorkflowStatus) -> None:
        """Set ``status`` (in memory; ``WorkflowStore.update_status`` stores it)."""
        self.status = status

    def cancel(self, user: str, reason: str) -> None:
        """Mark the workflow canceled by ``user`` for ``reason``; the status is left to the engine."""
        self.is_canceled = True
        self.canceled_by = user
        self.cancellation_reason = reason

    def pause(self, user: str) -> None:
        """Pause now: a new ``paused`` record for ``user`` and status PAUSED."""
        self.paused = PausedDetails(paused_by=user, pause_time=now_ms())
        self.status = WorkflowStatus.PAUSED

    def resume(self) -> None:
        """Resume: record the resume time and the pause's length (when paused), and set RUNNING."""
        if self.paused is not None and self.paused.pause_time is not None:
            self.paused.resume_time = now_ms()
            self.paused.paused_ms = self.paused.resume_time - self.paused.pause_time
        self.status = WorkflowStatus.RUNNING

    @classmethod
    def create(
        cls,
        application: str,
        name: str,
        stages: list[StageExecution],
        trigger: Trigger | None = None,
        pipeline_config_id: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> Workflow:
        """A new pipeline of ``stages``.

        Raises:
            ValueError: two stages share a ref id (as upstream Stabilize's graph check refuses it).
        """
        _refuse_duplicate_refs(stages)
        return cls(
            application=application,
            name=name,
            stages=stages,
            context=context or {},
            trigger=trigger or Trigger(),
            pipeline_config_id=pipeline_config_id,
        )

    @classmethod
    def create_orchestration(cls, application: str, name: str, stages: list[StageExecution]) -> Workflow:
        """A new orchestration of ``stages`` (``ValueError`` on a repeated ref id, as ``create``)."""
        _refuse_duplicate_refs(stages)
        return cls(type=WorkflowType.ORCHESTRATION, application=application, name=name, stages=stages)


def _refuse_duplicate_refs(stages: list[StageExecution]) -> None:
    first: dict[str, int] = {}
    for index, stage in enumerate(stages):
        earlier = first.setdefault(stage.ref_id, index)
        if earlier != index:
            raise ValueError(
                f"stages[{index}].ref_id: {stage.ref_id!r} is the ref id of stages[{earlier}] too"
            )


__all__ = ["PausedDetails", "Trigger", "Workflow", "WorkflowType"]
