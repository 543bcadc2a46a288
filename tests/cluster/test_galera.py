"""The store, the queue and the reference runner on a 3-node MariaDB Galera cluster (issue 15).

Each test gets a throw-away database on a healthy cluster (``galera_db``: the three nodes' URLs)
and talks to the nodes as separate processes would. Certification (not row locks, which are local
to a node) decides between nodes: these tests show that it keeps a compare-and-set to one winner,
a message to one consumer and a task's effect to one commit, and that a node that dies or leaves
the primary component fails its callers with named errors, within their deadline, while the
others go on. Every wait is bounded; reads that must see another node's commit are causal
(``wsrep_sync_wait``).
"""

from __future__ import annotations

import os
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import column, event, inspect, select, table

from stabilize.persistence.errors import ConcurrencyError, DatabaseUnavailableError, TransientError
from stabilize.persistence.sql.dialects.mysql import CLUSTER_LOCK_TABLE
from stabilize.persistence.sql.engine import dispose_engines, get_engine
from stabilize.persistence.sql.migrate import check, current, head
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue import SqlQueue, StartWorkflow
from stabilize.queue.records import DEAD_LETTERS
from tests.cluster.runs import causal, submit_run
from tests.clusters import Galera, wait_until
from tests.integration.builders import full_workflow
from tests.migrations.test_concurrent_migrations import MODEL_TABLES, REPO_ROOT, version_rows
from tests.processes import run_together

pytestmark = pytest.mark.cluster

#: Seconds a racing process waits at a barrier before its round fails (instead of hanging).
BARRIER_SECONDS = 60.0


def migrated(urls: list[str]) -> list[str]:
    """Migrate the database through node 1; return the nodes' causal URLs."""
    SqlWorkflowStore(urls[0], create_tables=True)
    return [causal(url) for url in urls]


def certification_conflicts(engine: Any) -> list[int]:
    """A list that grows by one for every error 1213 (a deadlock, or a certification conflict
    at COMMIT) a statement of ``engine`` meets."""
    seen: list[int] = []

    @event.listens_for(engine, "handle_error")
    def _count(context: Any) -> None:
        args = getattr(context.original_exception, "args", ())
        if args and args[0] == 1213:
            seen.append(1213)

    return seen


# --------------------------------------------------------------------------------------------
# One database across nodes
# --------------------------------------------------------------------------------------------


def test_a_store_on_node_1_and_a_queue_on_node_2_write_one_transaction(galera_db: list[str]) -> None:
    node1, node2, node3 = migrated(galera_db)
    store, queue = SqlWorkflowStore(node1), SqlQueue(node2)
    workflow = full_workflow()

    with store.transaction(queue) as txn:
        assert txn.is_atomic  # two nodes of one cluster are one database
        txn.store_workflow(workflow)
        txn.push_message(StartWorkflow(execution_id=workflow.id))

    # Both writes are on the third node, read causally.
    assert SqlWorkflowStore(node3).retrieve(workflow.id).id == workflow.id
    third = SqlQueue(node3)
    delivered = third.poll_one()
    assert isinstance(delivered, StartWorkflow) and delivered.execution_id == workflow.id
    third.ack(delivered)

    # The message is written in the store's transaction on node 1: a compare-and-set that fails
    # there leaves no message on any node.
    stage = store.retrieve_stage(workflow.stages[0].id)
    stale = store.retrieve_stage(stage.id)
    stage.context["moved"] = "by another writer"
    store.store_stage(stage)
    stale.context["moved"] = "by the stale writer"
    with pytest.raises(ConcurrencyError), store.transaction(queue) as txn:
        txn.store_stage(stale)
        txn.push_message(StartWorkflow(execution_id=workflow.id))
    assert SqlQueue(node3).size() == 0
    assert SqlWorkflowStore(node3).retrieve_stage(stage.id).context["moved"] == "by another writer"


# --------------------------------------------------------------------------------------------
# A compare-and-set race between nodes
# --------------------------------------------------------------------------------------------

CAS_ROUNDS = 15


def cas_racer(index: int, url: str, stage_id: str, barrier: Any, results: Any) -> None:
    """Each round: read the stage, meet the others, write it on the version read."""
    outcomes: list[tuple[int, int, str]] = []
    conflicts: list[int] = []
    try:
        store = SqlWorkflowStore(url)
        conflicts = certification_conflicts(store.engine)
        for round_number in range(CAS_ROUNDS):
            stage = store.retrieve_stage(stage_id)
            stage.context[f"round-{round_number}"] = index
            barrier.wait(BARRIER_SECONDS)
            try:
                store.store_stage(stage)
                outcome = "won"
            except ConcurrencyError:
                outcome = "lost"
            except TransientError as error:  # its reruns spent: a named error, never silence
                outcome = type(error).__name__
            outcomes.append((round_number, index, outcome))
    except BaseException:
        outcomes.append((-1, index, traceback.format_exc()))
    results.put((outcomes, len(conflicts)))
    dispose_engines()


