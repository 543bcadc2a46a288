"""What each task's row held when a store last read or wrote it, so ``store_stage`` can leave an
unchanged task's row alone (as upstream Stabilize does with its ``_persisted_state``).

The store owns these images, not the task objects: domain objects carry no persistence state. An
image is kept per task *object* (by identity, through a weak reference, so it goes with the
object) and compares the task's field values as the domain holds them. A task whose exception
details are not empty has no image and is always written: the image must not share a mutable
document with the task, and such a task (a failure) is rare enough to rewrite.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from operator import attrgetter, itemgetter
from typing import Any

from stabilize.models.task import TaskExecution
from stabilize.persistence.sql.mapping import TASKS

Image = tuple[Any, ...]

_DETAILS = "task_exception_details"
#: The fields an image compares: where the row is, what the store rewrites, and the version.
_KEYS = ("stage_id", "position", *(k for k in TASKS.state if k != _DETAILS), "version")
_COLUMNS = [c.key for c in TASKS.table.columns]
_ROW_FIELDS = itemgetter(*(_COLUMNS.index(key) for key in _KEYS))
_DETAILS_INDEX = _COLUMNS.index(_DETAILS)
_TASK_FIELDS = attrgetter(*_KEYS[2:-1])


def _typed(values: tuple[Any, ...]) -> Image:
    # The values' types too: ``1 == True`` and ``2.0 == 2``, but a task holding 1 in a boolean
    # field, or a float in an integer one, is not its row, and must be checked (and refused).
    return (*values, *map(type, values))


def image_of_row(row: Sequence[Any]) -> Image | None:
    """The image of a row of ``select(tasks)`` as the codec read it; None when it has details."""
    if row[_DETAILS_INDEX]:
        return None
    return _typed(_ROW_FIELDS(row))


def image_of_task(task: TaskExecution, stage_id: str, position: int, version: int) -> Image | None:
    """The image the task's row has once written at ``position`` of ``stage_id`` with ``version``."""
    if task.task_exception_details:
        return None
    return _typed((stage_id, position, *_TASK_FIELDS(task), version))


def with_version(image: Image | None, version: int) -> Image | None:
    """``image`` with another version (a write moved it)."""
    if image is None:
        return None
    half = len(image) // 2
    return _typed((*image[: half - 1], version))


class TaskImages:
    """Images by task object, for one store."""

    def __init__(self) -> None:
        """No images yet: every task is written until the store reads or writes it."""
        self._images: dict[int, tuple[weakref.ref[TaskExecution], Image]] = {}

    def remember(self, task: TaskExecution, image: Image | None) -> None:
        """Record ``image`` as what the task's row holds now (None: unknown, always written)."""
        key = id(task)
        if image is None:
            self._images.pop(key, None)
            return
        images = self._images

        def forget(ref: weakref.ref[TaskExecution]) -> None:
            if images.get(key, (None,))[0] is ref:
                del images[key]

        images[key] = (weakref.ref(task, forget), image)

    def unchanged(self, task: TaskExecution, image: Image | None) -> bool:
        """Whether the task's row already holds ``image``."""
        if image is None:
            return False
        found = self._images.get(id(task))
        return found is not None and found[0]() is task and found[1] == image
