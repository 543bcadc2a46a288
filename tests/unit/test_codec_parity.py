"""A field is declared once: the domain classes, the row classes and the update statements agree.

What this file proves, without a database:

- every dataclass field of ``Workflow``, ``StageExecution`` and ``TaskExecution`` is a column of
  its row class or is listed, with its reason, in ``mapping.NOT_PERSISTED`` (and nothing listed
  there is a column or a stale name);
- every column of the entity rows has a role (``KEY``, ``FIXED``, ``STATE``, ``VERSION``,
  ``PLACE``), and every column a codec reads or writes is a field of its domain class;
- the compare-and-set of ``store_stage`` (``writes._CAS`` and ``_CAS_PHASE``) sets every stage
  column that is neither KEY, FIXED, VERSION nor PLACE, plus the version, each from the parameter
  of its own name, and nothing else; likewise the task update (``_UPDATE_TASKS``) for the task
  columns and ``update_status`` (``_WORKFLOW_STATE``) for the workflow's STATE columns;
- each codec reads every column into the attribute of the same name and writes every attribute
  into the column of the same name (a swap of two columns in the mapping fails here).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from sqlalchemy import Table, Update

from stabilize.models import StageExecution, TaskExecution, Workflow
from stabilize.persistence.sql import mapping, writes
from stabilize.persistence.sql.rows import (
    Base,
    ProcessedMessageRow,
    StageEdgeRow,
    StageRow,
    TaskRow,
    WorkflowRow,
    role,
    table_of,
)
from stabilize.persistence.sql.types import checker
from tests.integration.builders import full_workflow

ENTITIES: list[tuple[type[Any], type[Base], mapping.Codec[Any]]] = [
    (Workflow, WorkflowRow, mapping.WORKFLOWS),
    (StageExecution, StageRow, mapping.STAGES),
    (TaskExecution, TaskRow, mapping.TASKS),
]
ROLES = {"key", "fixed", "state", "version", "place"}


def columns_of(row: type[Base]) -> dict[str, str | None]:
    """Column key -> role, in table order."""
    return {c.key: role(c) for c in table_of(row).columns}


def set_clause(statement: Update) -> dict[str, str]:
    """The SET clause of a compiled UPDATE: column -> the bound parameter it is set from."""
    sql = str(statement.compile())
    found = re.search(r"\bSET (.*?) WHERE ", sql)
    assert found is not None, sql
    pairs = [item.split("=", 1) for item in found.group(1).split(", ")]
    return {column.strip(): value.strip() for column, value in pairs}


def where_clause(statement: Update) -> str:
    return str(statement.compile()).split(" WHERE ", 1)[1]


@pytest.mark.parametrize(("domain", "row", "codec"), ENTITIES, ids=["workflow", "stage", "task"])
def test_every_domain_field_is_a_column_or_listed_as_not_persisted(
    domain: type[Any], row: type[Base], codec: mapping.Codec[Any]
) -> None:
    fields = {f.name for f in dataclasses.fields(domain)}
    columns = set(columns_of(row))
    not_persisted = mapping.NOT_PERSISTED.get(domain, {})
    assert fields - columns - set(not_persisted) == set()
    # Nothing listed as not persisted is a column, or a field the class no longer has.
    assert set(not_persisted) & columns == set()
    assert set(not_persisted) - fields == set()
    assert all(reason.strip() for reason in not_persisted.values())


@pytest.mark.parametrize(("domain", "row", "codec"), ENTITIES, ids=["workflow", "stage", "task"])
def test_every_column_a_codec_maps_is_a_field_of_its_domain_class(
    domain: type[Any], row: type[Base], codec: mapping.Codec[Any]
) -> None:
    fields = {f.name for f in dataclasses.fields(domain)}
    mapped = {key for key, found in columns_of(row).items() if found != "place"}
    assert set(codec.fields) == mapped
    assert mapped - fields == set()
    assert codec.table is table_of(row)


@pytest.mark.parametrize("row", [WorkflowRow, StageRow, StageEdgeRow, TaskRow, ProcessedMessageRow])
def test_every_entity_column_has_a_role(row: type[Base]) -> None:
    roles = columns_of(row)
    assert {key: found for key, found in roles.items() if found not in ROLES} == {}
    # A KEY column is the row's identity: part of its primary key.
    keys = {key for key, found in roles.items() if found == "key"}
    assert keys <= {c.key for c in table_of(row).primary_key.columns}


def _rewritten(row: type[Base]) -> set[str]:
    """The columns an update must rewrite: neither the identity nor what is fixed at insert,
    nor what the store supplies; the version is set by the store on its own."""
    return {
        key for key, found in columns_of(row).items() if found not in ("key", "fixed", "version", "place")
    }


@pytest.mark.parametrize("statement", [writes._CAS, writes._CAS_PHASE], ids=["cas", "cas_phase"])
def test_the_stage_compare_and_set_sets_every_stage_state_column(statement: Update) -> None:
    assert _rewritten(StageRow) == set(mapping.STAGES.state)
    sets = set_clause(statement)
    assert set(sets) == _rewritten(StageRow) | {"version"}
    assert {column: bound for column, bound in sets.items() if bound != f":{column}"} == {}
    where = where_clause(statement)
    assert "stages.id = :key_id" in where
    assert "stages.version = :cas_version" in where


def test_the_phase_compare_and_set_also_checks_the_status() -> None:
    assert "stages.status = :cas_phase" in where_clause(writes._CAS_PHASE)
    assert "cas_phase" not in where_clause(writes._CAS)


def test_the_task_update_sets_every_task_state_column() -> None:
    assert _rewritten(TaskRow) == set(mapping.TASKS.state)
    sets = set_clause(writes._UPDATE_TASKS)
    assert set(sets) == _rewritten(TaskRow) | {"version"}
    assert {column: bound for column, bound in sets.items() if bound != f":{column}"} == {}
    where = where_clause(writes._UPDATE_TASKS)
    for place in ("tasks.id = :key_id", "tasks.stage_id = :key_stage_id", "tasks.position = :key_position"):
        assert place in where


def test_update_status_sets_every_workflow_state_column() -> None:
    state = {key for key, found in columns_of(WorkflowRow).items() if found == "state"}
    assert state == set(mapping.WORKFLOWS.state)
    sets = set_clause(writes._WORKFLOW_STATE)
    assert set(sets) == state
    assert {column: bound for column, bound in sets.items() if bound != f":{column}"} == {}
    assert where_clause(writes._WORKFLOW_STATE) == "workflows.id = :key_id"


# -- the codecs move each value between the attribute and the column of one name ------------------


class Marker:
    """A value that names the column it was put in."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Marker) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Marker({self.key!r})"


