"""The one status vocabulary shared by workflows, stages and tasks."""

from __future__ import annotations

from enum import Enum


class WorkflowStatus(Enum):
    """Execution status; each member carries whether it is complete and whether it halts.

    Member values are ``(name, complete, halt)`` tuples, as in the Stabilize engine, so code that
    compares statuses or reads ``is_complete`` / ``is_halt`` keeps working. The database stores
    the member *name*.
    """

    NOT_STARTED = ("NOT_STARTED", False, False)
    RUNNING = ("RUNNING", False, False)
    PAUSED = ("PAUSED", False, False)
    SUSPENDED = ("SUSPENDED", False, False)
    SUCCEEDED = ("SUCCEEDED", True, False)
    FAILED_CONTINUE = ("FAILED_CONTINUE", True, False)
    TERMINAL = ("TERMINAL", True, True)
    CANCELED = ("CANCELED", True, True)
    REDIRECT = ("REDIRECT", False, False)
    STOPPED = ("STOPPED", True, True)
    SKIPPED = ("SKIPPED", True, False)
    BUFFERED = ("BUFFERED", False, False)

    def __init__(self, label: str, complete: bool, halt: bool) -> None:
        """Unpack a member's value tuple; the enum calls this once per member, at class creation."""
        self._label = label
        self._complete = complete
        self._halt = halt

    @property
    def is_complete(self) -> bool:
        """True once the work is over, successfully or not."""
        return self._complete

    @property
    def is_halt(self) -> bool:
        """True for an abnormal end after which nothing downstream may run."""
        return self._halt

    @property
    def is_successful(self) -> bool:
        """True for SUCCEEDED and SKIPPED."""
        return self in (WorkflowStatus.SUCCEEDED, WorkflowStatus.SKIPPED)

    @property
    def is_failure(self) -> bool:
        """True for TERMINAL, STOPPED and FAILED_CONTINUE (CANCELED is not a failure)."""
        return self in (WorkflowStatus.TERMINAL, WorkflowStatus.STOPPED, WorkflowStatus.FAILED_CONTINUE)

    def __str__(self) -> str:
        """The member's label, which is its name (``"RUNNING"``)."""
        return self._label

    def __repr__(self) -> str:
        """``WorkflowStatus.RUNNING``: the name without the value tuple."""
        return f"WorkflowStatus.{self.name}"


COMPLETED_STATUSES: frozenset[WorkflowStatus] = frozenset(s for s in WorkflowStatus if s.is_complete)
HALT_STATUSES: frozenset[WorkflowStatus] = frozenset(s for s in WorkflowStatus if s.is_halt)
