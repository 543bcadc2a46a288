"""``committed_marks`` on its own: consumed once, cleared, and bounded per thread."""

from __future__ import annotations

from stabilize.persistence import committed_marks
from stabilize.persistence.committed_marks import clear_committed, consume_committed, record_committed


def test_a_recorded_id_is_consumed_once_and_clear_forgets_the_rest() -> None:
    clear_committed()
    record_committed(["a", "b"])
    assert consume_committed("a") is True
    assert consume_committed("a") is False
    clear_committed()
    assert consume_committed("b") is False


def test_a_thread_whose_marks_nobody_consumes_keeps_only_the_newest() -> None:
    clear_committed()
    kept = committed_marks.KEPT
    record_committed(f"m{i}" for i in range(kept + 10))
    assert consume_committed("m0") is False  # the oldest went
    assert consume_committed("m9") is False
    assert consume_committed("m10") is True
    assert consume_committed(f"m{kept + 9}") is True
    record_committed(["m11"])  # recorded again: now the newest, whatever was dropped meanwhile
    record_committed(f"n{i}" for i in range(kept - 1))
    assert consume_committed("m11") is True
    clear_committed()
