"""CONTRACT.md section 7: refused values name their path and leave the database as it was;
the standard types the engine's tasks produce are stored in their one documented encoding."""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum, IntEnum
from pathlib import Path, PurePosixPath
from typing import Any, cast
from uuid import UUID

import pytest

from stabilize.errors import DuplicateError, ValidationError
from stabilize.models import Trigger, Workflow, WorkflowStatus
from stabilize.persistence.sql.store import SqlWorkflowStore
from tests.integration.builders import snapshot, stage, task, total_rows, workflow


def sample() -> Workflow:
    return workflow(stage("first", tasks=1), stage("second", {"first"}, tasks=2))


@dataclass
class Case:
    mutate: Callable[[Workflow], None]
    path: str
    problem: str  # a regular expression the message must match after the path


def set_context(target: str, value: Any, key: str = "when") -> Callable[[Workflow], None]:
    def mutate(wf: Workflow) -> None:
        if target == "workflow":
            wf.context[key] = value
        elif target == "parameters":
            wf.trigger.parameters[key] = value
        elif target == "outputs":
            wf.stages[0].outputs[key] = value
        elif target == "details":
            wf.stages[1].tasks[1].task_exception_details["exception"] = {key: value}
        else:
            wf.stages[1].context[key] = value

    return mutate


def setter(obj: str, field: str, value: Any) -> Callable[[Workflow], None]:
    def mutate(wf: Workflow) -> None:
        target: Any = {
            "workflow": wf,
            "stage": wf.stages[1],
            "stage0": wf.stages[0],
            "task": wf.stages[1].tasks[0],
            "task1": wf.stages[1].tasks[1],
        }[obj]
        setattr(target, field, value)

    return mutate


class Opaque:
    pass


WHEN = "stages[1].context['when']"
NOT_FINITE = "not a finite number"
NO_JSON = "cannot be stored as JSON"

