"""The codec checked against the database itself: each field sits in its own column.

After ``store(full_workflow())``, and again after a ``store_stage`` step that also pushes a
message and marks one processed, every row of ``workflows``, ``stages``, ``stage_edges``,
``tasks``, ``processed_messages`` and ``queue_messages`` is read with SQLAlchemy Core through plain
``table()`` / ``column()`` objects: no row class, no column type, so nothing the library declares
decodes what the database holds. What this file proves, on every dialect:

- enums are stored by member name (``'SUCCEEDED'``, ``'STAGE_BEFORE'``, ``'ORCHESTRATION'``);
- every time is in its own column: the stage's start, end, expiry and scheduled times all
  differ, so a codec that swapped two of them, in the write and the read mapping alike (which a
  round trip cannot see), fails here;
- JSON columns hold the contract's JSON text (section 7: datetimes, dates and times as ISO 8601,
  UUID, Path and Decimal as strings, an Enum as its value, sets (sorted) and tuples as lists),
  compared after ``json.loads`` of the raw text, and are ``json`` on PostgreSQL (the text as
  written: JSONB would change numbers, migration 0003);
- booleans are booleans (PostgreSQL) or 0 / 1 (SQLite, MariaDB), ids and texts are the domain's;
- one edge row (workflow_id, ref_id, requisite_ref_id) per requisite, and none for a stage
  without requisites;
- stage positions in the order the stages were added, task positions in their stage's order.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any

import pytest
from sqlalchemy import Text, cast, column, inspect, select, table, text

from stabilize.models import StageExecution, SyntheticStageOwner, TaskExecution, Workflow, WorkflowStatus
from stabilize.models.ids import new_id
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue import SqlQueue, StartStage
from tests.integration.builders import RICH_JSON, full_workflow

#: Every column of every table, by hand: what the migrations must have made, independent of the
#: row classes. JSON columns are read as their text.
COLUMNS = {
    "workflows": "id type application name status context trigger start_time end_time start_time_expiry"
    " is_canceled canceled_by cancellation_reason paused pipeline_config_id is_limit_concurrent"
    " max_concurrent_executions keep_waiting_pipelines origin config_version created_at queue_table",
    "stages": "id workflow_id position ref_id type name status context outputs parent_stage_id"
    " synthetic_stage_owner start_time end_time start_time_expiry scheduled_time version join_type"
    " join_threshold split_type split_conditions mi_config deferred_choice_group milestone_ref_id"
    " milestone_status mutex_key cancel_region",
    "stage_edges": "workflow_id ref_id requisite_ref_id",
    "tasks": "id stage_id position name implementing_class status start_time end_time stage_start stage_end"
    " loop_start loop_end task_exception_details version",
    "processed_messages": "message_id handler_type execution_id processed_at",
    "queue_messages": "id message_id message_type payload deliver_at locked_until attempts max_attempts"
    " execution_id task_id last_error created_at stage_id",
}


JSON_COLUMNS = {
    "context",
    "trigger",
    "paused",
    "outputs",
    "task_exception_details",
    "payload",
    "split_conditions",
    "mi_config",
}


class Colour(StrEnum):
    """A str-valued enum, as tasks put in their outputs: stored as its value."""

    RED = "red"


def raw_rows(store: SqlWorkflowStore, name: str, **where: Any) -> list[dict[str, Any]]:
    """The table's rows as the driver returns them, JSON columns as parsed JSON text."""
    names = COLUMNS[name].split()
    plain = table(name, *(column(n) for n in names))
    selected = [cast(plain.c[n], Text).label(n) if n in JSON_COLUMNS else plain.c[n] for n in names]
    query = select(*selected).where(*(plain.c[k] == v for k, v in where.items()))
    with store.engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(query)]
    for row in rows:
        for key in JSON_COLUMNS & set(row):
            if row[key] is not None:
                assert isinstance(row[key], str), (name, key, row[key])
                row[key] = json.loads(row[key])
    return rows


def flag(dialect: str, value: bool) -> bool | int:
    """A boolean as the driver returns it: a bool from PostgreSQL, 0 or 1 from SQLite and MariaDB."""
    return value if dialect == "postgresql" else int(value)