#: Fields whose column value is converted on the way in and out (``mapping``): a value each that
#: the conversion takes.
CONVERTED: dict[type[Any], dict[str, Any]] = {
    Workflow: {"trigger": {"type": "marker"}, "paused": None},
    StageExecution: {"mi_config": None},
}


@pytest.mark.parametrize(("domain", "row", "codec"), ENTITIES, ids=["workflow", "stage", "task"])
def test_a_codec_reads_each_column_into_the_attribute_of_its_name(
    domain: type[Any], row: type[Base], codec: mapping.Codec[Any]
) -> None:
    table: Table = codec.table
    converted = CONVERTED.get(domain, {})  # read through a conversion
    values = [converted[c.key] if c.key in converted else Marker(c.key) for c in table.columns]
    extra: dict[str, Any] = {"requisite_stage_ref_ids": set()} if domain is StageExecution else {}
    built = codec.build(values, **extra)
    wrong = {
        key: getattr(built, key)
        for key in codec.fields
        if key not in converted and getattr(built, key) != Marker(key)
    }
    assert wrong == {}


def test_each_codec_writes_each_attribute_into_the_column_of_its_name() -> None:
    workflow = full_workflow()
    build = workflow.stages[1]
    task = build.tasks[1]
    cases: list[tuple[Any, mapping.Codec[Any], dict[str, Any]]] = [
        (workflow, mapping.WORKFLOWS, mapping.workflow_values(workflow)),
        (build, mapping.STAGES, mapping.stage_values(build, workflow.id, 1, "stage")),
        (task, mapping.TASKS, mapping.task_values(task, build.id, 1, "task")),
    ]
    for obj, codec, values in cases:
        for key in codec.fields:
            if key in CONVERTED.get(codec.domain, {}):
                continue
            expected = checker(codec.table.c[key])(getattr(obj, key), key)
            assert values[key] == expected, (type(obj).__name__, key)
    # The fields above are distinct where a swap would hide: every time of the stage differs.
    times = [build.start_time, build.end_time, build.start_time_expiry, build.scheduled_time]
    assert len(set(times)) == 4
