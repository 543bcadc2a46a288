"""Time to fail of each fault and dialect, against the deadline (issue 11's closing figures).

    python -m bench.time_to_fail [--deadline 3] [--runs 3]

Faults are injected as the tests do (``tests/faults/proxy.py`` in front of the real server, a
lock held by another connection); each figure is the slowest of ``--runs`` runs. Needs the
servers of DEVELOPERS.md (PostgreSQL on 5432, MariaDB on 3306); creates and drops its own
databases.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.pool import NullPool

from stabilize.models import WorkflowStatus
from stabilize.persistence import create_queue, create_repository
from stabilize.persistence.sql.engine import normalize_url
from stabilize.persistence.sql.rows import StageRow
from stabilize.persistence.sql.store import HEALTH_TIMEOUT, SqlWorkflowStore
from stabilize.queue.messages import StartWorkflow
from tests.conftest import MYSQL_ADMIN, POSTGRES_ADMIN
from tests.faults.proxy import Mode, proxy_for
from tests.integration.builders import chain

SERVERS = {"postgresql": POSTGRES_ADMIN, "mariadb": MYSQL_ADMIN}


Figure = tuple[float, str, float]
"""Seconds a call took, what it did, and its bound."""


def timed(call: Callable[[], Any], limit: float, bound: float) -> Figure:
    """Seconds ``call`` took, what it did (``HUNG`` past ``limit``), and ``bound``."""
    done: list[tuple[float, str]] = []

    def run() -> None:
        start = time.monotonic()
        try:
            outcome = f"returned {call()!r}"[:40]
        except Exception as error:
            outcome = type(error).__name__
        done.append((time.monotonic() - start, outcome))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    seconds, outcome = done[0] if done else (float("inf"), f"HUNG > {limit:g} s")
    return seconds, outcome, bound


@contextmanager
def database(dialect: str) -> Iterator[str]:
    admin = normalize_url(SERVERS[dialect])
    name = f"stab_ttf_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with engine.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    url = admin.set(database=name).render_as_string(hide_password=False)
    SqlWorkflowStore(url, create_tables=True).close()
    try:
        yield url
    finally:
        with engine.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))


def network_faults(dialect: str, deadline: float) -> dict[str, Figure]:
    limit = deadline * 4 + 10
    found: dict[str, Figure] = {}
    server = normalize_url(SERVERS[dialect])
    with database(dialect) as url, proxy_for((server.host or "127.0.0.1", server.port or 0)) as proxy:
        proxied = proxy.url_for(url)
        proxy.silent()
        found["silent: create_repository(create_tables=True)"] = timed(
            lambda: create_repository(proxied, create_tables=True, operation_timeout=deadline),
            limit,
            deadline,
        )
        fresh = create_repository(proxied, operation_timeout=deadline)
        found["silent: first call (retrieve)"] = timed(lambda: fresh.retrieve("x"), limit, deadline)
        proxy.heal()
        store = create_repository(proxied, operation_timeout=deadline)
        queue = create_queue(proxied, operation_timeout=deadline)
        workflow = chain(3, 2)
        store.store(workflow)
        queue.push(StartWorkflow(execution_id=workflow.id))
        stage = workflow.stages[0]

        def write() -> None:
            stage.status = WorkflowStatus.RUNNING
            store.store_stage(stage)

        calls: dict[str, Callable[[], Any]] = {
            "store_stage": write,
            "retrieve": lambda: store.retrieve(workflow.id),
            "poll_one": queue.poll_one,
            "is_healthy": store.is_healthy,
        }
        for fault, name in [("partition", n) for n in calls] + [("silent", "store_stage")]:
            store.retrieve(workflow.id)  # warm
            proxy.set_mode(Mode(fault))
            bound = HEALTH_TIMEOUT if name == "is_healthy" else deadline
            found[f"{fault} warm pool: {name}"] = timed(calls[name], limit, bound)
            proxy.heal()
        store.retrieve(workflow.id)
        time.sleep((store.profile.ping_after_idle or 0) + 0.3)  # idle: the next checkout pings
        proxy.partition()
        found["partition idle pool: store_stage"] = timed(write, limit, deadline)
        proxy.heal()
        store.retrieve(workflow.id)
        proxy.slow(deadline * 2)
        found[f"slow ({deadline * 2:g} s a chunk): retrieve"] = timed(
            lambda: store.retrieve(workflow.id), limit, deadline
        )
        proxy.heal()
        found["after heal: retrieve"] = timed(
            lambda: store.retrieve(workflow.id).id == workflow.id, limit, deadline
        )
        for closing in (queue, store, fresh):
            closing.close()
    return found


def stuck_lock(dialect: str, deadline: float) -> Figure:
    if dialect.startswith("sqlite"):
        path = Path(tempfile.mkdtemp()) / "ttf.db"
        url = f"sqlite:///{path}"
        store = SqlWorkflowStore(url, create_tables=True, operation_timeout=deadline)
        workflow = chain(2, 1)
        store.store(workflow)
        holder = create_engine(url, poolclass=NullPool)
        with holder.connect() as connection:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            result = timed(lambda: store.store_stage(workflow.stages[0]), deadline * 4, deadline)
            connection.rollback()
        store.close()
        return result
    with database(dialect) as url:
        store = SqlWorkflowStore(url, operation_timeout=deadline)
        workflow = chain(2, 1)
        store.store(workflow)
        holder = create_engine(normalize_url(url), poolclass=NullPool)
        with holder.connect() as connection:
            connection.execute(
                select(StageRow.id).where(StageRow.id == workflow.stages[0].id).with_for_update()
            )
            result = timed(lambda: store.store_stage(workflow.stages[0]), deadline * 4, deadline)
            connection.rollback()
        holder.dispose()
        store.close()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deadline", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows: dict[tuple[str, str], list[Figure]] = {}
    for _ in range(args.runs):
        for dialect in SERVERS:
            for fault, figure in network_faults(dialect, args.deadline).items():
                rows.setdefault((fault, dialect), []).append(figure)
        for dialect in ("sqlite_file", "postgresql", "mariadb"):
            rows.setdefault(("stuck lock: store_stage", dialect), []).append(
                stuck_lock(dialect, args.deadline)
            )
    print(f"| fault | dialect | bound (s) | slowest of {args.runs} (s) | outcome |")
    print("|---|---|---|---|---|")
    for (fault, dialect), figures in rows.items():
        seconds, outcome, bound = max(figures)
        print(f"| {fault} | {dialect} | {bound:g} | {seconds:.2f} | {outcome} |")


if __name__ == "__main__":
    main()
