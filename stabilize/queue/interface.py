"""The queue contract the engine drives; backends implement every operation.

Unlike upstream, the optional operations (heartbeats, recovery probes, purges) are abstract too, so a
backend cannot silently inherit a no-op that disables deduplication or lock renewal.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Self, TypeAlias

from stabilize.queue.messages import Message

__all__ = ["Delay", "Queue"]

#: A delivery delay: a timedelta, or seconds as a number (upstream accepted only timedelta).
Delay: TypeAlias = timedelta | float


class Queue(ABC):
    """Durable, delayed, at-least-once delivery of engine messages."""

    @abstractmethod
    def close(self) -> None:
        """Release what this object holds of the database (idempotent); later calls fail."""

    def __enter__(self) -> Self:
        """The queue itself: ``with queue:`` closes it when the block ends."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """``close`` the queue, whether or not the block raised (the exception is not suppressed)."""
        self.close()

    @abstractmethod
    def push(self, message: Message, delay: Delay | None = None, connection: Any | None = None) -> None:
        """Enqueue ``message`` for delivery after ``delay`` (None or 0: now).

        ``connection`` lets a handler enqueue inside its own database transaction, so a state
        change and the message it implies commit or roll back together.
        """

    @abstractmethod
    def poll(self, callback: Callable[[Message], None]) -> None:
        """Deliver at most one due message to ``callback`` and ack it once the callback returns."""

    @abstractmethod
    def poll_one(self) -> Message | None:
        """Lease one due message without a callback; the caller must ack it, or it is redelivered."""

    @abstractmethod
    def ack(self, message: Message) -> None:
        """Remove a delivered message for good; until then it counts as in flight."""

    @abstractmethod
    def ensure(self, message: Message, delay: Delay) -> None:
        """Make sure ``message`` is queued for ``delay`` from now; if it already is, only move its time.

        Lets a caller re-assert a message idempotently instead of piling up copies.
        """

    @abstractmethod
    def reschedule(self, message: Message, delay: Delay) -> None:
        """Release an in-flight message's lease and redeliver it after ``delay``.

        Used to retry later without a new message, so attempts and identity carry over.
        """

    @abstractmethod
    def extend_lock(self, message: Message, duration: timedelta | None = None) -> bool:
        """Renew an in-flight message's lease so a long handler is not redelivered to another worker.

        ``duration`` None means the queue's own lease length. Returns False when the message is gone
        or the backend cannot renew, which tells the processor its lease may already be lost.
        """

    @abstractmethod
    def size(self) -> int:
        """Number of queued messages, for monitoring and back-pressure."""

    @abstractmethod
    def clear(self) -> None:
        """Drop every queued message; meant for tests and operator resets."""

    @abstractmethod
    def has_pending_message_for_task(self, task_id: str) -> bool:
        """Whether a message for this task is queued, so recovery does not push a duplicate."""

    @abstractmethod
    def has_pending_message_for_stage(self, stage_id: str) -> bool:
        """Whether a queued or in-flight message names this stage, so recovery leaves it alone."""

    @abstractmethod
    def has_pending_message_for_execution(self, execution_id: str) -> bool:
        """Whether any message targets this workflow, so recovery does not complete it twice."""

    @abstractmethod
    def live_delivery_keys(self, keys: list[str]) -> set[str]:
        """The subset of ``keys`` whose message is still queued, so pruning keeps their dedup records.

        A backend that cannot tell must return every key: keeping a record is safe, dropping one is not.
        """

    @abstractmethod
    def move_to_dlq(self, message: Message | str | int, error: str | None = None) -> bool:
        """Move a message (a delivered one, or one named by its id) to the dead letters now, with
        ``error`` as its reason; False when it is not queued."""

    @abstractmethod
    def purge_workflow(self, execution_id: str) -> int:
        """Delete every queued and dead-lettered message of one workflow; returns how many."""
