"""Network faults between the store and its server end every call in bounded time (issue 11,
CONTRACT.md section 6b).

A ``FaultProxy`` started by each test sits on 127.0.0.1 in front of the real server; the store and
queue connect through it with a short ``operation_timeout``. The proxy then goes silent (accepts,
never answers), partitions the network (an established pool stops carrying packets, no reset) or
slows every chunk down. Each call must return or raise its named error within the deadline (the
test's own bound is a few seconds more), write nothing it does not own up to, and the same store
must work again once the proxy heals. SQLite has no network: it is not here.

The durations are printed as ``[time-to-fail]`` lines (``pytest -s``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from stabilize.errors import (
    CommitUnknownError,
    DatabaseUnavailableError,
    OperationTimeoutError,
)
from stabilize.models import StageExecution, Workflow, WorkflowStatus
from stabilize.persistence import create_queue, create_repository
from stabilize.persistence.sql.engine import normalize_url
from stabilize.persistence.sql.store import HEALTH_TIMEOUT, SqlWorkflowStore
from stabilize.queue.messages import StartWorkflow
from stabilize.queue.sql import SqlQueue
from tests.conftest import MYSQL_ADMIN, POSTGRES_ADMIN
from tests.faults.proxy import FaultProxy, proxy_for
from tests.faults.timing import Timed, bounded
from tests.integration.builders import chain

pytestmark = pytest.mark.parametrize("dialect", ["postgresql", "mariadb"], indirect=True)

#: The calls' deadline: short, so a test takes seconds; long enough for MariaDB's whole-second
#: lock wait and its read timeout a second above the statement bound to fit inside it.
DEADLINE = 3.0


@dataclass
class Through:
    """A store and a queue that reach the test's database through the proxy."""

    proxy: FaultProxy
    store: SqlWorkflowStore
    queue: SqlQueue
    direct: SqlWorkflowStore
    """A store on the same database without the proxy, to look at what was written."""


@pytest.fixture
def proxy(dialect: str) -> Iterator[FaultProxy]:
    server = normalize_url(POSTGRES_ADMIN if dialect == "postgresql" else MYSQL_ADMIN)
    with proxy_for((server.host or "127.0.0.1", server.port or 0)) as started:
        yield started


@pytest.fixture
def through(url: str, proxy: FaultProxy) -> Iterator[Through]:
    proxied = proxy.url_for(url)
    store = create_repository(proxied, operation_timeout=DEADLINE)
    queue = create_queue(proxied, lock_duration=timedelta(seconds=60), operation_timeout=DEADLINE)
    try:
        yield Through(proxy, store, queue, SqlWorkflowStore(url))
    finally:
        queue.close()
        store.close()  # the last user of the proxied engine: its pool goes with it


def stored_workflow(through: Through) -> Workflow:
    """A workflow stored and read back through the proxy: the pool holds warm connections."""
    workflow = chain(3, 2)
    through.store.store(workflow)
    assert through.store.retrieve(workflow.id) == workflow
    through.queue.push(StartWorkflow(execution_id=workflow.id))
    return workflow


def image(stage: StageExecution) -> tuple[Any, ...]:
    """What a stage write changes, tasks included, for telling "before" from "after"."""
    return (stage.version, stage.status, stage.context, tuple((t.id, t.status) for t in stage.tasks))


def running(stage: StageExecution) -> StageExecution:
    """``stage`` as a step would write it next (the object is only changed if the write lands)."""
    stage.status = WorkflowStatus.RUNNING
    stage.context = {**stage.context, "started": True}
    for task in stage.tasks:
        task.status = WorkflowStatus.RUNNING
    return stage


def assert_whole(through: Through, stage_id: str, before: tuple[Any, ...], call: Timed[Any]) -> None:
    """The stage's row and tasks are as before the failed write, or (only where the error says it
    may have committed) wholly as it would have left them: never a part of the write."""
    after_write = (
        before[0] + 1,
        WorkflowStatus.RUNNING,
        {**before[2], "started": True},
        tuple((task_id, WorkflowStatus.RUNNING) for task_id, _ in before[3]),
    )
    found = image(through.direct.retrieve_stage(stage_id))
    if isinstance(call.error, CommitUnknownError):
        assert found in (before, after_write)
    else:
        assert found == before


def assert_unavailable_in_time(call: Timed[Any], deadline: float = DEADLINE) -> None:
    assert isinstance(call.error, DatabaseUnavailableError), call.error
    assert call.seconds < deadline + 1.5, f"{call.seconds:.2f} s for a deadline of {deadline:g} s"