def test_a_compare_and_set_race_between_nodes_has_one_winner_per_version(galera_db: list[str]) -> None:
    urls = migrated(galera_db)
    store = SqlWorkflowStore(urls[0])
    workflow = full_workflow()
    store.store(workflow)
    stage_id = workflow.stages[0].id
    version = store.retrieve_stage(stage_id).version

    reports = run_together(
        cas_racer, [(i, url, stage_id) for i, url in enumerate(urls)], results_each=1, timeout=120
    )

    outcomes = [outcome for report, _ in reports for outcome in report]
    failures = [o for o in outcomes if o[0] < 0]
    assert not failures, failures
    winners = {r: [i for rr, i, o in outcomes if rr == r and o == "won"] for r in range(CAS_ROUNDS)}
    assert all(len(w) == 1 for w in winners.values()), winners  # one winner per version
    named = {o for _, _, o in outcomes if o != "won"}
    assert named <= {"lost", "TransientError", "RaceLost"}, named
    assert len(outcomes) == 3 * CAS_ROUNDS  # every loser was told, by a named error
    final = SqlWorkflowStore(urls[1]).retrieve_stage(stage_id)
    assert final.version == version + CAS_ROUNDS  # no write lost, none applied twice
    # Every winner wrote on top of every earlier winner's write (no lost update).
    assert {r: final.context[f"round-{r}"] for r in range(CAS_ROUNDS)} == {
        r: w[0] for r, w in winners.items()
    }


# --------------------------------------------------------------------------------------------
# Consumers on every node
# --------------------------------------------------------------------------------------------

MESSAGES = 600
DRAIN_SECONDS = 90.0


def consumer(url: str, barrier: Any, results: Any) -> None:
    """Claim and ack until the queue is empty; a transient failure is counted and tried again."""
    delivered: list[tuple[str, int]] = []
    transient = 0
    try:
        queue = SqlQueue(url, lock_duration=600)  # no lock lapses in the test: a 2nd delivery is a duplicate
        barrier.wait(BARRIER_SECONDS)
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            try:
                message = queue.poll_one()
                if message is None:
                    if queue.size() == 0:
                        break
                    time.sleep(0.01)  # the rest is in other consumers' hands: poll again
                    continue
                delivered.append((message.message_id, message.attempts))
                queue.ack(message)
            except TransientError:
                transient += 1
        results.put((url, delivered, transient, None))
    except BaseException:
        results.put((url, delivered, transient, traceback.format_exc()))
    dispose_engines()


def test_consumers_on_three_nodes_get_every_message_exactly_once(galera_db: list[str]) -> None:
    urls = migrated(galera_db)
    queue = SqlQueue(urls[0])
    messages = [StartWorkflow(execution_id=f"e{i}") for i in range(MESSAGES)]
    with queue.engine.begin() as connection:
        for message in messages:
            queue.push(message, connection=connection)

    reports = run_together(consumer, [(url,) for url in urls], results_each=1, timeout=DRAIN_SECONDS + 60)

    assert [error for *_, error in reports if error] == []
    flat = [d for _, delivered, _, _ in reports for d in delivered]
    twice = [mid for mid, n in Counter(mid for mid, _ in flat).items() if n > 1]
    assert twice == [], f"{len(twice)} messages were delivered to more than one consumer"
    assert {mid for mid, _ in flat} == {m.message_id for m in messages}, "messages were lost"
    assert {attempt for _, attempt in flat} == {1}  # each claimed once: none came back
    assert all(delivered for _, delivered, _, _ in reports), "a node's consumer got nothing"
    for url in urls:
        assert SqlQueue(url).size() == 0  # every ack reached every node
    with get_engine(urls[2]).connect() as connection:
        assert connection.execute(select(DEAD_LETTERS.c.id)).first() is None


# --------------------------------------------------------------------------------------------
# The reference runner with workers on every node
# --------------------------------------------------------------------------------------------

STAGES = 50
RUN_SECONDS = 90.0


def test_workers_on_every_node_finish_a_50_stage_fan_out(galera_db: list[str], tmp_path: Path) -> None:
    urls = migrated(galera_db)
    run = submit_run(urls[0], tmp_path, STAGES)

    run.start(urls, per_url=1)
    run.join(RUN_SECONDS)

    assert [p.exitcode for p in run.workers] == [0, 0, 0]
    run.assert_done_once()
    assert set(run.bodies().values()) == {1}  # no step had to run again
    assert all(SqlQueue(url).size() == 0 for url in urls)


