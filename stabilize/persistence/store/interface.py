"""``WorkflowStore``: the API page users code against, as an abstract class."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stabilize.errors import StabilizeError
from stabilize.models.stage import StageExecution
from stabilize.models.status import WorkflowStatus
from stabilize.models.workflow import Workflow

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
        super().__init__(f"workflow {execution_id!r} not found")
        self.execution_id = execution_id


class WorkflowStore(ABC):
    """Persistence of workflow executions (see the API page for each method's meaning)."""

    @abstractmethod
    def store(self, execution: Workflow) -> None: ...

    @abstractmethod
    def retrieve(self, execution_id: str) -> Workflow: ...

    @abstractmethod
    def retrieve_execution_summary(self, execution_id: str) -> Workflow: ...

    @abstractmethod
    def delete(self, execution_id: str) -> None: ...

    @abstractmethod
    def update_status(self, execution: Workflow) -> None: ...

    @abstractmethod
    def store_stage(self, stage: StageExecution, expected_phase: str | None = None) -> None: ...

    @abstractmethod
    def add_stage(self, stage: StageExecution) -> None: ...

    @abstractmethod
    def remove_stage(self, execution: Workflow, stage_id: str) -> None: ...

    @abstractmethod
    def retrieve_stage(self, stage_id: str) -> StageExecution: ...

    @abstractmethod
    def get_upstream_stages(self, execution_id: str, stage_ref_id: str) -> list[StageExecution]: ...

    @abstractmethod
    def get_downstream_stages(self, execution_id: str, stage_ref_id: str) -> list[StageExecution]: ...

    @abstractmethod
    def get_synthetic_stages(self, execution_id: str, parent_stage_id: str) -> list[StageExecution]: ...

    @abstractmethod
    def get_merged_ancestor_outputs(self, execution_id: str, stage_ref_id: str) -> dict[str, Any]: ...

    @abstractmethod
    def retrieve_by_pipeline_config_id(
        self, pipeline_config_id: str, criteria: WorkflowCriteria | None = None
    ) -> Iterator[Workflow]: ...

    @abstractmethod
    def retrieve_by_application(
        self, application: str, criteria: WorkflowCriteria | None = None
    ) -> Iterator[Workflow]: ...

    @abstractmethod
    def pause(self, execution_id: str, paused_by: str) -> None: ...

    @abstractmethod
    def resume(self, execution_id: str) -> None: ...

    @abstractmethod
    def cancel(self, execution_id: str, canceled_by: str, reason: str) -> None: ...

    def count_by_application(self, application: str) -> int:
        return sum(1 for _ in self.retrieve_by_application(application, WorkflowCriteria(page_size=0)))

    def exists(self, execution_id: str) -> bool:
        try:
            self.retrieve_execution_summary(execution_id)
        except WorkflowNotFoundError:
            return False
        return True

    def is_healthy(self) -> bool:
        return True

    def is_message_processed(self, message_id: str) -> bool:
        return False

    def mark_message_processed(
        self, message_id: str, handler_type: str | None = None, execution_id: str | None = None
    ) -> None:
        return None

    def cleanup_old_processed_messages(self, max_age_hours: float = 24.0) -> int:
        return 0

    @contextmanager
    def transaction(self, queue: Queue | None = None) -> Iterator[StoreTransaction]:
        """A buffered, non-atomic transaction; database stores override this with a real one."""
        from stabilize.persistence.store.transaction import NoOpTransaction

        txn = NoOpTransaction(self, queue)
        yield txn
        txn.flush()
