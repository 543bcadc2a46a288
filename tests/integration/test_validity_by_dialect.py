"""Whether a value can be stored does not depend on the dialect: the column types decide, alike.

What this file proves, on every dialect: each bad value of the tables below (a string, a float
or a bool in an integer field, an int in a boolean field, a non-string in a text field, an
over-long id or ref id, NUL, a lone surrogate, an unknown enum member, a document the JSON
encoding refuses) fed to ``store`` or to ``store_stage`` is refused with one ``ValidationError``,
the same path and the same message on SQLite, PostgreSQL and MariaDB, and nothing is written.
Borderline values that are valid (the ends of the integer ranges, ids and names at their length
limit in 4-byte characters, Unicode's last code point) are stored and read back unchanged on
every dialect.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from stabilize.errors import ValidationError
from stabilize.models import StageExecution, SyntheticStageOwner, TaskExecution, Workflow, WorkflowStatus
from stabilize.persistence.sql.store import SqlWorkflowStore
from tests.integration.builders import chain, snapshot, stage_row_version

LONG_ID = "0" * 27  # a ULID has 26 characters
LONG_REF = "r" * 256  # ref ids and names hold 255


def setting(target: Callable[[Any], Any], field: str, value: Any) -> Callable[[Any], None]:
    """Set ``field`` of the object ``target`` picks out of a workflow or a stage to ``value``."""
    return lambda root: setattr(target(root), field, value)


def wf(workflow: Workflow) -> Workflow:
    return workflow


def second_stage(workflow: Workflow) -> StageExecution:
    return workflow.stages[1]


def its_task(workflow: Workflow) -> TaskExecution:
    return workflow.stages[1].tasks[0]


def the_stage(stage: StageExecution) -> StageExecution:
    return stage


def first_task(stage: StageExecution) -> TaskExecution:
    return stage.tasks[0]


@dataclass(frozen=True)
class Bad:
    """A bad value, where it is put, and the one refusal every dialect must give."""

    name: str
    change: Callable[[Any], None]
    path: str
    problem: str


NUL = "text contains a NUL character, which PostgreSQL cannot store"
SURROGATE = "text contains a lone surrogate and is not valid Unicode"

#: Fed to ``store`` of a new two-stage workflow (``chain(2, 2)``).
BAD_WORKFLOWS = [
    Bad(
        "str in int",
        setting(second_stage, "start_time", "12"),
        "stages[1].start_time",
        "must be an integer (epoch ms), got '12'",
    ),
    Bad(
        "float in int",
        setting(second_stage, "end_time", 12.0),
        "stages[1].end_time",
        "must be an integer (epoch ms), got 12.0",
    ),
    Bad(
        "bool in int",
        setting(second_stage, "scheduled_time", True),
        "stages[1].scheduled_time",
        "must be an integer (epoch ms), got True",
    ),
    Bad(
        "int beyond 64 bits",
        setting(wf, "start_time", 2**63),
        "workflow.start_time",
        "9223372036854775808 is out of range for a 64-bit integer column",
    ),
    Bad(
        "bool in a count",
        setting(wf, "max_concurrent_executions", False),
        "workflow.max_concurrent_executions",
        "must be an integer, got False",
    ),
    Bad(
        "int beyond 32 bits",
        setting(second_stage, "version", 2**31),
        "stages[1].version",
        "2147483648 is out of range for a 32-bit integer column",
    ),
    Bad("int in bool", setting(wf, "is_canceled", 1), "workflow.is_canceled", "must be True or False, got 1"),
    Bad(
        "str in bool",
        setting(its_task, "loop_end", "yes"),
        "stages[1].tasks[0].loop_end",
        "must be True or False, got 'yes'",
    ),
    Bad("int in text", setting(second_stage, "name", 5), "stages[1].name", "must be a string, got int"),
    Bad(
        "bytes in text",
        setting(its_task, "implementing_class", b"x.Y"),
        "stages[1].tasks[0].implementing_class",
        "must be a string, got bytes",
    ),
    Bad(
        "None in text",
        setting(wf, "application", None),
        "workflow.application",
        "must be a string, got NoneType",
    ),
    Bad(
        "over-long workflow id",
        setting(wf, "id", LONG_ID),
        "workflow.id",
        "is 27 characters long, the limit is 26",
    ),
    Bad(
        "over-long task id",
        setting(its_task, "id", LONG_ID),
        "stages[1].tasks[0].id",
        "is 27 characters long, the limit is 26",
    ),
    Bad(
        "over-long ref id",
        setting(second_stage, "ref_id", LONG_REF),
        "stages[1].ref_id",
        "is 256 characters long, the limit is 255",
    ),
    Bad(
        "over-long requisite",
        setting(second_stage, "requisite_stage_ref_ids", {LONG_REF}),
        "stages[1].requisite_stage_ref_ids.requisite_ref_id",
        "is 256 characters long, the limit is 255",
    ),
    Bad("NUL in text", setting(second_stage, "type", "a\x00b"), "stages[1].type", NUL),
    Bad("NUL in a document", setting(wf, "context", {"k": ["ok", "a\x00"]}), "workflow.context['k'][1]", NUL),
    Bad("lone surrogate in text", setting(wf, "name", "\ud800"), "workflow.name", SURROGATE),
    Bad(
        "lone surrogate in a key",
        setting(second_stage, "outputs", {"\udcff": 1}),
        "stages[1].outputs['\\udcff']",
        SURROGATE,
    ),
    Bad(
        "status by name",
        setting(second_stage, "status", "RUNNING"),
        "stages[1].status",
        "'RUNNING' is not a WorkflowStatus",
    ),
    Bad(
        "member of another enum",
        setting(its_task, "status", SyntheticStageOwner.STAGE_AFTER),
        "stages[1].tasks[0].status",
        "<SyntheticStageOwner.STAGE_AFTER: 'STAGE_AFTER'> is not a WorkflowStatus",
    ),
    Bad(
        "unknown workflow type",
        setting(wf, "type", "PIPELINE"),
        "workflow.type",
        "'PIPELINE' is not a WorkflowType",
    ),
    Bad(
        "NaN in a document",
        setting(second_stage, "context", {"x": math.nan}),
        "stages[1].context['x']",
        "nan is not a finite number and has no JSON form",
    ),
    Bad(
        "object in a document",
        setting(its_task, "task_exception_details", {"e": object()}),
        "stages[1].tasks[0].task_exception_details['e']",
        "a object cannot be stored as JSON",
    ),
    Bad("list as a document", setting(wf, "context", []), "workflow.context", "must be a dict, got list"),
    Bad(
        "trigger of the wrong type",
        setting(wf, "trigger", "manual"),
        "workflow.trigger",
        "must be a Trigger, got str",
    ),
]

#: Fed to ``store_stage`` of the stored second stage of ``chain(2, 2)``, read back first.
BAD_STAGES = [
    Bad(
        "str in int",
        setting(the_stage, "start_time", "12"),
        "stage.start_time",
        "must be an integer (epoch ms), got '12'",
    ),
    Bad(
        "float in int",
        setting(the_stage, "start_time_expiry", 1.5),
        "stage.start_time_expiry",
        "must be an integer (epoch ms), got 1.5",
    ),
    Bad(
        "bool in int",
        setting(the_stage, "end_time", False),
        "stage.end_time",
        "must be an integer (epoch ms), got False",
    ),
    Bad(
        "bool as version",
        setting(the_stage, "version", True),
        "stage.version",
        "must be an integer, got True",
    ),
    Bad(
        "task int beyond 64 bits",
        setting(first_task, "start_time", -(2**63) - 1),
        "stage.tasks[0].start_time",
        "-9223372036854775809 is out of range for a 64-bit integer column",
    ),
    Bad(
        "int in bool",
        setting(first_task, "stage_start", 1),
        "stage.tasks[0].stage_start",
        "must be True or False, got 1",
    ),
    Bad("int in text", setting(first_task, "name", 7), "stage.tasks[0].name", "must be a string, got int"),
    Bad(
        "over-long task name",
        setting(first_task, "name", LONG_REF),
        "stage.tasks[0].name",
        "is 256 characters long, the limit is 255",
    ),
    Bad(
        "over-long new task id",
        lambda s: s.add_task(TaskExecution(id=LONG_ID, name="n", implementing_class="c")),
        "stage.tasks[2].id",
        "is 27 characters long, the limit is 26",
    ),
    Bad(
        "NUL in a task name",
        setting(first_task, "implementing_class", "x\x00"),
        "stage.tasks[0].implementing_class",
        NUL,
    ),
    Bad("NUL in a document key", setting(the_stage, "context", {"a\x00": 1}), "stage.context['a\\x00']", NUL),
    Bad(
        "lone surrogate in a document",
        setting(the_stage, "outputs", {"s": ["\udfff"]}),
        "stage.outputs['s'][0]",
        SURROGATE,
    ),
    Bad(
        "lone surrogate in a task name",
        setting(first_task, "name", "t\ud801"),
        "stage.tasks[0].name",
        SURROGATE,
    ),
    Bad(
        "status by name",
        setting(the_stage, "status", "SUCCEEDED"),
        "stage.status",
        "'SUCCEEDED' is not a WorkflowStatus",
    ),
    Bad(
        "task status by name",
        setting(first_task, "status", "NOT_STARTED"),
        "stage.tasks[0].status",
        "'NOT_STARTED' is not a WorkflowStatus",
    ),
    Bad(
        "infinity in a document",
        setting(the_stage, "outputs", {"x": {"y": -math.inf}}),
        "stage.outputs['x']['y']",
        "-inf is not a finite number and has no JSON form",
    ),
    Bad(
        "set in a document",
        setting(the_stage, "context", {"s": {object()}}),
        "stage.context['s'][0]",
        "a object cannot be stored as JSON",
    ),
]

BAD_PHASES = [
    ("unknown phase", "RUNNNING"),
    ("phase of another enum", SyntheticStageOwner.STAGE_BEFORE),
    ("phase as an int", 1),
]


def _ids(cases: list[Bad]) -> list[str]:
    return [case.name for case in cases]


def refusal(error: pytest.ExceptionInfo[ValidationError]) -> tuple[str, str, str]:
    return error.value.path, error.value.problem, str(error.value)


@pytest.mark.parametrize("bad", BAD_WORKFLOWS, ids=_ids(BAD_WORKFLOWS))
def test_store_refuses_the_same_way_on_every_dialect(store: SqlWorkflowStore, bad: Bad) -> None:
    workflow = chain(2, 2)
    bad.change(workflow)
    before = snapshot(store.engine)
    with pytest.raises(ValidationError) as refused:
        store.store(workflow)
    assert refusal(refused) == (bad.path, bad.problem, f"{bad.path}: {bad.problem}")
    assert snapshot(store.engine) == before


@pytest.mark.parametrize("bad", BAD_STAGES, ids=_ids(BAD_STAGES))
def test_store_stage_refuses_the_same_way_on_every_dialect(store: SqlWorkflowStore, bad: Bad) -> None:
    workflow = chain(2, 2)
    store.store(workflow)
    stage = store.retrieve_stage(workflow.stages[1].id)
    bad.change(stage)
    before = snapshot(store.engine)
    with pytest.raises(ValidationError) as refused:
        store.store_stage(stage)
    assert refusal(refused) == (bad.path, bad.problem, f"{bad.path}: {bad.problem}")
    assert snapshot(store.engine) == before


@pytest.mark.parametrize(("name", "phase"), BAD_PHASES, ids=[name for name, _ in BAD_PHASES])
def test_a_bad_expected_phase_is_refused_not_a_lost_race(
    store: SqlWorkflowStore, name: str, phase: Any
) -> None:
    workflow = chain(1, 1)
    store.store(workflow)
    stage = store.retrieve_stage(workflow.stages[0].id)
    before = snapshot(store.engine)
    with pytest.raises(ValidationError) as refused:
        store.store_stage(stage, expected_phase=phase)
    names = ", ".join(WorkflowStatus.__members__)
    assert refusal(refused)[:2] == (
        "expected_phase",
        f"{phase!r} is not a WorkflowStatus name (one of {names})",
    )
    assert snapshot(store.engine) == before


def test_a_version_that_cannot_move_is_refused_by_name(store: SqlWorkflowStore) -> None:
    """The highest version a row holds (2**31 - 1) cannot be moved by one more write: the refusal
    names the stage's version, as every other refusal names its field, and writes nothing."""
    workflow = chain(1, 1)
    workflow.stages[0].version = 2**31 - 1
    store.store(workflow)
    stage = store.retrieve_stage(workflow.stages[0].id)
    assert stage.version == 2**31 - 1
    before = snapshot(store.engine)
    with pytest.raises(ValidationError) as refused:
        store.store_stage(stage)
    assert refused.value.path == "stage.version"
    assert snapshot(store.engine) == before
    assert stage_row_version(store.engine, stage.id) == 2**31 - 1


