"""One lock order for every write path: many writers on one workflow never deadlock.

Each writer thread runs transactions that update the workflow row and two or three of its stages
in a random call order, plus a queue message and a processed mark. The transaction applies them
in one order (workflow row, then stages by id, then messages and marks), so two transactions never
wait on each other in a cycle. Retries are switched off here, so a deadlock or serialization
failure would reach the test instead of being absorbed by the library's retry.
"""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest

from stabilize.errors import ConcurrencyError
from stabilize.models import StageExecution, TaskExecution, Workflow, WorkflowStatus
from stabilize.models.ids import new_id
from stabilize.persistence.sql.faults import RetryPolicy
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.messages import RunTask
from stabilize.queue.sql import SqlQueue
from tests.conftest import FILE_OR_SERVER_DIALECTS

WRITERS = 6
STEPS_PER_WRITER = 40
STAGES = 6


def _workflow() -> Workflow:
    stages = []
    for i in range(STAGES):
        stage = StageExecution.create("work", f"stage {i}", f"s{i}")
        stage.add_task(TaskExecution.create("t", "noop", stage_start=True, stage_end=True))
        stages.append(stage)
    return Workflow.create("lock-order", "stress", stages)


@pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS)
def test_many_writers_on_one_workflow_never_deadlock(url: str) -> None:
    store = SqlWorkflowStore(url, retry_policy=RetryPolicy(attempts=1))
    queue = SqlQueue(url)
    workflow = _workflow()
    store.store(workflow)
    written: Counter[str] = Counter()
    conflicts = Counter[str]()
    failures: list[BaseException] = []
    lock = threading.Lock()
    # Every writer's first step reads before any writes: six writers picking at least two of six
    # stages each must share a stage, so at least one compare-and-set fails. Contention is certain.
    first_reads = threading.Barrier(WRITERS, timeout=60)

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for step in range(STEPS_PER_WRITER):
                attempt = 0
                while True:
                    current = store.retrieve(workflow.id)
                    picked = rng.sample(current.stages, rng.randint(2, 3))
                    if step == attempt == 0:
                        first_reads.wait()
                    attempt += 1
                    try:
                        with store.transaction(queue) as txn:
                            for stage in picked:  # random call order; applied in lock order
                                stage.context["touched"] = stage.context.get("touched", 0) + 1
                                stage.status = rng.choice([WorkflowStatus.RUNNING, WorkflowStatus.SUCCEEDED])
                                txn.store_stage(stage)
                                if rng.random() < 0.5:
                                    current.status = WorkflowStatus.RUNNING
                                    txn.update_workflow_status(current)
                            txn.push_message(RunTask(execution_id=workflow.id, stage_id=picked[0].id))
                            txn.mark_message_processed(new_id(), "stress", workflow.id)
                    except ConcurrencyError:
                        with lock:
                            conflicts["cas"] += 1
                        continue  # another writer moved one of the stages first: read again
                    with lock:
                        written.update(stage.id for stage in picked)
                    break
        except BaseException as error:  # anything but a lost compare-and-set is a failure
            with lock:
                failures.append(error)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert not any(t.is_alive() for t in threads), "a writer is stuck"
    assert failures == []  # no deadlock, no serialization failure, nothing else
    final = store.retrieve(workflow.id)
    # Every committed write moved its stage's version by exactly one, and nothing else did.
    assert {s.id: s.version for s in final.stages} == {s.id: written[s.id] for s in final.stages}
    assert sum(written.values()) >= WRITERS * STEPS_PER_WRITER * 2
    assert queue.size() == WRITERS * STEPS_PER_WRITER
    # The writers did contend: lost compare-and-sets were retried, not deadlocks.
    assert conflicts["cas"] > 0