def assert_works_again(through: Through, workflow: Workflow) -> None:
    """After the heal the same store and queue answer, and a write lands."""
    found = through.store.retrieve(workflow.id)
    stage = found.stages[1]
    stage.context = {**stage.context, "after": "heal"}
    through.store.store_stage(stage)
    assert through.direct.retrieve_stage(stage.id).context == stage.context
    message = through.queue.poll_one()
    assert message is not None and message.execution_id == workflow.id
    through.queue.ack(message)


# -- a silent server -------------------------------------------------------------------------------


def test_a_silent_server_fails_construction_and_calls_in_time(
    url: str, proxy: FaultProxy, dialect: str
) -> None:
    proxied = proxy.url_for(url)
    proxy.silent()

    migrating = bounded(
        f"{dialect} silent: create_repository(create_tables=True)",
        lambda: create_repository(proxied, create_tables=True, operation_timeout=DEADLINE),
        DEADLINE,
    )
    assert_unavailable_in_time(migrating)
    # Without create_tables the store is built (``is_healthy`` and the first call report the
    # server), in bounded time too.
    built = bounded(
        f"{dialect} silent: create_repository()",
        lambda: create_repository(proxied, operation_timeout=DEADLINE),
        DEADLINE,
    )
    assert built.error is None and built.value is not None
    store = built.value
    try:
        workflow = chain(2, 1)
        assert_unavailable_in_time(
            bounded(f"{dialect} silent: store", lambda: store.store(workflow), DEADLINE)
        )
        assert_unavailable_in_time(
            bounded(f"{dialect} silent: retrieve", lambda: store.retrieve(workflow.id), DEADLINE)
        )
        health = bounded(f"{dialect} silent: is_healthy", store.is_healthy, HEALTH_TIMEOUT)
        assert health.value is False and health.seconds < HEALTH_TIMEOUT + 1.5

        proxy.heal()
        # Nothing of the failed store() reached the server; the same store now writes it.
        direct = SqlWorkflowStore(url)
        assert direct.exists(workflow.id) is False
        store.store(workflow)
        assert store.retrieve(workflow.id) == workflow == direct.retrieve(workflow.id)
        assert store.is_healthy() is True
    finally:
        store.close()


def test_a_server_that_stops_answering_a_warm_pool(through: Through, dialect: str) -> None:
    """What the store sends still reaches the server; no answer comes back."""
    workflow = stored_workflow(through)
    stage = workflow.stages[0]
    before = image(stage)
    through.proxy.silent()

    call = bounded(
        f"{dialect} silent warm: store_stage", lambda: through.store.store_stage(running(stage)), DEADLINE
    )

    assert_unavailable_in_time(call)
    through.proxy.heal()
    assert_whole(through, stage.id, before, call)
    assert_works_again(through, workflow)


# -- a partition of an established pool ------------------------------------------------------------

