"""A fan-out step (a stage completes and starts many others) on every dialect.

Where the dialect writes a step as one statement of data-modifying CTEs (PostgreSQL), a step of
more than ``step.MAX_PARTS`` writes runs write by write in one transaction instead: such a
statement's compile grows with the square of its writes (seconds for a 100-message fan-out). What
this file proves: the whole fan-out commits together (the stage, every message, the mark) or,
after a failed compare-and-set, not at all; no statement of it carries more than ``MAX_PARTS``
writes; an ordinary step is still one statement there.
"""

from __future__ import annotations

import pytest

from stabilize.errors import ConcurrencyError
from stabilize.models import StageExecution, Workflow, WorkflowStatus
from stabilize.models.ids import new_id
from stabilize.persistence.sql import step
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue import SqlQueue, StartStage
from tests.integration.builders import count_statements, stage, workflow

WIDTH = 100


def fan_out_workflow(width: int) -> Workflow:
    """A root with one task, and ``width`` stages waiting for it."""
    return workflow(stage("root", tasks=1), *(stage(f"b{i}", {"root"}, tasks=1) for i in range(width)))


def _fan_out(
    store: SqlWorkflowStore, queue: SqlQueue, root: StageExecution, starts: list[str], answer: bool
) -> None:
    """Complete ``root`` and start the ``starts`` stages, in one step (with an answering
    processed mark first, as the engine's handlers do, when ``answer``)."""
    with store.transaction(queue) as txn:
        if answer:
            assert txn.mark_message_processed(new_id(), "CompleteStage", root.execution.id)
        root.status = WorkflowStatus.SUCCEEDED
        root.tasks[0].status = WorkflowStatus.SUCCEEDED
        txn.store_stage(root)
        for stage_id in starts:
            txn.push_message(StartStage(execution_id=root.execution.id, stage_id=stage_id))
        if not answer:
            txn.mark_processed_at_commit(new_id(), "CompleteStage", root.execution.id)


def _downstream(store: SqlWorkflowStore, root: StageExecution) -> list[str]:
    return [s.id for s in store.get_downstream_stages(root.execution.id, root.ref_id)]


@pytest.mark.parametrize("answer", [False, True], ids=["buffered", "answering"])
def test_a_fan_out_step_commits_every_message_with_the_stage(
    store: SqlWorkflowStore, url: str, answer: bool
) -> None:
    queue = SqlQueue(url)
    made = fan_out_workflow(WIDTH)
    store.store(made)
    root = store.retrieve_stage(made.stages[0].id)
    starts = _downstream(store, root)
    assert len(starts) == WIDTH
    with count_statements(store.engine) as sent:
        _fan_out(store, queue, root, starts, answer)

    assert root.version == 1
    assert store.retrieve_stage(root.id).status == WorkflowStatus.SUCCEEDED
    started = set()
    while (message := queue.poll_one()) is not None:
        assert isinstance(message, StartStage)
        started.add(message.stage_id)
        queue.ack(message)
    assert started == {s.id for s in made.stages[1:]}
    # The (MAX_PARTS + 1)-th write of a step statement would bind parameters named w<MAX_PARTS>_.
    assert not [sql for sql in sent if f"w{step.MAX_PARTS}_" in sql]


def test_a_fan_out_step_with_a_stale_stage_writes_nothing(store: SqlWorkflowStore, url: str) -> None:
    queue = SqlQueue(url)
    made = fan_out_workflow(WIDTH)
    store.store(made)
    root = store.retrieve_stage(made.stages[0].id)
    stale = store.retrieve_stage(root.id)
    starts = _downstream(store, root)
    root.context["moved"] = True
    with store.transaction() as txn:
        txn.store_stage(root)
    with pytest.raises(ConcurrencyError):
        _fan_out(store, queue, stale, starts, answer=False)
    assert queue.size() == 0
    assert store.retrieve_stage(root.id).status == WorkflowStatus.NOT_STARTED


def test_an_ordinary_step_is_still_one_statement_where_the_dialect_has_them(
    store: SqlWorkflowStore, url: str, dialect: str
) -> None:
    queue = SqlQueue(url)
    made = fan_out_workflow(2)
    store.store(made)
    root = store.retrieve_stage(made.stages[0].id)
    starts = _downstream(store, root)
    with count_statements(store.engine) as sent:
        _fan_out(store, queue, root, starts, answer=False)
    if dialect == "postgresql":  # the stage, its task, two messages and the mark: one statement
        assert len(sent) == 1, sent
    assert queue.size() == 2
    assert store.retrieve_stage(root.id).tasks[0].status == WorkflowStatus.SUCCEEDED
