"""SIGKILL at random moments never separates a stage write from the message it implies.

A child process loops "compare-and-set the stage, push a message for it" in store transactions
and is killed, many times over, at a random moment: between transactions, mid-statement or
mid-commit. Whatever was cut short, the stage's version must equal the number of messages queued
for it, since each committed transaction added exactly one of each. The random delay before a
kill is chaos, not synchronisation: the child reports when it is looping, and every wait is bounded.
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


def version_and_queued(store: SqlWorkflowStore, stage_id: str, workflow_id: str) -> tuple[int, int]:
    """The stage's version and the messages queued for its workflow, read in one statement: one
    snapshot, so a commit the killed child had already sent cannot land between the two reads."""
    version = select(StageRow.version).where(StageRow.id == stage_id).scalar_subquery()
    queued = (
        select(func.count())
        .select_from(QueueMessageRow)
        .where(QueueMessageRow.execution_id == workflow_id)
        .scalar_subquery()
    )
    with store.engine.connect() as connection:
        found, count = connection.execute(select(version, queued)).one()
        return int(found), int(count)


@pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS, indirect=True)
def test_sigkill_never_separates_a_stage_write_from_its_message(store: SqlWorkflowStore, url: str) -> None:
    stage = StageExecution.create("test", "Stage", "a")
    workflow = Workflow.create("app", "crash", [stage])
    store.store(workflow)
    context = multiprocessing.get_context("spawn")
    chaos = random.Random()
    survived = 0
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
        version, queued = version_and_queued(store, stage.id, workflow.id)
        assert version == queued > 0
        survived += 1
    assert survived == ROUNDS