CALLS: dict[str, Callable[[Through, Workflow], Any]] = {
    "store_stage": lambda t, w: t.store.store_stage(running(w.stages[0])),
    "retrieve": lambda t, w: t.store.retrieve(w.id),
    "poll_one": lambda t, w: t.queue.poll_one(),
    "push": lambda t, w: t.queue.push(StartWorkflow(execution_id="pushed-in-the-partition")),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_partition_of_a_warm_pool_ends_each_call_in_time(through: Through, dialect: str, name: str) -> None:
    workflow = stored_workflow(through)
    before = image(workflow.stages[0])
    through.proxy.partition()

    call = bounded(f"{dialect} partition: {name}", lambda: CALLS[name](through, workflow), DEADLINE)

    assert_unavailable_in_time(call)
    through.proxy.heal()
    # Nothing crossed the partition: whatever the call was, the database is as it was.
    assert image(through.direct.retrieve_stage(workflow.stages[0].id)) == before
    assert_works_again(through, workflow)
    assert through.queue.poll_one() is None  # the push never landed, and the message was acked


def test_is_healthy_answers_within_its_own_bound_through_a_partition(through: Through, dialect: str) -> None:
    workflow = stored_workflow(through)
    assert through.store.is_healthy() is True
    through.proxy.partition()

    health = bounded(f"{dialect} partition: is_healthy", through.store.is_healthy, HEALTH_TIMEOUT)

    assert health.error is None and health.value is False
    assert health.seconds < HEALTH_TIMEOUT + 1.5
    through.proxy.heal()
    assert through.store.is_healthy() is True
    assert_works_again(through, workflow)


def test_a_partition_of_a_pool_idle_long_enough_to_be_pinged(through: Through, dialect: str) -> None:
    """A connection that sat idle is pinged when checked out: the ping must not outlive the call."""
    workflow = stored_workflow(through)
    before = image(workflow.stages[0])
    # The condition under test, not a synchronisation: the pooled connections go idle long
    # enough for their next checkout to ping them.
    time.sleep((through.store.profile.ping_after_idle or 0) + 0.3)
    through.proxy.partition()

    call = bounded(
        f"{dialect} partition idle pool: store_stage",
        lambda: through.store.store_stage(running(workflow.stages[0])),
        DEADLINE,
    )

    assert_unavailable_in_time(call)
    assert isinstance(call.error, OperationTimeoutError)
    through.proxy.heal()
    assert image(through.direct.retrieve_stage(workflow.stages[0].id)) == before
    assert_works_again(through, workflow)


# -- a slow server ---------------------------------------------------------------------------------


def test_a_slow_server_within_the_deadline_still_answers(through: Through, dialect: str) -> None:
    workflow = stored_workflow(through)
    through.proxy.slow(0.05)

    stage = running(workflow.stages[0])
    wrote = bounded(f"{dialect} slow 50 ms: store_stage", lambda: through.store.store_stage(stage), DEADLINE)
    read = bounded(f"{dialect} slow 50 ms: retrieve", lambda: through.store.retrieve(workflow.id), DEADLINE)
    polled = bounded(f"{dialect} slow 50 ms: poll_one", through.queue.poll_one, DEADLINE)

    assert wrote.error is None and read.error is None and polled.error is None
    assert read.value is not None and read.value.stages[0].context == stage.context
    assert polled.value is not None and polled.value.execution_id == workflow.id
    through.proxy.heal()
    through.queue.ack(polled.value)


def test_a_server_slower_than_the_deadline_fails_the_call_in_time(through: Through, dialect: str) -> None:
    workflow = stored_workflow(through)
    before = image(workflow.stages[0])
    through.proxy.slow(DEADLINE * 2)  # every chunk of every round trip waits twice the deadline

    wrote = bounded(
        f"{dialect} slow {DEADLINE * 2:g} s: store_stage",
        lambda: through.store.store_stage(running(workflow.stages[0])),
        DEADLINE,
    )
    read = bounded(
        f"{dialect} slow {DEADLINE * 2:g} s: retrieve", lambda: through.store.retrieve(workflow.id), DEADLINE
    )

    assert_unavailable_in_time(wrote)
    assert_unavailable_in_time(read)
    through.proxy.heal()
    assert image(through.direct.retrieve_stage(workflow.stages[0].id)) == before
    assert_works_again(through, workflow)


# -- a transaction the caller holds open -----------------------------------------------------------


def test_a_partition_under_an_open_transaction_ends_its_statement_in_time(
    through: Through, dialect: str
) -> None:
    workflow = stored_workflow(through)
    stage = workflow.stages[0]
    before = image(stage)

    def step() -> None:
        with through.store.transaction(through.queue) as txn:
            txn.store_stage(running(stage))
            assert txn.mark_message_processed("message-1") is True  # answers: the transaction begins
            through.proxy.partition()
            txn.workflow_status(workflow.id)  # a statement across the partition

    call = bounded(f"{dialect} partition in an open transaction: workflow_status", step, DEADLINE)

    assert_unavailable_in_time(call)
    through.proxy.heal()
    assert image(through.direct.retrieve_stage(stage.id)) == before
    assert through.direct.is_message_processed("message-1") is False  # rolled back with the rest
    assert_works_again(through, workflow)


def test_the_callers_own_time_in_an_open_transaction_is_not_the_deadlines(through: Through) -> None:
    """Only the database's waits are bounded: a block that works longer than the deadline
    between two statements still commits."""
    workflow = stored_workflow(through)
    stage = workflow.stages[0]

    with through.store.transaction(through.queue) as txn:
        assert txn.mark_message_processed("message-2") is True
        time.sleep(DEADLINE + 0.5)  # the caller's own work, longer than the deadline
        txn.store_stage(running(stage))

    assert through.direct.is_message_processed("message-2") is True
    assert through.direct.retrieve_stage(stage.id).status == WorkflowStatus.RUNNING
