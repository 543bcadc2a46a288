"""The quickest proof a dialect works at all: a one-stage workflow stored and read back."""

from stabilize.models import StageExecution, Workflow
from stabilize.persistence.sql.store import SqlWorkflowStore


def test_store_and_retrieve_round_trip(store: SqlWorkflowStore) -> None:
    stage = StageExecution.create("t", "A", "a")
    workflow = Workflow.create("app", "wf", [stage])
    store.store(workflow)
    assert store.retrieve(workflow.id).stages[0].ref_id == "a"