def assert_raw(found: dict[str, Any], expected: dict[str, Any]) -> None:
    """Same keys, same values and same types (``True == 1``, but a bool is not what SQLite stores)."""
    assert found.keys() == expected.keys()
    wrong = {
        key: (found[key], expected[key])
        for key in expected
        if found[key] != expected[key] or type(found[key]) is not type(expected[key])
    }
    assert wrong == {}


def expected_stage(dialect: str, stage: StageExecution, workflow_id: str, position: int) -> dict[str, Any]:
    owner = stage.synthetic_stage_owner
    return {
        "id": stage.id,
        "workflow_id": workflow_id,
        "position": position,
        "ref_id": stage.ref_id,
        "type": stage.type,
        "name": stage.name,
        "status": stage.status.name,
        "context": stage.context,
        "outputs": stage.outputs,
        "parent_stage_id": stage.parent_stage_id,
        "synthetic_stage_owner": None if owner is None else owner.name,
        "start_time": stage.start_time,
        "end_time": stage.end_time,
        "start_time_expiry": stage.start_time_expiry,
        "scheduled_time": stage.scheduled_time,
        "version": stage.version,
        "join_type": stage.join_type.name,
        "join_threshold": stage.join_threshold,
        "split_type": stage.split_type.name,
        "split_conditions": stage.split_conditions,
        "mi_config": None if stage.mi_config is None else stage.mi_config.to_dict(),
        "deferred_choice_group": stage.deferred_choice_group,
        "milestone_ref_id": stage.milestone_ref_id,
        "milestone_status": stage.milestone_status,
        "mutex_key": stage.mutex_key,
        "cancel_region": stage.cancel_region,
    }


def expected_task(dialect: str, task: TaskExecution, stage_id: str, position: int) -> dict[str, Any]:
    return {
        "id": task.id,
        "stage_id": stage_id,
        "position": position,
        "name": task.name,
        "implementing_class": task.implementing_class,
        "status": task.status.name,
        "start_time": task.start_time,
        "end_time": task.end_time,
        "stage_start": flag(dialect, task.stage_start),
        "stage_end": flag(dialect, task.stage_end),
        "loop_start": flag(dialect, task.loop_start),
        "loop_end": flag(dialect, task.loop_end),
        "task_exception_details": task.task_exception_details,
        "version": task.version,
    }


def check_stages_and_tasks(store: SqlWorkflowStore, dialect: str, workflow: Workflow) -> None:
    stages = sorted(raw_rows(store, "stages", workflow_id=workflow.id), key=lambda r: r["position"])
    assert len(stages) == len(workflow.stages)
    for position, (found, stage) in enumerate(zip(stages, workflow.stages, strict=True)):
        assert_raw(found, expected_stage(dialect, stage, workflow.id, position))
        tasks = sorted(raw_rows(store, "tasks", stage_id=stage.id), key=lambda r: r["position"])
        assert [t["position"] for t in tasks] == list(range(len(stage.tasks)))
        for found_task, (i, task) in zip(tasks, enumerate(stage.tasks), strict=True):
            assert_raw(found_task, expected_task(dialect, task, stage.id, i))
    edges = {(r["workflow_id"], r["ref_id"], r["requisite_ref_id"]) for r in raw_rows(store, "stage_edges")}
    assert edges == {(workflow.id, s.ref_id, r) for s in workflow.stages for r in s.requisite_stage_ref_ids}


def test_the_lists_above_are_every_column_the_migrations_made(store: SqlWorkflowStore) -> None:
    """A column added without a check here fails: the lists are the tables, read from the database."""
    inspector = inspect(store.engine)
    found = {name: [c["name"] for c in inspector.get_columns(name)] for name in COLUMNS}
    assert found == {name: names.split() for name, names in COLUMNS.items()}


