"""A row whose enum column holds a name the code does not know is refused when read, on every dialect.

Such a row (written by other code, or by a version with another member) once came back with its
status as None. Reading it now raises a ``ValueError`` that names the enum and the stored value;
the read writes nothing, and the store keeps serving other workflows.
"""

from __future__ import annotations

import pytest
from sqlalchemy import String, literal, select, type_coerce, update

from stabilize.persistence.sql.rows import StageRow, WorkflowRow
from stabilize.persistence.sql.store import SqlWorkflowStore
from tests.integration.builders import chain


def test_an_unknown_stage_status_is_a_value_error_naming_it(store: SqlWorkflowStore) -> None:
    workflow, other = chain(2, 1), chain(1, 1)
    store.store(workflow)
    store.store(other)
    stage_id = workflow.stages[1].id
    with store.engine.begin() as connection:  # String, so the column's own check does not refuse it
        connection.execute(
            update(StageRow).where(StageRow.id == stage_id).values(status=literal("PAUSED_V9", String()))
        )
    stored = select(type_coerce(StageRow.status, String()), StageRow.version).where(StageRow.id == stage_id)
    with store.engine.connect() as connection:
        before = connection.execute(stored).one()
    for read in (lambda: store.retrieve(workflow.id), lambda: store.retrieve_stage(stage_id)):
        with pytest.raises(ValueError, match=r"a WorkflowStatus column holds 'PAUSED_V9', which is not"):
            read()
    with store.engine.connect() as connection:
        assert connection.execute(stored).one() == before == ("PAUSED_V9", workflow.stages[1].version)
    assert store.retrieve(other.id).stages[0].status is other.stages[0].status


def test_an_unknown_workflow_status_is_a_value_error_naming_it(store: SqlWorkflowStore) -> None:
    workflow = chain(1, 1)
    store.store(workflow)
    with store.engine.begin() as connection:
        connection.execute(
            update(WorkflowRow).where(WorkflowRow.id == workflow.id).values(status=literal("", String()))
        )
    with pytest.raises(ValueError, match=r"a WorkflowStatus column holds '', which is not a WorkflowStatus"):
        store.retrieve(workflow.id)
