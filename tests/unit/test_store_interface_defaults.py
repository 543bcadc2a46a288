"""``WorkflowStore``'s defaults for what the Stabilize 0.33 engine calls beyond the API page: a
store that keeps no signals, claims or marks answers as the engine's own interface does."""

from __future__ import annotations

from typing import Any

import pytest

from stabilize.persistence.store import WorkflowStore


class ListedStore(WorkflowStore):
    """Only what the default purge needs: completed ids from a list, and ``delete``."""

    def __init__(self, completed: list[str]) -> None:
        self.completed = completed
        self.asked: list[tuple[int, int, str | None]] = []
        self.deleted: list[str] = []

    def completed_workflow_ids(
        self, completed_before_ms: int, limit: int, application: str | None = None
    ) -> list[str]:
        self.asked.append((completed_before_ms, limit, application))
        return [w for w in self.completed if w not in self.deleted][:limit]

    def delete(self, execution_id: str) -> None:
        self.deleted.append(execution_id)


def _bare(**methods: Any) -> type[ListedStore]:
    abstract = {
        name: lambda self, *a, **k: None
        for name in WorkflowStore.__abstractmethods__
        if name not in vars(ListedStore)
    }
    return type("Bare", (ListedStore,), {**abstract, **methods, "__abstractmethods__": frozenset()})


def test_a_store_without_signal_storage_answers_as_the_engine_expects() -> None:
    store = _bare()([])

    assert store.supports_signal_storage() is False
    assert store.buffer_signal("w", "s", "go", {"x": 1}) == 0  # 0: the engine buffers in the context
    assert store.consume_signal("w", "s") is None
    assert store.consume_signal("w", "s", "go") is None
    assert store.pending_signal_count("w", "s") == 0
    assert store.discard_signals("w", "s") == 0
    assert store.count_buffered_signal_stages() == 0
    assert store.cleanup_buffered_signals(only_complete=False, statuses=["SUCCEEDED"]) == 0
    assert store.get_processed_message_ids() is None  # None: the store cannot list them
    assert store.cleanup_completed_stage_claims() == 0
    assert store.cleanup_old_processed_messages(24, 10, 100, "queue_messages", live=set) == 0


def test_the_default_purge_deletes_batch_by_batch_up_to_max_workflows() -> None:
    store = _bare()([f"w{n}" for n in range(7)])

    assert store.purge_completed_workflows(500, batch_size=3, max_workflows=5, application="app") == 5
    assert store.deleted == ["w0", "w1", "w2", "w3", "w4"]
    assert store.asked == [(500, 3, "app"), (500, 2, "app")]
    assert store.purge_completed_workflows(500, batch_size=3) == 2
    assert store.purge_completed_workflows(500) == 0


def test_a_store_without_purge_says_so() -> None:
    class NoPurge(_bare()):  # type: ignore[misc]
        completed_workflow_ids = WorkflowStore.completed_workflow_ids

    with pytest.raises(NotImplementedError, match="does not support purge"):
        NoPurge([]).purge_completed_workflows(500)
