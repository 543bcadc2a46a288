"""Ids and ref ids compare exactly on every dialect: case and trailing spaces count.

MariaDB's default and PAD SPACE collations would call "a", "A" and "a " equal; the schema's
binary NO PAD collation keeps them apart, as SQLite and PostgreSQL do.
"""

from __future__ import annotations

from stabilize.models import StageExecution, Workflow
from stabilize.persistence.sql.store import SqlWorkflowStore


def test_ref_ids_differing_in_case_or_trailing_space_are_distinct(store: SqlWorkflowStore) -> None:
    stages = [StageExecution.create("t", name, name) for name in ("a", "A", "a ")]
    stages.append(StageExecution.create("t", "join", "join", requisite_stage_ref_ids={"a "}))
    stages[2].outputs = {"from": "a-space"}
    stages[0].outputs = {"from": "a"}
    workflow = Workflow.create("app", "exact", stages)
    store.store(workflow)

    assert [s.ref_id for s in store.retrieve(workflow.id).stages] == ["a", "A", "a ", "join"]
    assert store.get_merged_ancestor_outputs(workflow.id, "join") == {"from": "a-space"}
    assert [s.ref_id for s in store.get_upstream_stages(workflow.id, "join")] == ["a "]


def test_lookups_do_not_ignore_trailing_spaces(store: SqlWorkflowStore) -> None:
    workflow = Workflow.create("app", "exact", [StageExecution.create("t", "a", "a")])
    store.store(workflow)
    store.mark_message_processed("m")

    assert store.exists(workflow.id)
    assert not store.exists(workflow.id + " ")
    assert not store.exists(workflow.id.lower())
    assert store.is_message_processed("m")
    assert not store.is_message_processed("m ")