# -- borderline values that are valid: stored and read back unchanged everywhere ---------------------


def _borderline(workflow: Workflow) -> None:
    workflow.id = "Z" * 26
    workflow.name = "🚀" * 255  # 255 characters of 4 bytes each
    workflow.start_time = 2**63 - 1
    workflow.end_time = -(2**63)
    workflow.start_time_expiry = 0
    workflow.max_concurrent_executions = 2**31 - 1
    workflow.context = {"last": "\U0010ffff", "bom": "\ufeff", "sep": "\u2028", "big": 2**63, "small": 9.9e15}
    stage = workflow.stages[1]
    stage.ref_id = "ß" * 255
    stage.requisite_stage_ref_ids = {"s0", "ö" * 255}
    stage.version = 2**31 - 2
    stage.scheduled_time = -1
    task = stage.tasks[0]
    task.name = "\U0001f9ea" * 255
    task.version = -(2**31)


def test_borderline_values_are_stored_and_read_back_unchanged(store: SqlWorkflowStore) -> None:
    workflow = chain(2, 2)
    _borderline(workflow)
    store.store(workflow)
    assert store.retrieve(workflow.id) == workflow

    stage = store.retrieve_stage(workflow.stages[1].id)
    stage.start_time = 2**63 - 1
    stage.tasks[1].end_time = -(2**63)
    stage.context = {"edge": ["\U0010ffff", 2**63 - 1, -(2**63), 5e-324, -0.0]}
    store.store_stage(stage)
    assert stage.version == 2**31 - 1
    again = store.retrieve_stage(stage.id)
    assert again == stage
    assert again.context == {"edge": ["\U0010ffff", 2**63 - 1, -(2**63), 5e-324, 0.0]}
