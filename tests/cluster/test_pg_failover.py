"""PostgreSQL failover through libpq's multi-host URL (issue 15): a primary with a synchronous
standby, the primary crashed mid-run and the standby promoted.

The store, the queue and the workers are given ``postgresql://h1:p1,h2:p2/db?target_session_attrs=
read-write`` once and never rebuilt: after the promotion their next connections find the new
primary. A step that committed before the crash is on the standby (synchronous commit); a step
whose COMMIT was cut off raises ``CommitUnknownError``, and its redelivery is recognised by its
processed mark or runs it once, so no effect is lost or applied twice. Each test rebuilds the
pair at its end, so the next one (and anyone looking) finds it healthy.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from stabilize.models import WorkflowStatus
from stabilize.persistence.errors import CommitUnknownError
from stabilize.persistence.sql.engine import get_engine
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.messages import RunTask
from stabilize.queue.sql import SqlQueue
from stabilize.runner import Worker
from tests.cluster.runs import submit_run
from tests.clusters import PgPair, PgPairUrls, wait_until

pytestmark = pytest.mark.cluster

RUN_SECONDS = 120.0


def test_a_run_through_the_multi_host_url_goes_on_after_the_failover(
    pg_pair: PgPair, pg_pair_db: PgPairUrls, tmp_path: Path
) -> None:
    url = pg_pair_db.multi_host  # primary,standby with target_session_attrs=read-write
    SqlWorkflowStore(url, create_tables=True)
    run = submit_run(url, tmp_path, stages=30)
    try:
        run.start([url], per_url=3, lock_seconds=3.0, outage_seconds=30.0)
        run.wait_for_effects(8, RUN_SECONDS)
        before = run.effects()  # acknowledged by the primary, so on the standby too

        pg_pair.stop_primary()
        pg_pair.promote_standby()
        run.join(RUN_SECONDS)

        assert [p.exitcode for p in run.workers] == [0, 0, 0]  # the same workers went on
        after = run.effects()
        assert all(after[task_id] >= count for task_id, count in before.items())  # nothing lost
        run.assert_done_once()  # the same store, reaching the promoted standby
        with get_engine(url).connect() as connection:
            assert connection.execute(text("SELECT inet_server_port()")).scalar() == pg_pair.standby_port
    finally:
        pg_pair.reset()


def _in_sync_wait(primary: str) -> bool:
    with get_engine(primary).connect() as connection:
        query = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
        return bool(connection.execute(query).scalar())


def test_a_commit_cut_off_by_the_failover_is_commit_unknown_and_its_effect_happens_once(
    pg_pair: PgPair, pg_pair_db: PgPairUrls, tmp_path: Path
) -> None:
    url = pg_pair_db.multi_host
    SqlWorkflowStore(url, create_tables=True)
    run = submit_run(url, tmp_path, stages=3)
    # Short locks: the message of the cut-off step comes back soon after the failover.
    store, queue = run.store, SqlQueue(url, lock_duration=2.0)
    worker = Worker(store, queue)
    try:
        # Step the run in this process up to its first task.
        while True:
            message = queue.poll_one()
            assert message is not None, "the run stopped before its first task"
            if isinstance(message, RunTask):
                break
            worker.process(message)

        # The standby stops acknowledging: the step's COMMIT waits for it on the primary...
        pg_pair.pause_standby()
        outcome: list[BaseException | None] = []
        step = threading.Thread(target=lambda: outcome.append(_error_of(worker.process, message)))
        step.start()
        wait_until(lambda: _in_sync_wait(pg_pair_db.primary), 30, "the step's COMMIT waiting for the standby")
        # ... when the primary crashes under it.
        pg_pair.stop_primary()
        step.join(30)
        assert not step.is_alive(), "the cut-off step did not return"
        assert len(outcome) == 1 and isinstance(outcome[0], CommitUnknownError), outcome
        assert "may or may not have committed" in str(outcome[0])

        pg_pair.resume_standby()
        pg_pair.promote_standby()
        # The same worker, store and queue finish the run: the cut-off step's message comes back
        # and its processed mark (if the commit reached the standby) or its rerun decides.
        deadline = time.monotonic() + RUN_SECONDS  # bounded: a lost message fails the test below
        worker.run(
            lambda: (
                store.retrieve_execution_summary(run.workflow.id).status.is_complete
                or time.monotonic() > deadline
            )
        )

        run.assert_done_once()
        assert run.effects()[message.task_id] == 1
        assert store.is_message_processed(message.message_id)
        assert store.retrieve(run.workflow.id).status is WorkflowStatus.SUCCEEDED
        assert run.bodies()[message.task_id] in (1, 2)  # ran again only if its commit was lost
    finally:
        pg_pair.resume_standby()
        pg_pair.reset()


def _error_of(call: object, *args: object) -> BaseException | None:
    try:
        call(*args)  # type: ignore[operator]
    except BaseException as error:  # handed to the test thread
        return error
    return None
