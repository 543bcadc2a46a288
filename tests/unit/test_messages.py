"""Queue messages survive the by-name JSON round trip a queue row puts them through."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, get_type_hints

import pytest

from stabilize.models.stage import SyntheticStageOwner
from stabilize.models.status import WorkflowStatus
from stabilize.queue import messages as m
from stabilize.queue.interface import Queue
from tests.message_samples import non_default

EXPECTED_TYPES = {
    "StartWorkflow",
    "CompleteWorkflow",
    "CancelWorkflow",
    "StartWaitingWorkflows",
    "CancelRegion",
    "InvalidWorkflowId",
    "StartStage",
    "CompleteStage",
    "SkipStage",
    "CancelStage",
    "RestartStage",
    "ResumeStage",
    "ContinueParentStage",
    "JumpToStage",
    "SignalStage",
    "AddMultiInstance",
    "InvalidStageId",
    "StartTask",
    "RunTask",
    "CompleteTask",
    "PauseTask",
    "InvalidTaskId",
    "InvalidTaskType",
}

ALL_TYPES = sorted(m.MESSAGE_TYPES.values(), key=lambda cls: cls.__name__)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _build(cls: type[m.Message]) -> m.Message:
    hints = get_type_hints(cls)
    kwargs = {f.name: non_default(f.name, hints[f.name], i) for i, f in enumerate(dataclasses.fields(cls))}
    msg = cls(**kwargs)
    for f in dataclasses.fields(cls):
        assert getattr(msg, f.name) != _default(f), f"{cls.__name__}.{f.name} sample equals its default"
    return msg


def _through_json(payload: dict[str, Any]) -> dict[str, Any]:
    loaded = json.loads(json.dumps(payload))
    assert isinstance(loaded, dict)
    return loaded


def test_registry_holds_every_upstream_type_and_no_base() -> None:
    assert set(m.MESSAGE_TYPES) == EXPECTED_TYPES
    for base in (m.Message, m.WorkflowLevel, m.StageLevel, m.TaskLevel):
        assert base.__name__ not in m.MESSAGE_TYPES


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.__name__)
def test_round_trip_with_every_field_set(cls: type[m.Message]) -> None:
    msg = _build(cls)
    name, payload = m.serialize_message(msg)
    assert name == cls.__name__ == m.message_type_name(msg)
    assert set(payload) == {f.name for f in dataclasses.fields(cls)}
    back = m.deserialize_message(name, _through_json(payload))
    assert type(back) is cls
    assert back == msg
    for f in dataclasses.fields(cls):
        assert type(getattr(back, f.name)) is type(getattr(msg, f.name)), f.name


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.__name__)
def test_round_trip_with_defaults(cls: type[m.Message]) -> None:
    msg = cls()
    back = m.deserialize_message(*_through_json_pair(m.serialize_message(msg)))
    assert back == msg


def _through_json_pair(pair: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    return pair[0], _through_json(pair[1])


def test_enums_are_stored_by_member_name() -> None:
    msg = m.CompleteTask(status=WorkflowStatus.FAILED_CONTINUE, original_status=WorkflowStatus.TERMINAL)
    _, payload = m.serialize_message(msg)
    assert payload["status"] == "FAILED_CONTINUE"
    assert payload["original_status"] == "TERMINAL"
    _, payload = m.serialize_message(m.ContinueParentStage(phase=SyntheticStageOwner.STAGE_BEFORE))
    assert payload["phase"] == "STAGE_BEFORE"


def test_optional_enum_none_stays_none() -> None:
    name, payload = m.serialize_message(m.CompleteTask(original_status=None, task_start_time=None))
    assert payload["original_status"] is None
    back = m.deserialize_message(name, _through_json(payload))
    assert isinstance(back, m.CompleteTask)
    assert back.original_status is None
    assert back.task_start_time is None


def test_payload_does_not_alias_nested_values() -> None:
    msg = m.JumpToStage(jump_context={"a": {"b": [1]}})
    name, payload = m.serialize_message(msg)
    msg.jump_context["a"]["b"].append(2)
    assert payload["jump_context"] == {"a": {"b": [1]}}
    back = m.deserialize_message(name, payload)
    payload["jump_context"]["a"]["b"].append(3)
    assert isinstance(back, m.JumpToStage)
    assert back.jump_context == {"a": {"b": [1]}}


def test_unknown_type_name_is_named() -> None:
    with pytest.raises(ValueError, match="unknown message type 'Foo'"):
        m.deserialize_message("Foo", {})


@pytest.mark.parametrize("missing", ["message_id", "created_at", "execution_id", "task_id", "status"])
def test_missing_field_is_named(missing: str) -> None:
    name, payload = m.serialize_message(m.CompleteTask())
    del payload[missing]
    with pytest.raises(ValueError, match=rf"missing field.*{missing}"):
        m.deserialize_message(name, payload)


def test_extra_field_is_named() -> None:
    name, payload = m.serialize_message(m.StartWorkflow())
    payload["application"] = "x"
    with pytest.raises(ValueError, match=r"unknown field.*application"):
        m.deserialize_message(name, payload)


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("status", "NOPE", "CompleteTask.status: 'NOPE' is not a WorkflowStatus"),
        ("status", ["SUCCEEDED", True, False], "CompleteTask.status"),
        ("original_status", "SUCCESS", "CompleteTask.original_status"),
        ("attempts", "3", "CompleteTask.attempts: expected int, got str"),
        ("attempts", True, "CompleteTask.attempts: expected int, got bool"),
        ("task_start_time", 1.5, "CompleteTask.task_start_time: expected int"),
        ("task_id", 7, "CompleteTask.task_id: expected str"),
        ("status", None, "CompleteTask.status"),
    ],
)
def test_wrongly_typed_field_is_named(field: str, value: Any, pattern: str) -> None:
    name, payload = m.serialize_message(m.CompleteTask())
    payload[field] = value
    with pytest.raises(m.MessageDecodeError, match=pattern):
        m.deserialize_message(name, payload)


def test_non_object_payload_is_rejected() -> None:
    with pytest.raises(ValueError, match="not an object"):
        m.deserialize_message("StartWorkflow", ["not", "a", "dict"])  # type: ignore[arg-type]


def test_abstract_bases_are_not_serialisable() -> None:
    with pytest.raises(ValueError, match="StageLevel"):
        m.serialize_message(m.StageLevel())


def test_duplicate_type_name_is_refused() -> None:
    with pytest.raises(TypeError, match="StartWorkflow"):

        @dataclasses.dataclass(kw_only=True)
        class StartWorkflow(m.Message):
            pass

    assert m.MESSAGE_TYPES["StartWorkflow"] is m.StartWorkflow


def test_back_to_back_messages_get_distinct_ids_and_current_time() -> None:
    before = time.time_ns() // 1_000_000
    first, second = m.StartWorkflow(), m.StartWorkflow()
    after = time.time_ns() // 1_000_000
    assert first.message_id != second.message_id
    assert len(first.message_id) == 26  # a ULID string
    assert before <= first.created_at <= second.created_at <= after
    assert (first.attempts, first.max_attempts) == (0, 10)


def test_error_context_survives_the_round_trip() -> None:
    msg = m.RunTask(task_type="shell")
    msg.set_error_context(RuntimeError("boom"))
    back = m.deserialize_message(*m.serialize_message(msg))
    assert isinstance(back, m.RunTask)
    assert (back.last_error, back.last_error_type) == ("boom", "RuntimeError")


def test_queue_declares_every_operation_abstract() -> None:
    assert Queue.__abstractmethods__ == {
        "push",
        "poll",
        "poll_one",
        "ack",
        "ensure",
        "reschedule",
        "extend_lock",
        "size",
        "clear",
        "has_pending_message_for_task",
        "has_pending_message_for_stage",
        "has_pending_message_for_execution",
        "live_delivery_keys",
        "move_to_dlq",
        "purge_workflow",
        "close",
    }