CASES: dict[str, Case] = {
    # JSON values the contract refuses, wherever they hide
    "nan": Case(set_context("stage", float("nan")), WHEN, NOT_FINITE),
    "inf": Case(set_context("stage", float("inf")), WHEN, NOT_FINITE),
    "-inf": Case(set_context("stage", float("-inf")), WHEN, NOT_FINITE),
    "decimal-nan": Case(set_context("stage", Decimal("NaN")), WHEN, NOT_FINITE),
    "decimal-inf": Case(set_context("stage", Decimal("-Infinity")), WHEN, NOT_FINITE),
    "object": Case(set_context("stage", Opaque()), WHEN, "a Opaque " + NO_JSON),
    "bytes": Case(set_context("stage", b"raw"), WHEN, NO_JSON),
    "complex": Case(set_context("stage", 1j), WHEN, NO_JSON),
    "nul-string": Case(set_context("stage", "a\x00b"), WHEN, "NUL"),
    "lone-surrogate": Case(set_context("stage", "a\ud800b"), WHEN, "surrogate"),
    "nul-key": Case(set_context("stage", 1, key="wh\x00en"), "stages[1].context['wh\\x00en']", "NUL"),
    "int-key": Case(set_context("stage", {1: "one"}), WHEN + "[1]", "keys must be strings, got int"),
    "none-key": Case(set_context("stage", {None: "x"}), WHEN + "[None]", "keys must be strings"),
    "nested": Case(
        set_context("stage", {"deep": [1, {"x": float("nan")}]}), WHEN + "['deep'][1]['x']", NOT_FINITE
    ),
    "in-tuple": Case(set_context("stage", (1, Opaque())), WHEN + "[1]", NO_JSON),
    "workflow-context": Case(set_context("workflow", float("inf")), "workflow.context['when']", NOT_FINITE),
    "trigger-parameters": Case(
        set_context("parameters", Opaque()), "workflow.trigger['parameters']['when']", NO_JSON
    ),
    "trigger-artifacts": Case(
        lambda wf: wf.trigger.artifacts.append({"x": float("nan")}),
        "workflow.trigger['artifacts'][0]['x']",
        NOT_FINITE,
    ),
    "stage-outputs": Case(set_context("outputs", "\x00"), "stages[0].outputs['when']", "NUL"),
    "task-details": Case(
        set_context("details", float("nan")),
        "stages[1].tasks[1].task_exception_details['exception']['when']",
        NOT_FINITE,
    ),
    "context-not-a-dict": Case(setter("stage", "context", ["a"]), "stages[1].context", "must be a dict"),
    # over-long ids, ref ids and names
    "workflow-id": Case(
        setter("workflow", "id", "W" * 27), "workflow.id", "27 characters long, the limit is 26"
    ),
    "stage-id": Case(setter("stage", "id", "S" * 27), "stages[1].id", "the limit is 26"),
    "task-id": Case(setter("task", "id", "T" * 27), "stages[1].tasks[0].id", "the limit is 26"),
    "parent-id": Case(
        setter("stage", "parent_stage_id", "P" * 27), "stages[1].parent_stage_id", "limit is 26"
    ),
    "ref-id": Case(
        setter("stage", "ref_id", "r" * 256), "stages[1].ref_id", "256 characters long, the limit is 255"
    ),
    "requisite": Case(
        setter("stage", "requisite_stage_ref_ids", {"r" * 256}),
        "stages[1].requisite_stage_ref_ids.requisite_ref_id",
        "limit is 255",
    ),
    "workflow-name": Case(setter("workflow", "name", "n" * 256), "workflow.name", "limit is 255"),
    "application": Case(setter("workflow", "application", "é" * 256), "workflow.application", "limit is 255"),
    "stage-name": Case(setter("stage0", "name", "🚀" * 256), "stages[0].name", "limit is 255"),
    "task-name": Case(setter("task1", "name", "n" * 256), "stages[1].tasks[1].name", "limit is 255"),
    "implementing-class": Case(
        setter("task", "implementing_class", "c" * 256),
        "stages[1].tasks[0].implementing_class",
        "limit is 255",
    ),
    "pipeline-config-id": Case(
        setter("workflow", "pipeline_config_id", "p" * 256), "workflow.pipeline_config_id", "limit is 255"
    ),
    "canceled-by": Case(setter("workflow", "canceled_by", "c" * 256), "workflow.canceled_by", "limit is 255"),
    # text no database may hold, and non-text in text columns
    "nul-in-name": Case(setter("workflow", "name", "a\x00b"), "workflow.name", "NUL"),
    "nul-in-ref-id": Case(setter("stage", "ref_id", "a\x00"), "stages[1].ref_id", "NUL"),
    "nul-in-reason": Case(
        setter("workflow", "cancellation_reason", "a\x00b"), "workflow.cancellation_reason", "NUL"
    ),
    "surrogate-in-name": Case(setter("stage", "name", "a\udc80"), "stages[1].name", "surrogate"),
    "surrogate-in-reason": Case(
        setter("workflow", "cancellation_reason", "\ud83d"), "workflow.cancellation_reason", "surrogate"
    ),
    "int-name": Case(setter("workflow", "name", 5), "workflow.name", "must be a string, got int"),
    "int-requisite": Case(
        setter("stage", "requisite_stage_ref_ids", {1}),
        "stages[1].requisite_stage_ref_ids.requisite_ref_id",
        "must be a string",
    ),
    # unknown statuses and enums
    "workflow-status": Case(
        setter("workflow", "status", "RUNNING"), "workflow.status", "not a WorkflowStatus"
    ),
    "stage-status": Case(setter("stage", "status", "SUCCEEDED"), "stages[1].status", "not a WorkflowStatus"),
    "task-status": Case(setter("task", "status", None), "stages[1].tasks[0].status", "not a WorkflowStatus"),
    "workflow-type": Case(setter("workflow", "type", "PIPELINE"), "workflow.type", "not a WorkflowType"),
    "synthetic-owner": Case(
        setter("stage", "synthetic_stage_owner", "STAGE_BEFORE"),
        "stages[1].synthetic_stage_owner",
        "not a SyntheticStageOwner",
    ),
    # times and counters
    "time-as-string": Case(
        setter("workflow", "start_time", "123"), "workflow.start_time", "must be an integer"
    ),
    "time-as-float": Case(setter("stage", "end_time", 1.5), "stages[1].end_time", "must be an integer"),
    "time-as-bool": Case(
        setter("task", "start_time", True), "stages[1].tasks[0].start_time", "must be an integer"
    ),
    "time-beyond-bigint": Case(
        setter("workflow", "start_time", 2**63), "workflow.start_time", "out of range"
    ),
    "stage-time-beyond-bigint": Case(
        setter("stage", "scheduled_time", -(2**63) - 1), "stages[1].scheduled_time", "out of range"
    ),
    "max-concurrent-beyond-int": Case(
        setter("workflow", "max_concurrent_executions", 2**31),
        "workflow.max_concurrent_executions",
        "out of range",
    ),
    # the shape of the workflow
    "duplicate-ref-id": Case(
        setter("stage", "ref_id", "first"), "stages[1].ref_id", r"also the ref id of stages\[0\]"
    ),
    "not-a-stage": Case(
        lambda wf: cast(list[Any], wf.stages).append("stage"), "stages[2]", "must be a StageExecution"
    ),
    "not-a-task": Case(
        lambda wf: cast(list[Any], wf.stages[1].tasks).append({}),
        "stages[1].tasks[2]",
        "must be a TaskExecution",
    ),
    "not-a-trigger": Case(setter("workflow", "trigger", "manual"), "workflow.trigger", "must be a Trigger"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_store_refuses_bad_values_naming_the_path_and_writes_nothing(
    store: SqlWorkflowStore, case: str
) -> None:
    wf = sample()
    CASES[case].mutate(wf)

    with pytest.raises(ValidationError) as caught:
        store.store(wf)

    error = caught.value
    assert error.path == CASES[case].path
    message = str(error)
    assert message.startswith(CASES[case].path + ": "), message
    assert re.search(CASES[case].problem, message), message
    assert total_rows(store.engine) == 0


# -- the other writing methods ----------------------------------------------------------------


def test_add_stage_of_an_unknown_workflow_is_refused(store: SqlWorkflowStore) -> None:
    never_stored = sample()
    orphan = stage("orphan", tasks=1)
    never_stored.add_stage(orphan)

    with pytest.raises(
        ValidationError, match=rf"^stage\.execution: workflow '{never_stored.id}' is not stored"
    ):
        store.add_stage(orphan)

    assert total_rows(store.engine) == 0


def test_add_stage_of_a_detached_stage_is_refused(store: SqlWorkflowStore) -> None:
    detached = stage("alone")

    with pytest.raises(ValidationError, match=r"^stage\.execution: .*not attached"):
        store.add_stage(detached)

    assert total_rows(store.engine) == 0


def stored_sample(store: SqlWorkflowStore) -> Workflow:
    wf = sample()
    store.store(wf)
    return wf


def test_add_stage_with_a_bad_value_writes_nothing(store: SqlWorkflowStore) -> None:
    wf = stored_sample(store)
    before = snapshot(store.engine)
    added = stage("third", tasks=1, context={"when": {"at": float("nan")}})
    wf.add_stage(added)

    with pytest.raises(ValidationError, match=r"^stage\.context\['when'\]\['at'\]: "):
        store.add_stage(added)

    assert snapshot(store.engine) == before


def test_add_stage_with_an_existing_ref_id_writes_nothing(store: SqlWorkflowStore) -> None:
    wf = stored_sample(store)
    before = snapshot(store.engine)
    added = stage("first", tasks=1)
    wf.add_stage(added)

    with pytest.raises(DuplicateError, match="'first'"):
        store.add_stage(added)

    assert snapshot(store.engine) == before


def test_store_stage_with_a_bad_stage_value_changes_nothing(store: SqlWorkflowStore) -> None:
    wf = stored_sample(store)
    before = snapshot(store.engine)
    target = wf.stages[1]
    target.status = WorkflowStatus.RUNNING
    target.outputs = {"list": [1, float("inf")]}

    with pytest.raises(ValidationError, match=r"^stage\.outputs\['list'\]\[1\]: "):
        store.store_stage(target)

    assert snapshot(store.engine) == before
    assert target.version == 0


def test_store_stage_with_a_bad_task_value_changes_nothing(store: SqlWorkflowStore) -> None:
    wf = stored_sample(store)
    before = snapshot(store.engine)
    target = wf.stages[1]
    target.status = WorkflowStatus.RUNNING  # the stage row itself is fine
    target.tasks[1].set_exception_details({"cause": Opaque()})

    with pytest.raises(ValidationError, match=r"^stage\.tasks\[1\]\.task_exception_details\['exception'\]"):
        store.store_stage(target)

    assert snapshot(store.engine) == before
    assert target.version == 0
    assert [t.version for t in target.tasks] == [0, 0]


def test_store_stage_with_an_over_long_new_task_id_changes_nothing(store: SqlWorkflowStore) -> None:
    wf = stored_sample(store)
    before = snapshot(store.engine)
    target = wf.stages[0]
    target.add_task(task("late", id="L" * 40))

    with pytest.raises(ValidationError, match=r"^stage\.tasks\[1\]\.id: is 40 characters long"):
        store.store_stage(target)

    assert snapshot(store.engine) == before
    assert target.version == 0


def test_update_status_with_an_unknown_status_changes_nothing(store: SqlWorkflowStore) -> None:
    wf = stored_sample(store)
    before = snapshot(store.engine)
    wf.status = "SUCCEEDED"  # type: ignore[assignment]

    with pytest.raises(ValidationError, match=r"^workflow\.status: 'SUCCEEDED' is not a WorkflowStatus"):
        store.update_status(wf)

    assert snapshot(store.engine) == before


@pytest.mark.parametrize(
    ("canceled_by", "reason", "path"),
    [
        ("x" * 256, "why", "workflow.canceled_by"),
        ("me\x00", "why", "workflow.canceled_by"),
        ("me", "why\x00not", "workflow.cancellation_reason"),
    ],
)
def test_cancel_with_bad_text_changes_nothing(
    store: SqlWorkflowStore, canceled_by: str, reason: str, path: str
) -> None:
    wf = stored_sample(store)
    before = snapshot(store.engine)

    with pytest.raises(ValidationError) as caught:
        store.cancel(wf.id, canceled_by, reason)

    assert caught.value.path == path
    assert snapshot(store.engine) == before


def test_pause_with_bad_text_changes_nothing(store: SqlWorkflowStore) -> None:
    wf = stored_sample(store)
    before = snapshot(store.engine)

    with pytest.raises(ValidationError, match="paused_by"):
        store.pause(wf.id, "op\x00erator")

    assert snapshot(store.engine) == before


@pytest.mark.parametrize(
    ("message_id", "handler", "execution_id", "path"),
    [
        ("m" * 65, None, None, "message.message_id"),
        ("m", "h" * 256, None, "message.handler_type"),
        ("m", None, "e" * 27, "message.execution_id"),
        ("m\x00", None, None, "message.message_id"),
    ],
)
def test_mark_message_processed_with_bad_values_writes_nothing(
    store: SqlWorkflowStore, message_id: str, handler: str | None, execution_id: str | None, path: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        store.mark_message_processed(message_id, handler, execution_id)

    assert caught.value.path == path
    assert total_rows(store.engine) == 0


# -- limits are characters, not bytes ---------------------------------------------------------


def test_values_at_the_limits_are_stored(store: SqlWorkflowStore) -> None:
    wf = sample()
    wf.id = "W" * 26
    wf.name = "🚀" * 255  # 4 bytes each in UTF-8
    wf.application = "é" * 255
    wf.start_time = 2**63 - 1
    wf.end_time = -(2**63)
    wf.max_concurrent_executions = 2**31 - 1
    wf.stages[1].ref_id = "😀" * 255
    wf.stages[1].requisite_stage_ref_ids = {"🐍" * 255}
    wf.stages[1].tasks[0].name = "ß" * 255
    wf.cancellation_reason = "long reason " * 5_000

    store.store(wf)

    assert store.retrieve(wf.id) == wf


# -- standard types and their one encoding ----------------------------------------------------


class Color(Enum):
    RED = "red"


class Level(IntEnum):
    HIGH = 3


class Tag(str):
    pass


TZ = dt.timezone(dt.timedelta(hours=2))


def standard_values() -> dict[str, Any]:
    return {
        "datetime": dt.datetime(2024, 1, 2, 3, 4, 5, 6),
        "aware": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=TZ),
        "utc": dt.datetime(2024, 6, 1, tzinfo=dt.UTC),
        "date": dt.date(2024, 2, 29),
        "time": dt.time(23, 59, 58, 123),
        "path": Path("/srv/data dir/file.txt"),
        "pure_path": PurePosixPath("relative/ünï"),
        "uuid": UUID("12345678-1234-5678-1234-567812345678"),
        "decimal": Decimal("1.10"),
        "decimal_exp": Decimal("-1E+3"),
        "enum": Color.RED,
        "int_enum": Level.HIGH,
        "str_subclass": Tag("tagged"),
        "tuple": (1, "two", (3, dt.date(2020, 1, 1))),
        "nested": [{"when": dt.time(1, 2)}, (Color.RED,)],
        "set": {3, 1, 2},
        "frozenset": frozenset({"b", "a"}),
    }


ENCODED: dict[str, Any] = {
    "datetime": "2024-01-02T03:04:05.000006",
    "aware": "2024-01-02T03:04:05+02:00",
    "utc": "2024-06-01T00:00:00+00:00",
    "date": "2024-02-29",
    "time": "23:59:58.000123",
    "path": "/srv/data dir/file.txt",
    "pure_path": "relative/ünï",
    "uuid": "12345678-1234-5678-1234-567812345678",
    "decimal": "1.10",
    "decimal_exp": "-1E+3",
    "enum": "red",
    "int_enum": 3,
    "str_subclass": "tagged",
    "tuple": [1, "two", [3, "2020-01-01"]],
    "nested": [{"when": "01:02:00"}, ["red"]],
}


def check_encoded(loaded: dict[str, Any]) -> None:
    got = dict(loaded)
    # Sets have no order; the contract only promises a list of their items.
    assert isinstance(got["set"], list) and sorted(got.pop("set")) == [1, 2, 3]
    assert isinstance(got["frozenset"], list) and sorted(got.pop("frozenset")) == ["a", "b"]
    assert got == ENCODED
    assert type(got["int_enum"]) is int
    assert type(got["str_subclass"]) is str


def test_standard_types_round_trip_as_encoded(store: SqlWorkflowStore) -> None:
    wf = sample()
    wf.context = standard_values()
    wf.trigger = Trigger(parameters=standard_values(), payload={"at": standard_values()})
    wf.stages[0].context = standard_values()
    wf.stages[0].outputs = standard_values()
    wf.stages[1].tasks[0].task_exception_details = standard_values()
    reference = copy.deepcopy(wf)

    store.store(wf)

    assert wf == reference  # the caller's objects keep their types
    loaded = store.retrieve(wf.id)
    check_encoded(loaded.context)
    check_encoded(loaded.trigger.parameters)
    check_encoded(loaded.trigger.payload["at"])
    check_encoded(loaded.stages[0].context)
    check_encoded(loaded.stages[0].outputs)
    check_encoded(loaded.stages[1].tasks[0].task_exception_details)


def test_standard_types_through_store_stage(store: SqlWorkflowStore) -> None:
    wf = stored_sample(store)
    target = wf.stages[1]
    target.context = standard_values()
    target.tasks[1].task_exception_details = standard_values()

    store.store_stage(target)

    loaded = store.retrieve_stage(target.id)
    check_encoded(loaded.context)
    check_encoded(loaded.tasks[1].task_exception_details)
