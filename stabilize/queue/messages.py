"""Queue message types and their by-name serialisation.

Messages are plain dataclasses so the engine can build them without touching the database. A queue
stores a message as its class name plus a JSON payload; the codec is derived from the dataclass
fields and their type hints, so a new message type needs no serialisation code of its own.
"""

from __future__ import annotations

import copy
import dataclasses
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union, get_args, get_origin, get_type_hints

from stabilize.models.stage import SyntheticStageOwner
from stabilize.models.status import WorkflowStatus
from stabilize.persistence.ids import new_id, now_ms


class MessageDecodeError(ValueError):
    """A payload that cannot become a message.

    A subclass so a queue can tell a corrupt row from its own bugs, and a ValueError so callers
    that only know the documented contract still catch it.
    """


_REGISTRY: dict[str, type[Message]] = {}

#: Concrete message classes by the name stored in the queue; read-only so only class creation fills it.
MESSAGE_TYPES: Mapping[str, type[Message]] = types.MappingProxyType(_REGISTRY)


@dataclass(kw_only=True)
class Message:
    """Base of every queue message.

    The delivery bookkeeping rides on the message itself so a retried or dead-lettered message
    carries its own history wherever it is copied. Every field has a default, as upstream, and all
    are keyword-only because positional arguments would land on the metadata first.
    """

    message_id: str = field(default_factory=new_id, repr=False)
    created_at: int = field(default_factory=now_ms, repr=False)
    attempts: int = field(default=0, repr=False)
    max_attempts: int = field(default=10, repr=False)
    last_error: str | None = field(default=None, repr=False)
    last_error_type: str | None = field(default=None, repr=False)

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: Any) -> None:
        """Register concrete subclasses by name; bases that only group fields pass ``abstract=True``."""
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        if cls.__name__ in _REGISTRY:
            raise TypeError(f"message type name {cls.__name__!r} is already registered")
        _REGISTRY[cls.__name__] = cls

    def set_error_context(self, error: BaseException) -> None:
        """Remember why the last attempt failed, so a retried or dead-lettered message explains itself."""
        self.last_error = str(error)
        self.last_error_type = type(error).__name__


# --- workflow level ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class WorkflowLevel(Message, abstract=True):
    """Fields shared by messages that address one workflow execution."""

    execution_type: str = "PIPELINE"
    execution_id: str = ""


@dataclass(kw_only=True)
class StartWorkflow(WorkflowLevel):
    """Start a workflow: it becomes RUNNING and its initial stages are started."""
    pass


@dataclass(kw_only=True)
class CompleteWorkflow(WorkflowLevel):
    """``retry_count`` bounds how often completion is re-queued while stages are still running."""

    retry_count: int = 0


@dataclass(kw_only=True)
class CancelWorkflow(WorkflowLevel):
    """Cancel a workflow: mark it canceled by ``user`` for ``reason`` and stop its running stages."""
    user: str = ""
    reason: str = ""


@dataclass(kw_only=True)
class StartWaitingWorkflows(Message):
    """Addresses a pipeline config rather than one execution, hence not a WorkflowLevel."""

    pipeline_config_id: str = ""
    purge_queue: bool = False


@dataclass(kw_only=True)
class CancelRegion(WorkflowLevel):
    """Cancel every active stage whose ``cancel_region`` is ``region``, as a whole."""
    region: str = ""


@dataclass(kw_only=True)
class InvalidWorkflowId(WorkflowLevel):
    """Names a workflow id that is not stored; the engine logs it and drops it."""
    pass


# --- stage level ------------------------------------------------------------------------------


@dataclass(kw_only=True)
class StageLevel(WorkflowLevel, abstract=True):
    """``retry_count`` bounds how often a message is re-queued while waiting on upstream stages."""

    stage_id: str = ""
    retry_count: int = 0


@dataclass(kw_only=True)
class StartStage(StageLevel):
    """``triggering_upstream_ref_id`` lets a multi-merge join count one firing per upstream."""

    triggering_upstream_ref_id: str = ""