def test_a_stored_workflow_has_each_field_in_its_own_column(store: SqlWorkflowStore, dialect: str) -> None:
    workflow = full_workflow()
    build = workflow.stages[1]
    times = (build.start_time, build.end_time, build.start_time_expiry, build.scheduled_time)
    assert len(set(times)) == 4  # a swap of any two stage times changes a column
    assert len({workflow.start_time, workflow.end_time, workflow.start_time_expiry}) == 3
    store.store(workflow)

    [row] = raw_rows(store, "workflows")
    created_at = row["created_at"]
    assert isinstance(created_at, int) and created_at > 1_700_000_000_000
    paused = workflow.paused
    assert paused is not None
    assert_raw(
        row,
        {
            "id": workflow.id,
            "type": "ORCHESTRATION",
            "application": "billing",
            "name": "Release ✓ 2024",
            "status": "RUNNING",
            "context": {"env": "prod", "rich": RICH_JSON},
            "trigger": workflow.trigger.to_dict(),
            "start_time": 1_700_000_000_000,
            "end_time": 1_700_000_100_000,
            "start_time_expiry": 1_700_001_000_000,
            "is_canceled": flag(dialect, True),
            "canceled_by": "bob",
            "cancellation_reason": "because\nit is 'late' — très",
            "paused": {
                "paused_by": "carol",
                "pause_time": 1_700_000_010_000,
                "resume_time": 1_700_000_020_000,
                "paused_ms": 10_000,
            },
            "pipeline_config_id": "config-42",
            "is_limit_concurrent": flag(dialect, True),
            "max_concurrent_executions": 3,
            "keep_waiting_pipelines": flag(dialect, True),
            "origin": "api",
            "config_version": "v7",
            "created_at": created_at,
            "queue_table": "queue_messages",
        },
    )
    check_stages_and_tasks(store, dialect, workflow)

    # Spelled out for the fields a swap or a wrong encoding would hide in the helpers above.
    [build_row] = raw_rows(store, "stages", id=build.id)
    assert (build_row["status"], build_row["position"], build_row["version"]) == ("SUCCEEDED", 1, 4)
    assert (build_row["start_time"], build_row["end_time"]) == (1_700_000_000_000, 1_700_000_060_000)
    assert (build_row["start_time_expiry"], build_row["scheduled_time"]) == (
        1_700_000_900_000,
        1_699_999_999_000,
    )
    [before_row] = raw_rows(store, "stages", ref_id="deploy-before")
    assert before_row["synthetic_stage_owner"] == "STAGE_BEFORE"
    assert before_row["parent_stage_id"] == workflow.stages[2].id
    [approval_row] = raw_rows(store, "stages", ref_id="approval")
    assert approval_row["synthetic_stage_owner"] is None and approval_row["status"] == "TERMINAL"
    edges = {
        (r["ref_id"], r["requisite_ref_id"]) for r in raw_rows(store, "stage_edges", workflow_id=workflow.id)
    }
    assert edges == {("test", "build"), ("deploy", "build"), ("deploy", "test"), ("deploy", "approval")}
    loop = raw_rows(store, "tasks", id=build.tasks[1].id)[0]
    assert (loop["position"], loop["status"], loop["stage_start"], loop["loop_start"]) == (
        1,
        "FAILED_CONTINUE",
        flag(dialect, False),
        flag(dialect, True),
    )


