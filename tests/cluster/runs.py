"""Reference-runner workflows on the test clusters, for the cluster tests and bench/cluster_figures.py.

A run is the fan-out / fan-in demo workflow whose every task is ``test.effect``
(``tests/integration/runner_tasks.py``): each body run is logged to a file (so re-runs show), and
each effect is a row of ``test_effects`` written in the step's transaction, which also marks the
message processed, so a committed effect exists once however often the message is delivered.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import func, select

from stabilize.models import Workflow, WorkflowStatus
from stabilize.persistence.sql.engine import get_engine
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.sql import SqlQueue
from stabilize.runner import submit
from stabilize.runner.demo import demo_workflow
from stabilize.runner.processes import start_workers
from tests.integration.runner_tasks import EFFECTS

TASKS = ("tests.integration.runner_tasks",)
#: Galera: a read waits until its node has applied every write the cluster committed before it.
CAUSAL_READS = "SET SESSION wsrep_sync_wait = 1"


def causal(url: str) -> str:
    """A Galera node's URL whose connections read causally (``wsrep_sync_wait``)."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}init_command={quote(CAUSAL_READS)}"


@dataclass
class Run:
    """One submitted workflow: its store (on ``url``), its body log, and its workers."""

    url: str
    store: SqlWorkflowStore
    workflow: Workflow
    body_log: Path
    workers: list[BaseProcess]

    @property
    def task_ids(self) -> list[str]:
        return [task.id for stage in self.workflow.stages for task in stage.tasks]

    def effects(self, url: str | None = None) -> Counter[str]:
        """Committed effects per task id (read on ``url``, default the run's)."""
        with get_engine(url or self.url).connect() as connection:
            rows = connection.execute(
                select(EFFECTS.c.task_id).where(EFFECTS.c.workflow_id == self.workflow.id)
            )
            return Counter(task_id for (task_id,) in rows)

    def effect_count(self) -> int:
        with get_engine(self.url).connect() as connection:
            query = select(func.count()).select_from(EFFECTS).where(EFFECTS.c.workflow_id == self.workflow.id)
            return int(connection.execute(query).scalar_one())

    def bodies(self) -> Counter[str]:
        """Body runs per task id (a task whose step did not commit ran again)."""
        return Counter(self.body_log.read_text().split()) if self.body_log.exists() else Counter()

    def start(
        self, urls: Sequence[str], per_url: int = 1, lock_seconds: float = 30.0, outage_seconds: float = 30.0
    ) -> list[list[BaseProcess]]:
        """Start ``per_url`` worker processes on each of ``urls``; returns them grouped by URL."""
        groups = [
            start_workers(
                url,
                self.workflow.id,
                per_url,
                TASKS,
                lock_seconds=lock_seconds,
                outage_seconds=outage_seconds,
            )
            for url in urls
        ]
        self.workers.extend(process for group in groups for process in group)
        return groups

    def join(self, seconds: float) -> None:
        """Wait (bounded) for every worker to exit; fail naming the ones still running."""
        deadline = time.monotonic() + seconds
        for process in self.workers:
            process.join(max(0.0, deadline - time.monotonic()))
        running = [p.pid for p in self.workers if p.is_alive()]
        for process in self.workers:
            if process.is_alive():
                process.kill()
                process.join(10)
        assert not running, f"workers {running} still running {seconds:.0f}s after the run started"

    def wait_for_effects(self, count: int, seconds: float) -> None:
        """Poll (bounded) until ``count`` effects committed."""
        deadline = time.monotonic() + seconds
        while self.effect_count() < count:
            assert time.monotonic() < deadline, f"fewer than {count} effects within {seconds:.0f}s"
            time.sleep(0.02)

    def lost_and_duplicated(self, url: str | None = None) -> tuple[int, int]:
        """Tasks without a committed effect, and effects committed more than once."""
        effects = self.effects(url)
        lost = sum(1 for task_id in self.task_ids if effects[task_id] == 0)
        duplicated = sum(count - 1 for count in effects.values() if count > 1)
        return lost, duplicated

    def assert_done_once(self, url: str | None = None) -> None:
        """The workflow succeeded, every stage too, and every task's effect committed once."""
        store = SqlWorkflowStore(url) if url else self.store
        done = store.retrieve(self.workflow.id)
        assert done.status is WorkflowStatus.SUCCEEDED
        assert {s.status for s in done.stages} == {WorkflowStatus.SUCCEEDED}
        assert self.effects(url) == Counter(self.task_ids)  # each effect exactly once
        assert self.lost_and_duplicated(url) == (0, 0)
        merged = self.store.get_merged_ancestor_outputs(done.id, "combine")
        work_refs = [s.ref_id for s in done.stages if s.ref_id.startswith("work-")]
        assert sorted(merged["items"]) == sorted(["prepare", *work_refs])


def submit_run(url: str, directory: Path, stages: int, queue_url: str | None = None) -> Run:
    """Create the effects table, submit a ``stages``-stage workflow through ``url`` (its queue on
    ``queue_url``, default the same), and return the run (no workers yet)."""
    EFFECTS.create(get_engine(url), checkfirst=True)
    store = SqlWorkflowStore(url)
    workflow = demo_workflow(stages, task="test.effect")
    body_log = directory / f"bodies-{workflow.id}.log"
    for stage in workflow.stages:
        stage.context["body_log"] = str(body_log)
    submit(store, SqlQueue(queue_url or url), workflow)
    return Run(url, store, workflow, body_log, [])
