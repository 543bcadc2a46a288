"""The image a task write compares with, to leave an unchanged task's row alone."""

from __future__ import annotations

from stabilize.models import TaskExecution
from stabilize.persistence.sql import mapping
from stabilize.persistence.sql.rows import TaskRow


def test_task_values_follow_the_column_order_of_a_task_row() -> None:
    """The image of a read row and of written values must line up column for column."""
    values = mapping.task_values(TaskExecution.create("t", "x.Y"), "stage-id", 0, "task")
    assert list(values) == [column.key for column in TaskRow.__table__.columns]


def test_a_task_with_exception_details_has_no_image_and_is_always_written() -> None:
    task = TaskExecution.create("t", "x.Y")
    assert mapping.row_image(mapping.task_values(task, "s", 0, "task").values()) is not None
    task.set_exception_details({"message": "boom"})
    assert mapping.row_image(mapping.task_values(task, "s", 0, "task").values()) is None
