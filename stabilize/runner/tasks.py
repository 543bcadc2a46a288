"""Tasks are plain callables registered by name; a task's ``implementing_class`` names one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable

from stabilize.models.stage import StageExecution
from stabilize.models.task import TaskExecution


@dataclass(frozen=True)
class TaskContext:
    """What a task sees. ``execute`` runs a statement in the step's transaction: what a task writes
    through it commits together with the task's completion, or not at all, so its effect happens
    once even if a worker dies and the task body runs again."""

    workflow_id: str
    stage: StageExecution
    task: TaskExecution
    inputs: dict[str, Any]
    execute: Callable[[Executable], None]


TaskFunction = Callable[[TaskContext], dict[str, Any] | None]

_registry: dict[str, TaskFunction] = {}


def register_task(name: str, function: TaskFunction) -> None:
    """Register ``function`` as the task named ``name``, replacing any function of that name."""
    _registry[name] = function


def registered_task(name: str) -> Callable[[TaskFunction], TaskFunction]:
    """Decorator form of ``register_task``."""

    def decorate(function: TaskFunction) -> TaskFunction:
        register_task(name, function)
        return function

    return decorate


def task_function(name: str) -> TaskFunction:
    """The function registered as ``name``.

    Raises:
        LookupError: no task of that name is registered (its module was not imported).
    """
    try:
        return _registry[name]
    except KeyError:
        raise LookupError(f"task {name!r} is not registered (import the module that registers it)") from None