def test_a_node_killed_mid_run_loses_no_step_and_duplicates_no_effect(
    galera: Galera, galera_db: list[str], tmp_path: Path
) -> None:
    urls = migrated(galera_db)
    run = submit_run(urls[0], tmp_path, STAGES)
    # Short locks, so the dead node's messages come back soon. The survivors ride out the stall
    # while the cluster evicts node 3 (seconds); node 3's workers give up after 5 s without it.
    survivors = [p for group in run.start(urls[:2], lock_seconds=3.0) for p in group]
    (dead,) = run.start(urls[2:], lock_seconds=3.0, outage_seconds=5.0)
    run.wait_for_effects(10, RUN_SECONDS)

    galera.kill_node(3)
    run.join(RUN_SECONDS)

    assert [p.exitcode for p in survivors] == [0, 0]
    assert all(p.exitcode not in (0, None) for p in dead)  # failed fast (the node is gone), no hang
    run.assert_done_once()

    galera.restart_node(3)  # rejoins by IST/SST: the cluster and the store agree
    assert [galera.size(i) for i in galera.nodes] == [3, 3, 3]
    run.assert_done_once(urls[2])
    assert run.effects(urls[2]) == run.effects(urls[0])


# --------------------------------------------------------------------------------------------
# Migrations raced on different nodes
# --------------------------------------------------------------------------------------------

MIGRATION_ROUNDS = 3
ENTRY_POINTS = ["migrate.upgrade", "create_tables", "alembic", "stabilize db upgrade"]


def migrator(index: int, rounds: list[list[str]], barrier: Any, results: Any) -> None:
    """Upgrade each round's database through node ``index``, together with the other nodes."""
    from tests.migrations.test_concurrent_migrations import _upgrade_by

    os.chdir(REPO_ROOT)
    for round_number, urls in enumerate(rounds):
        entry_point = ENTRY_POINTS[(index + round_number) % len(ENTRY_POINTS)]
        try:
            barrier.wait(BARRIER_SECONDS)
            _upgrade_by(entry_point, urls[index])
            results.put((round_number, index, entry_point, None))
        except BaseException:
            results.put((round_number, index, entry_point, traceback.format_exc()))
    dispose_engines()


def test_migrations_raced_on_three_nodes_end_with_one_schema_at_head(
    galera_db: list[str], galera: Galera
) -> None:
    from tests import clusters

    lock_rows = table(CLUSTER_LOCK_TABLE, column("name"))
    names = [clusters.create_galera_database() for _ in range(MIGRATION_ROUNDS)]
    try:
        rounds = [galera.urls(name) for name in names]
        outcomes = run_together(migrator, [(i, rounds) for i in range(3)], results_each=MIGRATION_ROUNDS)

        failures = [f"round {r}, node {i + 1} ({how}):\n{error}" for r, i, how, error in outcomes if error]
        assert not failures, "\n".join(failures)
        for urls in rounds:
            for url in map(causal, urls):
                engine = get_engine(url)
                assert current(engine) == head()
                assert version_rows(engine) == 1
                tables = set(inspect(engine).get_table_names())
                assert tables == MODEL_TABLES | {"alembic_version", CLUSTER_LOCK_TABLE}
                with engine.connect() as connection:  # every migrator let go of the lock
                    assert connection.execute(select(column("name")).select_from(lock_rows)).first() is None
            check(get_engine(causal(urls[2])))  # no drift from the models
    finally:
        dispose_engines()
        for name in names:
            clusters.drop_galera_database(name)


# --------------------------------------------------------------------------------------------
# A node outside the primary component
# --------------------------------------------------------------------------------------------

DEADLINE = 4.0
#: Generous: the machine has two cores and other tests run beside these.
MARGIN = 3.0


def test_an_isolated_node_answers_database_unavailable_within_the_deadline(
    galera: Galera, galera_db: list[str]
) -> None:
    urls = migrated(galera_db)
    workflow = full_workflow()
    SqlWorkflowStore(urls[0]).store(workflow)
    store = SqlWorkflowStore(urls[2], operation_timeout=DEADLINE)
    queue = SqlQueue(urls[2], operation_timeout=DEADLINE)
    assert store.retrieve(workflow.id).id == workflow.id and queue.size() == 0  # pooled connections

    galera.isolate_node(3)
    galera.wait_size(1, 2)
    wait_until(
        lambda: (galera.status(3) or {}).get("wsrep_cluster_status") == "non-Primary",
        30,
        "isolated node 3 outside the primary component",
    )

    def write() -> None:
        with store.transaction(queue) as txn:
            txn.store_workflow(full_workflow())
            txn.push_message(StartWorkflow(execution_id=workflow.id))

    calls: dict[str, Callable[[], object]] = {
        "retrieve": lambda: store.retrieve(workflow.id),
        "poll_one": queue.poll_one,
        "push": lambda: queue.push(StartWorkflow(execution_id=workflow.id)),
        "transaction": write,
        "a new store's first call": lambda: SqlWorkflowStore(urls[2], operation_timeout=DEADLINE).retrieve(
            workflow.id
        ),
    }
    for name, call in calls.items():
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError):
            call()
        took = time.monotonic() - started
        assert took < DEADLINE + MARGIN, f"{name} raised after {took:.1f}s"
    assert store.is_healthy() is False
    SqlWorkflowStore(urls[0]).store(full_workflow())  # the primary component goes on writing

    galera.heal()
    assert store.retrieve(workflow.id).id == workflow.id  # the same store, not rebuilt
    assert SqlQueue(urls[2]).size() == 0  # nothing the isolated node refused was written
