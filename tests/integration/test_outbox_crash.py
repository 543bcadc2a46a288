"""SIGKILL at random moments never separates a stage write from the message it implies.

A child process loops "compare-and-set the stage, push a message for it" in store transactions
and is killed, many times over, at a random moment: between transactions, mid-statement or
mid-commit. Whatever was cut short, the stage's version must equal the number of messages queued
for it and the write count its context holds, since each committed transaction added exactly one
of each; every round's child committed at least once, so the version grows every round. The
random delay before a kill is chaos, not synchronisation: the child reports when it is looping,
and every wait is bounded.
"""

from __future__ import annotations

import multiprocessing
import random
import signal
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from stabilize.models import StageExecution, Workflow
from stabilize.persistence.sql.rows import QueueMessageRow, StageRow
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue import SqlQueue, StartStage
from tests.conftest import FILE_OR_SERVER_DIALECTS

ROUNDS = 15
READY_TIMEOUT = 60  # seconds for a child to start and commit once


def _loop_until_killed(url: str, stage_id: str, committed: Any) -> None:
    store = SqlWorkflowStore(url)
    queue = SqlQueue(url)
    stage = store.retrieve_stage(stage_id)
    while True:
        with store.transaction(queue) as txn:
            stage.context["writes"] = stage.version + 1
            txn.store_stage(stage)
            txn.push_message(StartStage(execution_id=stage.execution.id, stage_id=stage.id))
        committed.set()  # the parent kills only a child that has got going


def version_writes_and_queued(
    store: SqlWorkflowStore, stage_id: str, workflow_id: str
) -> tuple[int, int, int]:
    """The stage's version, the write count its context holds, and the messages queued for its
    workflow, read in one statement: one snapshot, so a commit the killed child had already sent
    cannot land between the reads."""
    row = select(StageRow.version, StageRow.context).where(StageRow.id == stage_id).subquery()
    queued = (
        select(func.count())
        .select_from(QueueMessageRow)
        .where(QueueMessageRow.execution_id == workflow_id, QueueMessageRow.message_type == "StartStage")
        .scalar_subquery()
    )
    with store.engine.connect() as connection:
        version, context, count = connection.execute(select(row.c.version, row.c.context, queued)).one()
        return int(version), int(context.get("writes", 0)), int(count)


@pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS, indirect=True)
def test_sigkill_never_separates_a_stage_write_from_its_message(store: SqlWorkflowStore, url: str) -> None:
    stage = StageExecution.create("test", "Stage", "a")
    workflow = Workflow.create("app", "crash", [stage])
    store.store(workflow)
    context = multiprocessing.get_context("spawn")
    chaos = random.Random()
    last_version = 0
    for _ in range(ROUNDS):
        committed = context.Event()
        child = context.Process(target=_loop_until_killed, args=(url, stage.id, committed))
        child.start()
        try:
            assert committed.wait(READY_TIMEOUT), "the child never committed a transaction"
            time.sleep(chaos.uniform(0, 0.05))  # chaos: land the kill anywhere in the loop
            child.kill()  # SIGKILL: no cleanup, no rollback from the client side
            child.join(30)
        finally:
            if child.is_alive():
                child.kill()
                child.join(5)
        assert child.exitcode == -signal.SIGKILL
        version, writes, queued = version_writes_and_queued(store, stage.id, workflow.id)
        # One message per committed write, and the stage's state is that of its last write.
        assert version == writes == queued
        # This round's child committed at least once, on top of every earlier round's commits.
        assert version > last_version
        last_version = version
    # Every queued message is whole: each one decodes to a StartStage for the stage.
    queue = SqlQueue(url)
    delivered = [queue.poll_one() for _ in range(last_version)]
    assert all(isinstance(m, StartStage) and m.stage_id == stage.id for m in delivered)
