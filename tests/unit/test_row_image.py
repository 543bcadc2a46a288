"""The image a task write compares with, to leave an unchanged task's row alone."""

from __future__ import annotations

from typing import Any

from stabilize.models import TaskExecution, WorkflowStatus
from stabilize.persistence.sql.images import TaskImages, image_of_row, image_of_task
from stabilize.persistence.sql.rows import TaskRow


def _row_as_read(task: TaskExecution, stage_id: str, position: int) -> list[Any]:
    place = {"stage_id": stage_id, "position": position}
    return [place[c.key] if c.key in place else getattr(task, c.key) for c in TaskRow.__table__.columns]


def test_the_image_of_a_read_row_lines_up_with_the_image_of_its_task() -> None:
    task = TaskExecution.create("t", "x.Y", stage_start=True)
    task.status, task.start_time, task.version = WorkflowStatus.RUNNING, 17, 3
    assert image_of_row(_row_as_read(task, "s", 2)) == image_of_task(task, "s", 2, 3)
    assert image_of_row(_row_as_read(task, "s", 2)) != image_of_task(task, "s", 1, 3)


def test_a_task_with_exception_details_has_no_image_and_is_always_written() -> None:
    task = TaskExecution.create("t", "x.Y")
    assert image_of_task(task, "s", 0, 0) is not None
    task.set_exception_details({"message": "boom"})
    assert image_of_task(task, "s", 0, 0) is None
    assert image_of_row(_row_as_read(task, "s", 0)) is None
    assert not TaskImages().unchanged(task, None)


def test_an_image_belongs_to_its_task_object_and_goes_with_it() -> None:
    images = TaskImages()
    task, twin = TaskExecution.create("t", "x.Y"), TaskExecution.create("t", "x.Y")
    twin.id = task.id
    image = image_of_task(task, "s", 0, 0)
    images.remember(task, image)
    assert images.unchanged(task, image)
    assert not images.unchanged(twin, image)  # an equal object is not the one that was read
    task.name = "renamed"
    assert not images.unchanged(task, image_of_task(task, "s", 0, 0))
    del task
    assert not images._images  # the image went with its task