@dataclass(kw_only=True)
class CompleteStage(StageLevel):
    """Complete a stage: settle its status from its tasks and synthetic stages, then start what
    follows (its downstream stages, its parent, or the workflow's completion).
    """
    pass


@dataclass(kw_only=True)
class SkipStage(StageLevel):
    """Skip a stage: it becomes SKIPPED and its downstream stages start."""
    pass


@dataclass(kw_only=True)
class CancelStage(StageLevel):
    """Cancel a stage: its running tasks stop and it becomes CANCELED."""
    pass


@dataclass(kw_only=True)
class RestartStage(StageLevel):
    """Restart a stage: reset it and run it again from its beginning."""
    pass


@dataclass(kw_only=True)
class ResumeStage(StageLevel):
    """Resume a paused stage where it stopped."""
    pass


@dataclass(kw_only=True)
class ContinueParentStage(StageLevel):
    """A synthetic stage of this (parent) stage completed: the parent goes on with its ``phase``
    (its own tasks after the before-stages, its completion after the after-stages).
    """
    phase: SyntheticStageOwner = SyntheticStageOwner.STAGE_AFTER


@dataclass(kw_only=True)
class JumpToStage(StageLevel):
    """Route the workflow to the stage ``target_stage_ref_id``: reset it to NOT_STARTED and start it,
    with ``jump_context`` merged into its context and ``jump_outputs`` made available to it.
    """
    target_stage_ref_id: str = ""
    jump_context: dict[str, Any] = field(default_factory=dict)
    jump_outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class SignalStage(StageLevel):
    """``user`` is kept out of ``signal_data`` because tasks expose that dict verbatim."""

    signal_name: str = ""
    signal_data: dict[str, Any] = field(default_factory=dict)
    persistent: bool = False
    user: str = ""


@dataclass(kw_only=True)
class AddMultiInstance(StageLevel):
    """Add one more parallel instance, with ``instance_context``, to a running multi-instance stage
    that accepts additions.
    """
    instance_context: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class InvalidStageId(StageLevel):
    """Names a stage id that is not stored; the engine logs it and drops it."""
    pass


# --- task level -------------------------------------------------------------------------------


@dataclass(kw_only=True)
class TaskLevel(StageLevel, abstract=True):
    """Fields shared by messages that address one task of a stage (``task_id``)."""
    task_id: str = ""


@dataclass(kw_only=True)
class StartTask(TaskLevel):
    """Start a task: it becomes RUNNING and a ``RunTask`` for it follows."""
    pass


@dataclass(kw_only=True)
class RunTask(TaskLevel):
    """Run a task's implementation (``task_type``) and handle its result."""
    task_type: str = ""


@dataclass(kw_only=True)
class CompleteTask(TaskLevel):
    """A task finished with ``status``: record it and go on to the next task or the stage's completion.

    ``original_status`` is the status the task itself returned, where the engine changed it (a
    failure a stage lets continue becomes FAILED_CONTINUE); ``task_start_time`` is the start of
    the run this completion belongs to, so one for an earlier run of a restarted task is stale.
    """
    status: WorkflowStatus = WorkflowStatus.SUCCEEDED
    original_status: WorkflowStatus | None = None
    task_start_time: int | None = None


@dataclass(kw_only=True)
class PauseTask(TaskLevel):
    """Pause a task while its workflow is paused; it resumes when the workflow does."""
    pass


@dataclass(kw_only=True)
class InvalidTaskId(TaskLevel):
    """Names a task id that is not stored; the engine logs it and drops it."""
    pass


@dataclass(kw_only=True)
class InvalidTaskType(TaskLevel):
    """Names a task type (``task_type_name``) no implementation is registered for; the engine logs it
    and drops it.
    """
    task_type_name: str = ""


# --- serialisation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _FieldSpec:
    """How one field is checked and converted; ``kind`` None means any JSON value passes through."""

    name: str
    kind: type[Any] | None
    optional: bool


