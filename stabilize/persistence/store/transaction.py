"""The transaction interface the engine writes a step through, and its non-atomic fallback."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

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
    def store_workflow(self, workflow: Workflow) -> None:
        """Insert a new workflow with this step (e.g. together with the message that starts it)."""

    @abstractmethod
    def store_stage(self, stage: StageExecution, expected_phase: Any = None) -> None:
        """Compare-and-set the stage on its version (and status, with ``expected_phase``: a
        ``WorkflowStatus`` or its name), or insert it if it is not stored yet."""

    @abstractmethod
    def update_workflow_status(self, workflow: Workflow) -> None:
        """Rewrite the workflow's status, times, cancellation and pause details."""

    @abstractmethod
    def push_message(self, message: Message, delay: float = 0) -> None:
        """Queue ``message`` with this step, due after ``delay`` seconds."""

    @abstractmethod
    def mark_message_processed(
        self, message_id: str, handler_type: str | None = None, execution_id: str | None = None
    ) -> bool:
        """Record that ``message_id`` has been handled, so a redelivery is recognised.

        Returns:
            True when this call made the mark, False when it existed already (the engine rolls
            its step back as a duplicate delivery).
        """

    @abstractmethod
    def mark_processed_at_commit(
        self, message_id: str, handler_type: str | None = None, execution_id: str | None = None
    ) -> None:
        """Record ``message_id`` as handled with the step's writes, without an answer."""

    @abstractmethod
    def set_config_version(self, workflow_id: str, config_version: str | None) -> None:
        """Record the engine configuration's fingerprint the workflow runs under."""

    def acquire_claim(
        self, execution_id: str, claim_key: str, stage_id: str, steal_if_owner_terminal: bool = False
    ) -> bool:
        """Take a named claim of the workflow for ``stage_id``; True when the stage holds it.

        Raises:
            NotImplementedError: the store has no claims.
        """
        raise NotImplementedError(f"{type(self).__name__} has no stage claims")

    def lock_admission(self, key: str) -> None:
        """Serialise admissions of ``key`` until the transaction ends.

        Raises:
            NotImplementedError: the store has no admission lock (the engine then admits
                without a limit, and says so).
        """
        raise NotImplementedError(f"{type(self).__name__} has no admission lock")

    def workflow_status(self, workflow_id: str) -> tuple[str | None, bool]:
        """The workflow's status name and cancellation flag in this transaction.

        Raises:
            NotImplementedError: the store cannot read inside its transactions.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot read in a transaction")

    def count_running(self, pipeline_config_id: str) -> int:
        """How many workflows of the pipeline config are RUNNING.

        Raises:
            NotImplementedError: the store cannot read inside its transactions.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot read in a transaction")

    def buffered_ids(self, pipeline_config_id: str) -> list[str]:
        """The ids of the pipeline config's BUFFERED workflows, ascending.

        Raises:
            NotImplementedError: the store cannot read inside its transactions.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot read in a transaction")

    @abstractmethod
    def execute(self, statement: Any) -> None:
        """Run a caller's statement (an effect) in this step's database transaction.

        Raises:
            NotImplementedError: the store has no database transaction to run it in.
        """


class NoOpTransaction(StoreTransaction):
    """Buffers the operations and replays them through the store and queue on success.

    Not atomic: a crash while flushing leaves part of the step written. It exists for stores
    without database transactions; the SQL store never uses it.

    Args:
        store: the store the writes replay through.
        queue: the queue messages are pushed to.
    """

    def __init__(self, store: WorkflowStore, queue: Queue | None = None) -> None:
        """Start with nothing buffered; ``flush`` replays the buffers through ``store`` and ``queue``."""
        self._store = store
        self._queue = queue
        self._workflows_new: list[Workflow] = []
        self._stages: list[tuple[StageExecution, Any]] = []
        self._workflows: list[Workflow] = []
        self._messages: list[tuple[Message, float]] = []
        self._marks: list[tuple[str, str | None, str | None]] = []

    def store_workflow(self, workflow: Workflow) -> None:
        """Buffer a new workflow, stored by ``store.store`` on ``flush``."""
        self._workflows_new.append(workflow)

    def store_stage(self, stage: StageExecution, expected_phase: Any = None) -> None:
        """Buffer a stage write, replayed as ``store.store_stage(stage, expected_phase)`` on ``flush``."""
        self._stages.append((stage, expected_phase))

    def update_workflow_status(self, workflow: Workflow) -> None:
        """Buffer a workflow's status, replayed as ``store.update_status`` on ``flush``."""
        self._workflows.append(workflow)

    def push_message(self, message: Message, delay: float = 0) -> None:
        """Buffer a message for ``queue.push`` on ``flush``.

        Raises:
            ValueError: the transaction was made without a queue.
        """
        if self._queue is None:
            raise ValueError("queue: a NoOpTransaction needs a queue to push messages to")
        self._messages.append((message, delay))

    def mark_message_processed(
        self, message_id: str, handler_type: str | None = None, execution_id: str | None = None
    ) -> bool:
        """Buffer the mark; answer from what the store has committed so far (not atomic: a
        concurrent delivery may mark it first)."""
        self._marks.append((message_id, handler_type, execution_id))
        return not self._store.is_message_processed(message_id)

    def mark_processed_at_commit(
        self, message_id: str, handler_type: str | None = None, execution_id: str | None = None
    ) -> None:
        """Buffer the mark for ``flush``, after the step's writes and messages."""
        self._marks.append((message_id, handler_type, execution_id))

    def set_config_version(self, workflow_id: str, config_version: str | None) -> None:
        """Not recorded: the store interface has no call for it."""

    def execute(self, statement: Any) -> None:
        """Always refused: there is no database transaction.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError("a NoOpTransaction has no database transaction to run statements in")

    def flush(self) -> None:
        """New workflows, then state, then messages, then marks: a crash part-way re-runs the
        step rather than losing it."""
        for workflow in self._workflows_new:
            self._store.store(workflow)
        for stage, phase in self._stages:
            self._store.store_stage(stage, phase)
        for workflow in self._workflows:
            self._store.update_status(workflow)
        if self._queue is not None:
            for message, delay in self._messages:
                self._queue.push(message, delay)
        for mark in self._marks:
            self._store.mark_message_processed(*mark)
