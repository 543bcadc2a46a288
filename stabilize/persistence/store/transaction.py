"""The transaction interface the engine writes a step through, and its non-atomic fallback."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from stabilize.models.stage import StageExecution
from stabilize.models.workflow import Workflow

if TYPE_CHECKING:
    from stabilize.persistence.store.interface import WorkflowStore
    from stabilize.queue.interface import Queue
    from stabilize.queue.messages import Message


class StoreTransaction(ABC):
    """Stage writes, workflow status, pushed messages and processed marks of one engine step."""

    @property
    def is_atomic(self) -> bool:
        """True when everything done here commits together or not at all."""
        return False

    @abstractmethod
    def store_stage(self, stage: StageExecution, expected_phase: str | None = None) -> None: ...

    @abstractmethod
    def update_workflow_status(self, workflow: Workflow) -> None: ...

    @abstractmethod
    def push_message(self, message: Message, delay: float = 0) -> None: ...

    @abstractmethod
    def mark_message_processed(
        self, message_id: str, handler_type: str | None = None, execution_id: str | None = None
    ) -> None: ...


class NoOpTransaction(StoreTransaction):
    """Buffers the operations and replays them through the store and queue on success.

    Not atomic: a crash while flushing leaves part of the step written. It exists for stores
    without database transactions; the SQL store never uses it.
    """

    def __init__(self, store: WorkflowStore, queue: Queue | None = None) -> None:
        self._store = store
        self._queue = queue
        self._stages: list[tuple[StageExecution, str | None]] = []
        self._workflows: list[Workflow] = []
        self._messages: list[tuple[Message, float]] = []
        self._marks: list[tuple[str, str | None, str | None]] = []

    def store_stage(self, stage: StageExecution, expected_phase: str | None = None) -> None:
        self._stages.append((stage, expected_phase))

    def update_workflow_status(self, workflow: Workflow) -> None:
        self._workflows.append(workflow)

    def push_message(self, message: Message, delay: float = 0) -> None:
        if self._queue is None:
            raise ValueError("queue: a NoOpTransaction needs a queue to push messages to")
        self._messages.append((message, delay))

    def mark_message_processed(
        self, message_id: str, handler_type: str | None = None, execution_id: str | None = None
    ) -> None:
        self._marks.append((message_id, handler_type, execution_id))

    def flush(self) -> None:
        """State first, then messages, then marks: a crash part-way re-runs the step rather
        than losing it."""
        for stage, phase in self._stages:
            self._store.store_stage(stage, phase)
        for workflow in self._workflows:
            self._store.update_status(workflow)
        if self._queue is not None:
            for message, delay in self._messages:
                self._queue.push(message, delay)
        for mark in self._marks:
            self._store.mark_message_processed(*mark)
