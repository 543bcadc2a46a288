"""``WorkflowStore``: the API page users code against, as an abstract class."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from stabilize.models.stage import StageExecution
from stabilize.models.status import WorkflowStatus
from stabilize.models.workflow import Workflow
from stabilize.persistence.errors import StabilizeError

if TYPE_CHECKING:
    from stabilize.persistence.store.transaction import StoreTransaction
    from stabilize.queue.interface import Queue


@dataclass
class WorkflowCriteria:
    """Filters and page size for the listing queries; ``page_size`` None or 0 means no limit.

    ``start_time_after`` / ``start_time_before`` are inclusive epoch-ms bounds; a workflow that
    has not started yet is always inside the window.
    """

    page_size: int | None = 20
    statuses: set[WorkflowStatus] | None = None
    start_time_before: int | None = None
    start_time_after: int | None = None


class WorkflowNotFoundError(StabilizeError):
    """No workflow has this id."""

    def __init__(self, execution_id: str) -> None:
        """The message names the id; ``execution_id`` keeps it."""
        super().__init__(f"workflow {execution_id!r} not found")
        self.execution_id = execution_id


class WorkflowStore(ABC):
    """Persistence of workflow executions: the API page users code against.

    Every method is one unit of work; see ``SqlWorkflowStore`` for what the SQL store adds (its
    transaction joins a caller's Session, its errors are named).
    """

    @abstractmethod
    def close(self) -> None:
        """Release what this object holds of the database (idempotent); later calls fail."""

    def __enter__(self) -> Self:
        """The store itself: ``with store:`` closes it when the block ends."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """``close`` the store, whether or not the block raised (the exception is not suppressed)."""
        self.close()

    @abstractmethod
    def store(self, execution: Workflow) -> None:
        """Insert a new workflow with all its stages and tasks, in one transaction.

        Raises:
            DuplicateError: an id is already stored; nothing is written.
        """

    @abstractmethod
    def retrieve(self, execution_id: str) -> Workflow:
        """The whole workflow, stages in the order they were added, tasks in their stage's order.

        Raises:
            WorkflowNotFoundError: no workflow has this id.
        """

    @abstractmethod
    def retrieve_execution_summary(self, execution_id: str) -> Workflow:
        """The workflow with ``stages == []``.

        Raises:
            WorkflowNotFoundError: no workflow has this id.
        """

    @abstractmethod
    def delete(self, execution_id: str) -> None:
        """Remove the workflow with its stages, tasks and edges."""

    @abstractmethod
    def update_status(self, execution: Workflow) -> None:
        """Rewrite the workflow's status, times, cancellation and pause details."""

    @abstractmethod
    def store_stage(self, stage: StageExecution, expected_phase: Any = None) -> None:
        """Compare-and-set a stored stage on its ``version`` (and status, with ``expected_phase``:
        a ``WorkflowStatus`` or its name) and write its tasks; insert a stage not stored yet.

        Raises:
            ConcurrencyError: the row moved on since ``stage`` was read; nothing changes.
        """

    @abstractmethod
    def add_stage(self, stage: StageExecution) -> None:
        """Insert a new stage into its stored workflow."""

    @abstractmethod
    def remove_stage(self, execution: Workflow, stage_id: str) -> None:
        """Delete a stage with its tasks."""

    @abstractmethod
    def retrieve_stage(self, stage_id: str) -> StageExecution:
        """The stage, with a partial workflow holding it, its requisites and its synthetic stages.

        Raises:
            ValueError: no stage has this id.
        """

    @abstractmethod
    def get_upstream_stages(self, execution_id: str, stage_ref_id: str) -> list[StageExecution]:
        """The direct requisites of ``stage_ref_id``, with their tasks."""

    @abstractmethod
    def get_downstream_stages(self, execution_id: str, stage_ref_id: str) -> list[StageExecution]:
        """The stages that wait for ``stage_ref_id``, with their tasks."""

    @abstractmethod
    def get_synthetic_stages(self, execution_id: str, parent_stage_id: str) -> list[StageExecution]:
        """The synthetic stages of ``parent_stage_id``, with their tasks."""

    @abstractmethod
    def get_merged_ancestor_outputs(self, execution_id: str, stage_ref_id: str) -> dict[str, Any]:
        """The outputs of every ancestor of ``stage_ref_id``, merged in the engine's order;
        ``{}`` for an unknown ref."""

    @abstractmethod
    def retrieve_by_pipeline_config_id(
        self, pipeline_config_id: str, criteria: WorkflowCriteria | None = None
    ) -> Iterator[Workflow]:
        """A page of the config's workflows, newest first, filtered by ``criteria``."""

    @abstractmethod
    def retrieve_by_application(
        self, application: str, criteria: WorkflowCriteria | None = None
    ) -> Iterator[Workflow]:
        """A page of the application's workflows, newest first, filtered by ``criteria``."""

    @abstractmethod
    def pause(self, execution_id: str, paused_by: str) -> None:
        """Set status PAUSED and the pause details.

        Raises:
            WorkflowNotFoundError: no workflow has this id.
        """

    @abstractmethod
    def resume(self, execution_id: str) -> None:
        """Record the resume time and paused duration, and set status RUNNING.

        Raises:
            WorkflowNotFoundError: no workflow has this id.
        """

    @abstractmethod
    def cancel(self, execution_id: str, canceled_by: str, reason: str) -> None:
        """Set ``is_canceled``, ``canceled_by`` and ``cancellation_reason``.

        Raises:
            WorkflowNotFoundError: no workflow has this id.
        """

    def count_by_application(self, application: str) -> int:
        """How many workflows the application has."""
        return sum(1 for _ in self.retrieve_by_application(application, WorkflowCriteria(page_size=0)))

    def exists(self, execution_id: str) -> bool:
        """Whether a workflow has this id."""
        try:
            self.retrieve_execution_summary(execution_id)
        except WorkflowNotFoundError:
            return False
        return True

    def is_healthy(self) -> bool:
        """Whether the store can be used now; never raises."""
        return True

    def is_message_processed(self, message_id: str) -> bool:
        """Whether ``message_id`` was marked processed."""
        return False

    def mark_message_processed(
        self, message_id: str, handler_type: str | None = None, execution_id: str | None = None
    ) -> bool:
        """Mark ``message_id`` processed.

        Returns:
            True when this call made the mark, False when it already existed.
        """
        return True

    def get_processed_message_ids(self, limit: int | None = None) -> list[str] | None:
        """Processed message ids, newest first, at most ``limit`` (None: all), for the engine's
        in-memory dedup filter; None when the store cannot list them (the engine then asks
        ``is_message_processed`` for every message)."""
        return None

    def cleanup_old_processed_messages(
        self,
        max_age_hours: float = 24.0,
        batch_size: int | None = None,
        max_rows: int | None = None,
        table_name: str | None = None,
        live: Callable[[list[str]], Collection[str]] | Collection[str] | None = None,
    ) -> int:
        """Delete marks older than ``max_age_hours``, ``batch_size`` per transaction (None: the
        store's default), at most ``max_rows`` in all (None: no bound), keeping those of messages
        still in queue ``table_name`` as ``live`` tells (a function of message ids answering the
        ones still queued, or a collection of them); return how many went."""
        return 0

    def cleanup_completed_stage_claims(self) -> int:
        """Delete the stage claims of workflows in a complete status (never those of a running
        one); return how many. Stores without claims have none."""
        return 0

    def completed_workflow_ids(
        self, completed_before_ms: int, limit: int, application: str | None = None
    ) -> list[str]:
        """Ids of complete workflows whose ``end_time`` is before ``completed_before_ms``, oldest
        end first, at most ``limit``, of ``application`` when given.

        Raises:
            NotImplementedError: the store cannot purge.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support purge")

    def purge_completed_workflows(
        self,
        completed_before_ms: int,
        batch_size: int = 500,
        max_workflows: int | None = None,
        application: str | None = None,
    ) -> int:
        """Delete the workflows ``completed_workflow_ids`` lists, batch by batch, each by
        ``delete``, until none is left or ``max_workflows`` are gone; return how many went."""
        deleted = 0
        while max_workflows is None or deleted < max_workflows:
            limit = batch_size if max_workflows is None else min(batch_size, max_workflows - deleted)
            ids = self.completed_workflow_ids(completed_before_ms, limit, application)
            for workflow_id in ids:
                self.delete(workflow_id)
            deleted += len(ids)
            if len(ids) < limit:
                break
        return deleted

    # -- signals: kept for a stage until it can take them (the engine's persistent triggers) --

    def supports_signal_storage(self) -> bool:
        """Whether the store keeps buffered signals itself (``buffer_signal``); False makes the
        engine keep them in the stage's context, under ``_buffered_signals``."""
        return False

    def buffer_signal(
        self,
        execution_id: str,
        stage_ref_id: str,
        signal_name: str,
        signal_data: dict[str, Any] | None = None,
    ) -> int:
        """Keep a signal for the stage until it consumes it; return its id, 0 when the store
        keeps none (the engine then buffers it in the stage's context)."""
        return 0

    def consume_signal(
        self, execution_id: str, stage_ref_id: str, signal_name: str | None = None
    ) -> dict[str, Any] | None:
        """Take the stage's oldest unconsumed signal (of ``signal_name`` when given), marked
        consumed, as ``{"signal_name", "signal_data"}``; None when none waits."""
        return None

    def pending_signal_count(self, execution_id: str, stage_ref_id: str) -> int:
        """How many unconsumed signals wait for the stage."""
        return 0

    def discard_signals(self, execution_id: str, stage_ref_id: str) -> int:
        """Delete the stage's unconsumed signals (it can no longer take them); return how many."""
        return 0

    def count_buffered_signal_stages(
        self, only_complete: bool = True, statuses: list[str] | None = None
    ) -> int:
        """How many stage rows carry ``_buffered_signals`` in their context: of complete stages
        (``only_complete``), of every stage, or of ``statuses`` when given. 0 for stores without
        stage contexts."""
        return 0

    def cleanup_buffered_signals(self, only_complete: bool = True, statuses: list[str] | None = None) -> int:
        """Remove ``_buffered_signals`` from the contexts ``count_buffered_signal_stages`` counts;
        return how many rows changed. 0 for stores without stage contexts."""
        return 0

    @contextmanager
    def transaction(self, queue: Queue | None = None) -> Iterator[StoreTransaction]:
        """A buffered, non-atomic transaction; database stores override this with a real one."""
        from stabilize.persistence.store.transaction import NoOpTransaction

        txn = NoOpTransaction(self, queue)
        yield txn
        txn.flush()
