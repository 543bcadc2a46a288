"""Queue throughput, duplicates and crash safety per dialect: a benchmark, not a test.

    .venv/bin/python bench/queue_throughput.py                 # SQLite file, local PostgreSQL, local MariaDB
    .venv/bin/python bench/queue_throughput.py --url sqlite:///q.db --messages 5000

For each database: push N messages (one transaction each), then drain them with 1 and with 4
consumer processes (claim + ack per message) and report messages/s, duplicates (messages delivered
to more than one consumer; the lock outlasts the run, so any duplicate is a bug) and lost
messages. Then SIGKILL a child that loops "compare-and-set a stage + push a message" in store
transactions, --kill-rounds times, and count the rounds after which the stage's version still
equals the number of its messages.

Without --url it creates scratch databases on the local servers (the test suite's admin URLs,
STABILIZE_TEST_POSTGRES_URL / STABILIZE_TEST_MYSQL_URL) and drops them afterwards. A --url
database is migrated to head and its queue tables are emptied: never point it at real data.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue as queue_module
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, delete, func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stabilize.models import StageExecution, Workflow
from stabilize.persistence.sql.engine import dispose_engines, get_engine, mask, normalize_url
from stabilize.persistence.sql.migrate import upgrade
from stabilize.persistence.sql.rows import DeadLetterRow, QueueMessageRow
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue import SqlQueue, StartStage, StartWorkflow

POSTGRES_ADMIN = os.environ.get("STABILIZE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN = os.environ.get("STABILIZE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
LOCK_SECONDS = 600  # longer than any run: a second delivery can only be a duplicate
DEADLINE = 600


@dataclass
class Drain:
    consumers: int
    seconds: float
    delivered: int
    duplicates: int
    lost: int
    left: int

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0


# -- databases ------------------------------------------------------------------------------------


def _admin(admin_url: str, statement: str) -> None:
    engine = create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))  # a generated identifier, never user input
    finally:
        engine.dispose()


@contextmanager
def scratch_databases(tmp: Path) -> Iterator[list[str]]:
    """A SQLite file plus one new database per local server, dropped at the end."""
    created: list[tuple[str, str]] = []
    urls = [f"sqlite:///{tmp / 'bench.db'}"]
    for admin in (POSTGRES_ADMIN, MYSQL_ADMIN):
        name = f"stab_bench_{uuid.uuid4().hex[:8]}"
        _admin(admin, f"CREATE DATABASE {name}")
        created.append((admin, name))
        urls.append(normalize_url(admin).set(database=name).render_as_string(hide_password=False))
    try:
        yield urls
    finally:
        dispose_engines()
        for admin, name in created:
            _admin(admin, f"DROP DATABASE IF EXISTS {name}")


def empty_queue(url: str) -> None:
    with get_engine(url).begin() as connection:
        connection.execute(delete(QueueMessageRow))
        connection.execute(delete(DeadLetterRow))


# -- throughput -----------------------------------------------------------------------------------


def _consume(url: str, start: Any, results: Any) -> None:
    queue = SqlQueue(url, lock_duration=LOCK_SECONDS)
    start.wait(DEADLINE)
    seen: list[str] = []
    while (message := queue.poll_one()) is not None:
        seen.append(message.message_id)
        queue.ack(message)
    results.put(seen)


def push(url: str, count: int) -> tuple[set[str], float]:
    queue = SqlQueue(url)
    messages = [StartWorkflow(execution_id=f"e{i}") for i in range(count)]
    began = time.perf_counter()
    for message in messages:
        queue.push(message)
    return {m.message_id for m in messages}, time.perf_counter() - began


def collect(results: Any, children: list[Any]) -> list[str]:
    """One consumer's deliveries; fails at once if a consumer died instead of reporting."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            seen: list[str] = results.get(timeout=1)
            return seen
        except queue_module.Empty:
            dead = [c.exitcode for c in children if c.exitcode not in (None, 0)]
            if dead:
                raise SystemExit(f"a consumer died with exit code {dead[0]}") from None
    raise SystemExit("the consumers did not finish in time")


def drain(url: str, expected: set[str], consumers: int) -> Drain:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(consumers + 1)
    results = context.Queue()
    children = [context.Process(target=_consume, args=(url, start, results)) for _ in range(consumers)]
    for child in children:
        child.start()
    start.wait(DEADLINE)  # every consumer has started: time only the draining
    began = time.perf_counter()
    delivered = [collect(results, children) for _ in children]
    seconds = time.perf_counter() - began
    for child in children:
        child.join(30)
    counts = Counter(mid for seen in delivered for mid in seen)
    return Drain(
        consumers=consumers,
        seconds=seconds,
        delivered=sum(counts.values()),
        duplicates=sum(1 for n in counts.values() if n > 1),
        lost=len(expected - counts.keys()),
        left=SqlQueue(url).size(),
    )


# -- kill rounds ----------------------------------------------------------------------------------


def _loop_until_killed(url: str, stage_id: str, committed: Any) -> None:
    store = SqlWorkflowStore(url)
    queue = SqlQueue(url)
    stage = store.retrieve_stage(stage_id)
    while True:
        with store.transaction(queue) as txn:
            txn.store_stage(stage)
            txn.push_message(StartStage(execution_id=stage.execution.id, stage_id=stage.id))
        committed.set()


def kill_rounds(url: str, rounds: int) -> tuple[int, int]:
    """(rounds after which version == messages, transactions committed in all)."""
    store = SqlWorkflowStore(url)
    stage = StageExecution.create("bench", "Stage", "a")
    workflow = Workflow.create("bench", "kill", [stage])
    store.store(workflow)
    context = multiprocessing.get_context("spawn")
    survived = 0
    version = 0
    for _ in range(rounds):
        committed = context.Event()
        child = context.Process(target=_loop_until_killed, args=(url, stage.id, committed))
        child.start()
        if committed.wait(60):
            time.sleep(random.uniform(0, 0.05))
        child.kill()
        child.join(30)
        version = store.retrieve_stage(stage.id).version
        mine = select(func.count()).where(QueueMessageRow.execution_id == workflow.id)
        with store.engine.connect() as connection:
            queued = connection.execute(mine).scalar_one()
        survived += version == queued
    return survived, version


# -- main -----------------------------------------------------------------------------------------


def run(url: str, messages: int, rounds: int) -> None:
    upgrade(get_engine(url))
    name = get_engine(url).dialect.name
    print(f"\n{name}: {mask(url)}")
    for consumers in (1, 4):
        empty_queue(url)
        expected, push_seconds = push(url, messages)
        if consumers == 1:
            print(f"  push, 1 producer        {messages / push_seconds:8.0f} msg/s")
        result = drain(url, expected, consumers)
        print(
            f"  drain, {consumers} consumer{'s' if consumers > 1 else ' '}      {result.rate:8.0f} msg/s"
            f"   duplicates {result.duplicates}   lost {result.lost}   left {result.left}"
        )
    empty_queue(url)
    if rounds:
        survived, commits = kill_rounds(url, rounds)
        print(f"  SIGKILL rounds survived {survived}/{rounds}   ({commits} transactions committed)")


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", action="append", help="database URL (repeatable); default: scratch ones")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--kill-rounds", type=int, default=20)
    args = parser.parse_args()
    if args.url:
        for url in args.url:
            run(url, args.messages, args.kill_rounds)
        return
    with tempfile.TemporaryDirectory() as tmp, scratch_databases(Path(tmp)) as urls:
        for url in urls:
            run(url, args.messages, args.kill_rounds)


if __name__ == "__main__":
    main()
