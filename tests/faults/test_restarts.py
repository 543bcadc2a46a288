"""The real servers restart under a live store and queue (run serially: `-m restart`).

A store and a queue built before the restart keep working after it without being rebuilt (the
pool's pre-ping replaces stale connections); while a server is down every call fails at once with
``DatabaseUnavailableError`` (password masked) and writes nothing.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.engine import make_url

from stabilize.errors import DatabaseUnavailableError
from stabilize.models import StageExecution, Workflow, WorkflowStatus
from stabilize.persistence.sql.engine import normalize_url
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue.messages import StartWorkflow
from stabilize.queue.sql import SqlQueue

pytestmark = pytest.mark.restart

PG_VERSION = (os.listdir("/etc/postgresql") or ["15"])[0]
PG_CLUSTER = ["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main"]
MARIADB_START = ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"]
MARIADB_PING = ["mariadb-admin", "--protocol=tcp", "-h", "127.0.0.1", "-P", "3306", "-uroot", "ping"]
UP_SECONDS = 90


def _eventually(probe: Callable[[], bool], what: str) -> None:
    """Wait for a server process to reach a state; bounded, and a failure names what it waited for."""
    deadline = time.monotonic() + UP_SECONDS
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {UP_SECONDS}s")
        time.sleep(0.2)


def _ok(command: list[str]) -> bool:
    return subprocess.run(command, capture_output=True, timeout=30).returncode == 0


def _pg_up() -> bool:
    return _ok(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres"])


class Server:
    def __init__(self, dialect: str) -> None:
        self.dialect = dialect

    def up(self) -> bool:
        return _pg_up() if self.dialect == "postgresql" else _ok(MARIADB_PING)

    def stop(self) -> None:
        if self.dialect == "postgresql":
            subprocess.run([*PG_CLUSTER, "stop"], check=True, capture_output=True, timeout=120)
        else:
            subprocess.run([*MARIADB_PING[:-1], "shutdown"], check=True, capture_output=True, timeout=120)
            # The socket closes before the process exits, and start-stop-daemon --oknodo would
            # take a process still shutting down for a running server.
            _eventually(lambda: not _ok(["pgrep", "-x", "mariadbd"]), "mariadbd did not exit")
        _eventually(lambda: not self.up(), f"{self.dialect} did not stop")

    def start(self) -> None:
        if self.dialect == "postgresql":
            subprocess.run([*PG_CLUSTER, "start"], check=True, capture_output=True, timeout=120)
        else:
            subprocess.run(MARIADB_START, check=True, capture_output=True, timeout=120)
        _eventually(self.up, f"{self.dialect} did not come back")


@pytest.fixture
def server(dialect: str) -> Iterator[Server]:
    running = Server(dialect)
    yield running
    if not running.up():  # never leave the machine without its database, whatever failed
        running.start()


def _workflow() -> Workflow:
    return Workflow.create("restarts", "wf", [StageExecution.create("t", "A", "a")])


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"])
def test_store_and_queue_survive_a_server_restart(url: str, server: Server) -> None:
    store, queue = SqlWorkflowStore(url), SqlQueue(url)
    workflow = _workflow()
    store.store(workflow)
    queue.push(StartWorkflow(execution_id=workflow.id))
    assert store.retrieve(workflow.id).id == workflow.id  # the pool now holds live connections

    for _ in range(2):
        server.stop()
        server.start()
        # The same objects, no rebuild: stale pooled connections are replaced on checkout.
        assert store.retrieve(workflow.id).stages[0].ref_id == "a"
        stage = store.retrieve(workflow.id).stages[0]
        stage.status = WorkflowStatus.RUNNING
        store.store_stage(stage)
        assert store.is_healthy()

    message = queue.poll_one()
    assert isinstance(message, StartWorkflow) and message.execution_id == workflow.id
    queue.ack(message)
    assert store.retrieve(workflow.id).stages[0].version == 2


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"])
def test_calls_fail_fast_and_clearly_while_the_server_is_down(url: str, server: Server) -> None:
    with_password = make_url(normalize_url(url))
    if server.dialect == "postgresql":  # trust auth: any password is accepted, so one can be shown
        with_password = with_password.set(password="pw-not-shown")
    address = with_password.render_as_string(hide_password=False)
    store, queue = SqlWorkflowStore(address), SqlQueue(address)
    workflow = _workflow()
    store.store(_workflow())

    server.stop()
    try:
        started = time.monotonic()
        for call in (
            lambda: store.retrieve(workflow.id),
            lambda: store.store(workflow),
            lambda: queue.push(StartWorkflow(execution_id=workflow.id)),
            queue.poll_one,
        ):
            with pytest.raises(DatabaseUnavailableError) as caught:
                call()
            assert "unavailable" in str(caught.value)
            assert "pw-not-shown" not in str(caught.value)
        assert store.is_healthy() is False
        print(f"\n{server.dialect}: 4 calls failed in {time.monotonic() - started:.2f}s while down")
    finally:
        server.start()

    assert store.exists(workflow.id) is False  # nothing half-written by the failed store()
    assert queue.size() == 0
    store.store(workflow)
    assert store.retrieve(workflow.id).id == workflow.id