def test_a_stage_step_writes_each_field_to_its_own_column(
    store: SqlWorkflowStore, url: str, dialect: str
) -> None:
    workflow = full_workflow()
    store.store(workflow)
    stage = store.retrieve_stage(workflow.stages[1].id)  # "build", version 4
    stage.status = WorkflowStatus.TERMINAL
    stage.start_time, stage.end_time = 1_800_000_000_001, 1_800_000_000_002
    stage.start_time_expiry, stage.scheduled_time = 1_800_000_000_003, 1_800_000_000_004
    when = dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
    token = uuid.UUID("12345678-1234-5678-1234-567812345678")
    stage.context = {
        "when": when,
        "day": dt.date(2024, 1, 2),
        "at": dt.time(3, 4, 5),
        "id": token,
        "amount": Decimal("1.10"),
        "path": PurePosixPath("/srv/a b/ü.txt"),
        "status": WorkflowStatus.RUNNING,
        "owner": SyntheticStageOwner.STAGE_AFTER,
        "colour": Colour.RED,
        "tags": {"b", "a", "c"},
        "pair": (1, (2, 3)),
        "zero": -0.0,
    }
    stage.outputs = {"n": 2**63, "deep": {"x": [True, None, 0.5]}}
    first, second = stage.tasks[0], stage.tasks[1]
    first.status, first.start_time, first.end_time = (
        WorkflowStatus.RUNNING,
        1_800_000_000_005,
        1_800_000_000_006,
    )
    first.loop_end = True
    second.task_exception_details = {"exception": {"message": "again", "when": when}}
    queue = SqlQueue(url)
    message = StartStage(execution_id=workflow.id, stage_id=stage.id)
    marked = new_id()
    with store.transaction(queue) as txn:
        txn.store_stage(stage, expected_phase=WorkflowStatus.SUCCEEDED)
        txn.push_message(message)
        txn.mark_message_processed(marked, "CompleteStage", workflow.id)

    [row] = raw_rows(store, "stages", id=stage.id)
    assert (row["status"], row["version"], row["position"]) == ("TERMINAL", 5, 1)
    assert [row[k] for k in ("start_time", "end_time", "start_time_expiry", "scheduled_time")] == [
        1_800_000_000_001,
        1_800_000_000_002,
        1_800_000_000_003,
        1_800_000_000_004,
    ]
    # The contract's encoding (CONTRACT.md section 7), read back as JSON from the column's text.
    assert row["context"] == {
        "when": "2024-02-29T23:59:58.123456-03:00",
        "day": "2024-01-02",
        "at": "03:04:05",
        "id": "12345678-1234-5678-1234-567812345678",
        "amount": "1.10",
        "path": "/srv/a b/ü.txt",
        "status": ["RUNNING", False, False],  # WorkflowStatus's value is its (name, complete, halt)
        "owner": "STAGE_AFTER",
        "colour": "red",
        "tags": ["a", "b", "c"],
        "pair": [1, [2, 3]],
        "zero": 0.0,
    }
    assert row["outputs"] == {"n": 2**63, "deep": {"x": [True, None, 0.5]}}
    tasks = {t["id"]: t for t in raw_rows(store, "tasks", stage_id=stage.id)}
    assert_raw(tasks[first.id], expected_task(dialect, first, stage.id, 0))
    assert tasks[first.id]["version"] == 3  # written: it changed (it was at 2)
    assert (tasks[first.id]["start_time"], tasks[first.id]["end_time"]) == (
        1_800_000_000_005,
        1_800_000_000_006,
    )
    assert tasks[first.id]["loop_end"] == flag(dialect, True)
    assert tasks[second.id]["task_exception_details"] == {
        "exception": {"message": "again", "when": "2024-02-29T23:59:58.123456-03:00"}
    }
    assert tasks[stage.tasks[2].id]["version"] == 0  # unchanged: left alone
    # Columns no write may touch kept what the insert wrote.
    assert (row["ref_id"], row["type"], row["name"]) == ("build", "bake", "Build ⚙")
    check_stages_and_tasks(store, dialect, store.retrieve(workflow.id))

    [mark] = raw_rows(store, "processed_messages", message_id=marked)
    assert (mark["handler_type"], mark["execution_id"]) == ("CompleteStage", workflow.id)
    assert isinstance(mark["processed_at"], int) and mark["processed_at"] > 1_700_000_000_000
    [queued] = raw_rows(store, "queue_messages", execution_id=workflow.id)
    assert (queued["message_id"], queued["message_type"]) == (message.message_id, "StartStage")
    assert (queued["attempts"], queued["locked_until"], queued["task_id"], queued["last_error"]) == (
        0,
        None,
        None,
        None,
    )
    assert queued["payload"]["stage_id"] == stage.id and queued["payload"]["execution_id"] == workflow.id
    assert isinstance(queued["deliver_at"], int) and isinstance(queued["created_at"], int)
    assert queued["deliver_at"] <= mark["processed_at"] + 1_000  # due now, not delayed


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_json_columns_keep_their_text_on_postgresql(store: SqlWorkflowStore) -> None:
    with store.engine.connect() as connection:
        types: dict[str, str] = dict(
            connection.execute(
                text(
                    "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
                    " WHERE table_schema = current_schema() AND data_type LIKE 'json%'"
                )
            ).all()
        )
    assert types == {
        "workflows.context": "json",
        "workflows.trigger": "json",
        "workflows.paused": "json",
        "stages.context": "json",
        "stages.outputs": "json",
        "tasks.task_exception_details": "json",
        "queue_messages.payload": "json",
        "queue_dead_letters.payload": "json",
        "stages.split_conditions": "json",
        "stages.mi_config": "json",
        "workflow_signals.signal_data": "json",
    }