def _field_spec(name: str, hint: Any) -> _FieldSpec:
    optional = False
    if get_origin(hint) in (Union, types.UnionType):
        args = get_args(hint)
        rest = [a for a in args if a is not type(None)]
        optional = len(rest) < len(args)
        hint = rest[0] if len(rest) == 1 else Any
    base = get_origin(hint) or hint  # dict[str, Any] is checked as dict; its contents pass through
    if base is Any or not isinstance(base, type):
        return _FieldSpec(name, None, optional)
    return _FieldSpec(name, base, optional)


_SPECS: dict[type[Message], tuple[_FieldSpec, ...]] = {}


def _field_specs(cls: type[Message]) -> tuple[_FieldSpec, ...]:
    """Resolved once per class: string annotations need evaluating, which is too slow per message."""
    specs = _SPECS.get(cls)
    if specs is None:
        hints = get_type_hints(cls)
        specs = tuple(_field_spec(f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.init)
        _SPECS[cls] = specs
    return specs


def _encode(value: Any) -> Any:
    # Enums go by member NAME: WorkflowStatus values are tuples, which JSON would turn into lists.
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, (dict, list)):
        return copy.deepcopy(value)  # the stored payload must not change when the message does
    return value


def _brief(value: Any) -> str:
    """A repr short enough for a log line, since a corrupt payload can hold anything."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _decode(type_name: str, spec: _FieldSpec, value: Any) -> Any:
    if value is None and spec.optional:
        return None
    kind = spec.kind
    if kind is None:
        return value
    where = f"{type_name}.{spec.name}"
    if issubclass(kind, Enum):
        if isinstance(value, str) and value in kind.__members__:
            return kind[value]
        raise MessageDecodeError(f"{where}: {_brief(value)} is not a {kind.__name__} member name")
    # bool is an int subclass, and JSON has one number type: mirror JSON, not Python's hierarchy.
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise MessageDecodeError(f"{where}: expected {kind.__name__}, got {type(value).__name__}")
    return copy.deepcopy(value) if isinstance(value, (dict, list)) else value


def message_type_name(message: Message) -> str:
    """The name a queue stores; the class name, so rows stay readable and match upstream's."""
    return type(message).__name__


#: Upstream's name for :func:`message_type_name`, kept so engine code ports unchanged.
get_message_type_name = message_type_name


def serialize_message(message: Message) -> tuple[str, dict[str, Any]]:
    """Type name and a JSON-ready payload holding every field, metadata included.

    Refuses classes that are not registered, since such a row could never be read back.
    """
    name = message_type_name(message)
    if _REGISTRY.get(name) is not type(message):
        raise ValueError(f"{name!r} is not a registered message type")
    payload = {spec.name: _encode(getattr(message, spec.name)) for spec in _field_specs(type(message))}
    return name, payload


def deserialize_message(type_name: str, payload: Mapping[str, Any]) -> Message:
    """Rebuild the exact message type from what :func:`serialize_message` produced.

    Strict on purpose: every field must be present and none may be unknown, so a corrupt or
    foreign row fails here, named, instead of later inside a handler.

    Raises:
        MessageDecodeError: (a ValueError) naming the unknown type or the offending field.
    """
    cls = _REGISTRY.get(type_name)
    if cls is None:
        raise MessageDecodeError(f"unknown message type {_brief(type_name)}")
    if not isinstance(payload, Mapping):
        raise MessageDecodeError(f"{type_name} payload is a {type(payload).__name__}, not an object")
    specs = _field_specs(cls)
    known = {spec.name for spec in specs}
    extra = sorted(str(key) for key in payload if key not in known)
    if extra:
        raise MessageDecodeError(f"{type_name} payload has unknown field(s): {', '.join(extra)}")
    missing = [spec.name for spec in specs if spec.name not in payload]
    if missing:
        raise MessageDecodeError(f"{type_name} payload is missing field(s): {', '.join(missing)}")
    return cls(**{spec.name: _decode(type_name, spec, payload[spec.name]) for spec in specs})
