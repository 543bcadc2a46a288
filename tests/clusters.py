"""The test clusters of issue 15 ("Beyond one server"): a 3-node MariaDB Galera cluster and a
PostgreSQL primary with one synchronous streaming standby, all on 127.0.0.1, beside (and never
touching) the ordinary MariaDB on 3306 and PostgreSQL on 5432.

Everything lives under one base directory (``STABILIZE_CLUSTER_DIR``, default
``/tmp/stabilize-clusters``)::

    galera/node{1,2,3}/   my.cnf, data/, mariadbd.sock, mariadbd.pid, error.log
    galera/bin/           galera-mariadbd, the nodes' copy of /usr/sbin/mariadbd
    postgres/primary/     data directory of the primary (owned by the ``postgres`` OS user)
    postgres/standby/     data directory of the standby, made by ``pg_basebackup``
    postgres/*.log        each server's log

Ports: Galera client ports 33061-33063, group communication 45671-45673, IST 45681-45683,
SST (rsync) 45691-45693; PostgreSQL primary 55432, standby 55433.

Used by ``.ci/run`` (``python -m tests.clusters up``) and by the session fixtures of
``tests/cluster/conftest.py``; both call the same functions. ``up`` is idempotent (a healthy
cluster is left as it is, a broken one is repaired or rebuilt), every wait is bounded and its
failure names the log to read, ``down`` stops every process of ours and removes the data. A file
lock serialises concurrent callers (``.ci/run`` and a test session, or two test sessions).

    python -m tests.clusters up|down|status [--galera] [--postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

BASE = Path(os.environ.get("STABILIZE_CLUSTER_DIR", "/tmp/stabilize-clusters"))
GALERA_DIR = BASE / "galera"
PG_DIR = BASE / "postgres"

GALERA_NODES = (1, 2, 3)
GALERA_CLIENT_PORTS = {1: 33061, 2: 33062, 3: 33063}
GALERA_GMCAST_PORTS = {1: 45671, 2: 45672, 3: 45673}
GALERA_IST_PORTS = {1: 45681, 2: 45682, 3: 45683}
GALERA_SST_PORTS = {1: 45691, 2: 45692, 3: 45693}
GALERA_CLUSTER_NAME = "stabilize-test"
#: The nodes run as ``mysql`` (their directories are its own): run as root, the joiner's rsync
#: daemon would switch to ``nobody`` and could not write the state it receives.
GALERA_OS_USER = "mysql"
#: The nodes run a private copy of /usr/sbin/mariadbd under another name, so that whatever knows
#: the ordinary server by its executable (``pgrep -x mariadbd``; ``start-stop-daemon --exec
#: /usr/sbin/mariadbd``, which compares inodes and would take a node for the ordinary server and
#: not start it) never confuses the two, in this branch's tests or anyone else's.
MARIADBD = Path("/usr/sbin/mariadbd")
GALERA_MARIADBD = GALERA_DIR / "bin" / "galera-mariadbd"
GALERA_PROVIDER_CANDIDATES = ("/usr/lib/galera/libgalera_smm.so", "/usr/lib/libgalera_smm.so")
#: Whole-cluster budget of ``galera_up`` (a fresh build takes about 15 s on the 2-core CI machine).
GALERA_UP_SECONDS = 90.0
#: Budget for repairing a cluster that still has a primary component, before rebuilding it.
GALERA_REPAIR_SECONDS = 40.0
#: Budget for one node to (re)join and reach Synced.
GALERA_NODE_SECONDS = 60.0

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_PRIMARY_PORT = 55432
PG_STANDBY_PORT = 55433
PG_STANDBY_NAME = "standby1"
PG_OS_USER = "postgres"
PG_UP_SECONDS = 60.0

#: The database each cluster holds from the start, like ``test`` on the ordinary servers.
DEFAULT_DATABASE = "test"


#: Progress lines on stderr (the CLI turns them on; a test run keeps quiet).
VERBOSE = False
_started = time.monotonic()


def _say(message: str) -> None:
    if VERBOSE:
        print(f"clusters: [{time.monotonic() - _started:6.1f}s] {message}", file=sys.stderr, flush=True)


class ClusterError(RuntimeError):
    """A cluster did not reach the state asked for in time; the message names the log to read."""


# --------------------------------------------------------------------------------------------
# Small tools: bounded waits, locking, our own processes
# --------------------------------------------------------------------------------------------


def wait_until(
    probe: Callable[[], bool],
    seconds: float,
    what: str,
    log: Path | None = None,
    died: Callable[[], bool] | None = None,
) -> None:
    """Poll ``probe`` (every 0.2 s) until it answers True; after ``seconds``, or as soon as
    ``died`` answers True (the process that should get there has exited), raise
    :class:`ClusterError` saying what was awaited and showing the tail of ``log``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if probe():
                return
        except Exception:  # a probe that cannot connect yet is simply not there yet
            pass
        if died is not None and died():
            raise ClusterError(f"{what}: the server process exited{_log_hint(log)}")
        if time.monotonic() > deadline:
            raise ClusterError(f"{what}: not reached within {seconds:.0f}s{_log_hint(log)}")
        time.sleep(0.2)


def _log_hint(log: Path | None, lines: int = 25) -> str:
    if log is None:
        return ""
    try:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"; log {log} (not readable)"
    return f"; read {log}, its last lines:\n    " + "\n    ".join(tail)


_lock_depth = 0


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Hold the base directory's lock file (re-entrant within one process)."""
    global _lock_depth
    if _lock_depth:
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
        return
    BASE.mkdir(parents=True, exist_ok=True)
    BASE.chmod(0o755)
    with open(BASE / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _lock_depth = 1
        try:
            yield
        finally:
            _lock_depth = 0
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tidy_base() -> None:
    """Remove the base directory once neither cluster is in it (only the lock file is left); not
    inside an outer locked call (``reset_pair``), which goes on using the lock."""
    if _lock_depth != 1:
        return
    with contextlib.suppress(OSError):
        if {entry.name for entry in BASE.iterdir()} <= {".lock"}:
            (BASE / ".lock").unlink(missing_ok=True)
            BASE.rmdir()


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _processes_under(directory: Path) -> list[int]:
    """The live processes whose command line names ``directory`` (ours, never anybody else's)."""
    marker = str(directory) + "/"
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            pid = int(entry)
            if marker in _cmdline(pid) + "/" and _alive(pid):
                found.append(pid)
    return found


def _children_of(parent: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent and _alive(int(entry)):
                children.append(int(entry))
    return children


#: The servers this process started itself (reaped when killed, so no zombie is left behind).
_spawned: dict[int, subprocess.Popen[bytes]] = {}
#: The mariadbd this process started last for each Galera node.
_spawned_nodes: dict[int, subprocess.Popen[bytes]] = {}


def _kill(pids: list[int], seconds: float = 15.0) -> None:
    """SIGKILL these processes and wait (bounded) until they are gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        child = _spawned.pop(pid, None)
        if child is not None:
            child.wait(seconds)
    wait_until(lambda: not any(_alive(p) for p in pids), seconds, f"processes {pids} to exit")


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _run(command: list[str], timeout: float = 60, what: str = "", log: Path | None = None) -> str:
    """Run a command, return its stdout; a failure raises :class:`ClusterError` with its output."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"{what or command[0]}: timed out after {timeout:.0f}s{_log_hint(log)}") from exc
    if done.returncode != 0:
        raise ClusterError(
            f"{what or command[0]} failed ({done.returncode}): {' '.join(command)}\n"
            f"{done.stdout}{done.stderr}{_log_hint(log)}"
        )
    return done.stdout


def _scalar(url: str, sql: str, timeout: int = 3, **params: object) -> object:
    """One value from ``sql`` (with bound ``params``) on ``url`` (a short-lived engine, no pool)."""
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": timeout})
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


def _execute(url: str, sql: str, timeout: int = 5) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE)."""
    engine = create_engine(
        url, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": timeout}
    )
    try:
        with engine.connect() as connection:
            connection.execute(text(sql))
    finally:
        engine.dispose()


def new_database_name() -> str:
    """A fresh throw-away database name, like the main suite's ``stab_<random>``."""
    return f"stab_{uuid.uuid4().hex[:12]}"


def _checked_name(name: str) -> str:
    if not (name.replace("_", "").isalnum() and name[:1].isalpha()):
        raise ValueError(f"database name {name!r}: letters, digits and _ only, starting with a letter")
    return name


# --------------------------------------------------------------------------------------------
# MariaDB Galera: three nodes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GaleraNode:
    """Where one Galera node keeps its files and which ports it uses."""

    index: int

    @property
    def dir(self) -> Path:
        return GALERA_DIR / f"node{self.index}"

    @property
    def datadir(self) -> Path:
        return self.dir / "data"

    @property
    def cnf(self) -> Path:
        return self.dir / "my.cnf"

    @property
    def socket(self) -> Path:
        return self.dir / "mariadbd.sock"

    @property
    def pid_file(self) -> Path:
        return self.dir / "mariadbd.pid"

    @property
    def error_log(self) -> Path:
        return self.dir / "error.log"

    @property
    def port(self) -> int:
        return GALERA_CLIENT_PORTS[self.index]

    def url(self, database: str = DEFAULT_DATABASE) -> str:
        """The node's SQLAlchemy URL (root, empty password, over TCP)."""
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}"


def galera_node(index: int) -> GaleraNode:
    """Node ``index`` (1, 2 or 3)."""
    if index not in GALERA_NODES:
        raise ValueError(f"galera node {index!r}: there are nodes 1, 2 and 3")
    return GaleraNode(index)


def galera_urls(database: str = DEFAULT_DATABASE) -> list[str]:
    """The three nodes' SQLAlchemy URLs ``mysql+pymysql://root@127.0.0.1:3306x/<database>``."""
    return [GaleraNode(i).url(database) for i in GALERA_NODES]


def _galera_provider() -> str:
    for candidate in GALERA_PROVIDER_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    raise ClusterError(f"no Galera provider (libgalera_smm.so) at {', '.join(GALERA_PROVIDER_CANDIDATES)}")


def _sst_method() -> str:
    """rsync when installed (the fastest for a small cluster), else mariabackup."""
    if shutil.which("rsync"):
        return "rsync"
    if shutil.which("mariabackup"):
        return "mariabackup"
    raise ClusterError("no state transfer tool: neither rsync nor mariabackup is installed")


def _write_galera_cnf(node: GaleraNode) -> None:
    members = ",".join(f"127.0.0.1:{GALERA_GMCAST_PORTS[i]}" for i in GALERA_NODES)
    gmcast = GALERA_GMCAST_PORTS[node.index]
    provider_options = ";".join(
        [
            f"gmcast.listen_addr=tcp://127.0.0.1:{gmcast}",
            f"ist.recv_addr=127.0.0.1:{GALERA_IST_PORTS[node.index]}",
            "gcache.size=64M",
            # A killed or isolated node leaves the view within a few seconds (defaults: 5 s / 15 s).
            "evs.suspect_timeout=PT3S",
            "evs.inactive_timeout=PT6S",
            "evs.install_timeout=PT5S",
        ]
    )
    settings = {
        "user": GALERA_OS_USER,
        "basedir": "/usr",  # the binary is a copy elsewhere; messages and plugins stay in /usr
        "datadir": node.datadir,
        "socket": node.socket,
        "pid-file": node.pid_file,
        "log-error": node.error_log,
        "port": node.port,
        "bind-address": "127.0.0.1",
        "skip-name-resolve": "ON",
        # As on the ordinary server (its /etc/mysql/my.cnf).
        "character-set-server": "utf8mb4",
        "collation-server": "utf8mb4_general_ci",
        "binlog_format": "ROW",
        "default_storage_engine": "InnoDB",
        "innodb_autoinc_lock_mode": 2,
        "innodb_buffer_pool_size": "128M",
        "innodb_log_file_size": "32M",
        "innodb_flush_log_at_trx_commit": 2,
        "max_connections": 300,
        "wsrep_on": "ON",
        "wsrep_provider": _galera_provider(),
        "wsrep_cluster_name": GALERA_CLUSTER_NAME,
        "wsrep_cluster_address": f"gcomm://{members}",
        "wsrep_node_name": f"node{node.index}",
        "wsrep_node_address": f"127.0.0.1:{gmcast}",
        "wsrep_node_incoming_address": f"127.0.0.1:{node.port}",
        "wsrep_provider_options": f'"{provider_options}"',
        "wsrep_sst_method": _sst_method(),
        "wsrep_sst_receive_address": f"127.0.0.1:{GALERA_SST_PORTS[node.index]}",
        "wsrep_slave_threads": 2,
    }
    lines = ["# Written by tests/clusters.py; removed by `python -m tests.clusters down`.", "[mysqld]"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    lines += ["", "[client]", f"socket = {node.socket}", f"port = {node.port}", ""]
    node.cnf.write_text("\n".join(lines))


def _galera_pids(node: GaleraNode) -> list[int]:
    """The node's live processes: its mariadbd and any state-transfer helpers (rsync, scripts)."""
    return _processes_under(node.dir)


def _mariadbd_pid(node: GaleraNode) -> int | None:
    """The node's live mariadbd: the one this process started (a process only just started can
    show an empty /proc command line), else the pid file's, else the one /proc shows."""
    child = _spawned_nodes.get(node.index)
    if child is not None and child.poll() is None:
        return child.pid
    pid = _read_pid(node.pid_file)
    if pid is not None and _alive(pid) and str(node.cnf) in _cmdline(pid):
        return pid
    for candidate in _galera_pids(node):
        if "mariadbd" in _cmdline(candidate).split(" ")[0]:
            return candidate
    return None


def _node_sql(node: GaleraNode, sql: str, timeout: float = 5) -> list[list[str]] | None:
    """Rows of ``sql`` run as root@localhost on the node's socket with the ``mariadb`` client, or
    None when the node does not answer. The admin path: it works before root@127.0.0.1 exists
    and on a node outside the primary component (where SQLAlchemy's connect-time queries fail)."""
    try:
        out = subprocess.run(
            ["mariadb", f"--socket={node.socket}", "-uroot", "-N", "-B", "--connect-timeout=3", "-e", sql],
            capture_output=True, text=True, timeout=timeout, check=True,
        ).stdout  # fmt: skip
    except (subprocess.SubprocessError, OSError):
        return None
    return [line.split("\t") for line in out.splitlines()]


def galera_node_status(index: int) -> dict[str, str] | None:
    """The node's ``wsrep_%`` status variables, or None when it does not answer."""
    rows = _node_sql(galera_node(index), "SHOW GLOBAL STATUS LIKE 'wsrep%'")
    return None if rows is None else {row[0]: row[1] for row in rows if len(row) == 2}


def _synced(status: dict[str, str] | None, size: int | None = None) -> bool:
    return (
        status is not None
        and status.get("wsrep_ready") == "ON"
        and status.get("wsrep_cluster_status") == "Primary"
        and status.get("wsrep_local_state_comment") == "Synced"
        and (size is None or status.get("wsrep_cluster_size") == str(size))
    )


def galera_cluster_size(index: int) -> int | None:
    """``wsrep_cluster_size`` as node ``index`` sees it (None when it does not answer)."""
    status = galera_node_status(index)
    return int(status["wsrep_cluster_size"]) if status and "wsrep_cluster_size" in status else None


def _tcp_ok(index: int) -> bool:
    """Node ``index`` takes a query from root@127.0.0.1 over TCP through SQLAlchemy."""
    try:
        return _scalar(GaleraNode(index).url(""), "SELECT 1", timeout=2) == 1
    except Exception:
        return False


def galera_healthy() -> bool:
    """Every node is ready and Synced in a primary component of 3, and answers over TCP."""
    return all(_synced(galera_node_status(i), 3) for i in GALERA_NODES) and all(map(_tcp_ok, GALERA_NODES))


def wait_galera(nodes: tuple[int, ...] | list[int], size: int, seconds: float = GALERA_NODE_SECONDS) -> None:
    """Wait until each of ``nodes`` is ready and Synced in a primary component of ``size`` nodes."""
    for index in nodes:
        wait_until(
            lambda i=index: _synced(galera_node_status(i), size),  # type: ignore[misc]
            seconds,
            f"galera node {index} Synced in a cluster of {size}",
            GaleraNode(index).error_log,
            died=lambda i=index: _mariadbd_pid(GaleraNode(i)) is None,  # type: ignore[misc]
        )


def _start_mariadbd(node: GaleraNode, *extra: str) -> None:
    """Start the node's mariadbd detached from this process (it outlives the CLI)."""
    if _mariadbd_pid(node) is not None:
        return
    node.socket.unlink(missing_ok=True)
    command = [str(GALERA_MARIADBD), f"--defaults-file={node.cnf}", *extra]
    with open(node.dir / "mariadbd.out", "ab") as out:
        child = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, close_fds=True
        )
    _spawned[child.pid] = child
    _spawned_nodes[node.index] = child


def _socket_sql(node: GaleraNode, sql: str) -> None:
    """Run SQL as root@localhost over the node's socket (unix_socket authentication)."""
    _run(
        ["mariadb", f"--socket={node.socket}", "-uroot", "--batch", "-e", sql],
        timeout=30,
        what=f"SQL on galera node {node.index}",
        log=node.error_log,
    )


def _galera_build(deadline: float) -> None:
    """A fresh cluster: node 1 initialised and bootstrapped, nodes 2 and 3 joining by SST, all
    before ``deadline`` (a ``time.monotonic()`` value)."""

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    _say("galera: building a fresh cluster")
    _galera_stop_all()
    shutil.rmtree(GALERA_DIR, ignore_errors=True)
    for index in GALERA_NODES:
        node = GaleraNode(index)
        node.datadir.mkdir(parents=True)
        _write_galera_cnf(node)
        for path in (node.dir, node.datadir):
            shutil.chown(path, GALERA_OS_USER, GALERA_OS_USER)
        node.datadir.chmod(0o750)
    GALERA_MARIADBD.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(MARIADBD, GALERA_MARIADBD)
    first = GaleraNode(1)
    _run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={first.datadir}",
            f"--user={GALERA_OS_USER}",
            "--skip-test-db",
            "--auth-root-authentication-method=socket",
        ],
        timeout=60,
        what="mariadb-install-db for galera node 1",
    )
    _say("galera: node 1 initialised; bootstrapping it (--wsrep-new-cluster)")
    _start_mariadbd(first, "--wsrep-new-cluster")
    wait_galera([1], 1, left())
    _say("galera: node 1 Synced (cluster of 1)")
    _socket_sql(
        first,
        "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';"
        "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
        f"CREATE DATABASE IF NOT EXISTS {DEFAULT_DATABASE};",
    )
    # One joiner at a time: node 1 donates to node 2, then either donates to node 3.
    for index in (2, 3):
        _start_mariadbd(GaleraNode(index))
        wait_galera([index], index, left())
        _say(f"galera: node {index} joined (state transfer: {_sst_method()}), cluster of {index}")
    wait_until(galera_healthy, left(), "galera cluster of 3 answering over TCP as root@127.0.0.1")


def _galera_repair(seconds: float) -> None:
    """Bring a cluster that still has a primary component back to 3: lift isolations, then start
    the nodes that are down one at a time (each rejoins by IST or SST)."""
    deadline = time.monotonic() + seconds
    heal(seconds)
    for index in GALERA_NODES:
        node = GaleraNode(index)
        if _mariadbd_pid(node) is None:
            _say(f"galera: starting node {index} again")
            _start_mariadbd(node)
            running = [i for i in GALERA_NODES if _mariadbd_pid(GaleraNode(i)) is not None]
            wait_galera([index], len(running), max(1.0, deadline - time.monotonic()))
    wait_until(
        galera_healthy, max(1.0, deadline - time.monotonic()), "galera cluster of 3 answering over TCP"
    )


def galera_up() -> None:
    """Ensure the 3-node cluster is up and healthy. Returns at once when it is; when part of it
    still forms a primary component, starts the nodes that are down and lifts isolations (within
    :data:`GALERA_REPAIR_SECONDS`); otherwise, or when that fails, rebuilds it from scratch within
    :data:`GALERA_UP_SECONDS`. Raises :class:`ClusterError` naming the log to read."""
    with _locked():
        if galera_healthy():
            return
        if any(_synced(galera_node_status(i)) for i in GALERA_NODES):
            try:
                _galera_repair(GALERA_REPAIR_SECONDS)
                return
            except ClusterError as exc:
                _say(f"galera: repair failed, rebuilding: {str(exc).splitlines()[0]}")
        _galera_build(time.monotonic() + GALERA_UP_SECONDS)


def _galera_stop_all() -> None:
    pids = _processes_under(GALERA_DIR)  # the directory may be gone, the processes not
    for node in map(GaleraNode, GALERA_NODES):
        pid = _mariadbd_pid(node)
        if pid is not None and pid not in pids:
            pids.append(pid)
    if pids:
        _kill(pids)


def galera_down() -> None:
    """Stop every process of the cluster (SIGKILL: its data goes too) and remove its directory."""
    with _locked():
        _galera_stop_all()
        shutil.rmtree(GALERA_DIR, ignore_errors=True)
        _tidy_base()


def kill_node(index: int) -> None:
    """SIGKILL node ``index``'s mariadbd (and its state-transfer helpers); returns once it is gone.
    The other nodes notice within a few seconds (poll :func:`galera_cluster_size`)."""
    node = galera_node(index)
    with _locked():
        pids = _galera_pids(node)
        pid = _mariadbd_pid(node)
        if pid is not None and pid not in pids:
            pids.append(pid)
        if not pids:
            raise ClusterError(f"galera node {index} is not running")
        _kill(pids)


def restart_node(index: int, seconds: float = GALERA_NODE_SECONDS) -> None:
    """Start node ``index`` again (after :func:`kill_node`): it rejoins the cluster by IST or SST;
    returns once it is Synced in a cluster of every running node."""
    node = galera_node(index)
    with _locked():
        _start_mariadbd(node)
        running = [i for i in GALERA_NODES if _mariadbd_pid(GaleraNode(i)) is not None]
        wait_galera([index], len(running), seconds)


def isolate_node(index: int) -> None:
    """Cut node ``index`` off the group communication (``gmcast.isolate=1``): it keeps running
    but leaves the primary component (its clients get ``WSREP has not yet prepared node for
    application use``), the others go on as a cluster of 2. :func:`heal` lifts it."""
    node = galera_node(index)
    if _node_sql(node, "SET GLOBAL wsrep_provider_options = 'gmcast.isolate=1'") is None:
        raise ClusterError(f"galera node {index} did not take gmcast.isolate=1{_log_hint(node.error_log)}")


def heal(seconds: float = GALERA_NODE_SECONDS) -> None:
    """Lift any isolation (``gmcast.isolate=0`` on every running node; the provider does not
    report the option, so it is set on all) and wait until the running nodes are Synced together."""
    running = [i for i in GALERA_NODES if _mariadbd_pid(GaleraNode(i)) is not None]
    for index in running:
        _node_sql(GaleraNode(index), "SET GLOBAL wsrep_provider_options = 'gmcast.isolate=0'")
    wait_galera(running, len(running), seconds)


def create_galera_database(name: str | None = None) -> str:
    """Create a throw-away database on the cluster (through node 1; DDL replicates) and return
    its name; :func:`drop_galera_database` removes it."""
    name = _checked_name(name or new_database_name())
    _execute(GaleraNode(1).url(""), f"CREATE DATABASE {name}")
    return name


def drop_galera_database(name: str) -> None:
    """Drop a throw-away database through the first node that answers."""
    name = _checked_name(name)
    for index in GALERA_NODES:
        if _synced(galera_node_status(index)):
            _execute(GaleraNode(index).url(""), f"DROP DATABASE IF EXISTS {name}")
            return
    raise ClusterError(f"no galera node is Synced to drop database {name}")


@contextlib.contextmanager
def galera_database() -> Iterator[list[str]]:
    """A throw-away database on the cluster for a ``with`` block: yields the three nodes' URLs."""
    name = create_galera_database()
    try:
        yield galera_urls(name)
    finally:
        drop_galera_database(name)


def galera_status() -> dict[int, dict[str, str] | None]:
    """Each node's ``wsrep_%`` status (None for a node that does not answer)."""
    return {i: galera_node_status(i) for i in GALERA_NODES}


# --------------------------------------------------------------------------------------------
# PostgreSQL: a primary and one synchronous standby
# --------------------------------------------------------------------------------------------


class PgPairUrls(NamedTuple):
    """The pair's URLs for one database."""

    #: ``postgresql+psycopg://postgres@127.0.0.1:55432/<db>``
    primary: str
    #: ``postgresql+psycopg://postgres@127.0.0.1:55433/<db>``
    standby: str
    #: libpq's multi-host form, as users pass it:
    #: ``postgresql://postgres@127.0.0.1:55432,127.0.0.1:55433/<db>?target_session_attrs=read-write``
    multi_host: str
    #: SQLAlchemy's psycopg multi-host form: ``...@/<db>?host=127.0.0.1:55432&host=127.0.0.1:55433&...``
    multi_host_query: str
    #: libpq's query form: ``...@/<db>?host=127.0.0.1,127.0.0.1&port=55432,55433&...``
    multi_host_libpq_query: str


PRIMARY_DIR = PG_DIR / "primary"
STANDBY_DIR = PG_DIR / "standby"
PRIMARY_LOG = PG_DIR / "primary.log"
STANDBY_LOG = PG_DIR / "standby.log"


def pg_pair_urls(database: str = DEFAULT_DATABASE) -> PgPairUrls:
    """The primary's, the standby's and the multi-host URLs of ``database``."""
    hosts = f"127.0.0.1:{PG_PRIMARY_PORT},127.0.0.1:{PG_STANDBY_PORT}"
    attrs = "target_session_attrs=read-write"
    return PgPairUrls(
        primary=f"postgresql+psycopg://postgres@127.0.0.1:{PG_PRIMARY_PORT}/{database}",
        standby=f"postgresql+psycopg://postgres@127.0.0.1:{PG_STANDBY_PORT}/{database}",
        multi_host=f"postgresql://postgres@{hosts}/{database}?{attrs}",
        multi_host_query=(
            f"postgresql+psycopg://postgres@/{database}?host=127.0.0.1:{PG_PRIMARY_PORT}"
            f"&host=127.0.0.1:{PG_STANDBY_PORT}&{attrs}"
        ),
        multi_host_libpq_query=(
            f"postgresql+psycopg://postgres@/{database}?host=127.0.0.1,127.0.0.1"
            f"&port={PG_PRIMARY_PORT},{PG_STANDBY_PORT}&{attrs}"
        ),
    )


def _as_postgres(program: str, *args: str, timeout: float = 60, log: Path | None = None) -> str:
    return _run(
        ["runuser", "-u", PG_OS_USER, "--", str(PG_BIN / program), *args],
        timeout=timeout,
        what=program,
        log=log,
    )


def _pg_url(port: int, database: str = "postgres") -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"


def _in_recovery(port: int) -> bool | None:
    """``pg_is_in_recovery()`` on the server at ``port``; None when it does not answer."""
    try:
        return bool(_scalar(_pg_url(port), "SELECT pg_is_in_recovery()", timeout=2))
    except Exception:
        return None


def pg_sync_state() -> str | None:
    """The standby's ``sync_state`` in the primary's ``pg_stat_replication`` (None: not streaming)."""
    try:
        value = _scalar(
            _pg_url(PG_PRIMARY_PORT),
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = :name",
            timeout=2,
            name=PG_STANDBY_NAME,
        )
    except Exception:
        return None
    return None if value is None else str(value)


def pg_pair_healthy() -> bool:
    """The primary answers read-write, the standby answers in recovery, and it is synchronous."""
    return (
        _in_recovery(PG_PRIMARY_PORT) is False
        and _in_recovery(PG_STANDBY_PORT) is True
        and pg_sync_state() == "sync"
    )


def _postmaster_pid(datadir: Path) -> int | None:
    pid = _read_pid(datadir / "postmaster.pid")
    if pid is not None and _alive(pid) and str(datadir) in _cmdline(pid):
        return pid
    return None


def _pg_kill(datadir: Path) -> None:
    """Stop one server at once (SIGKILL of the postmaster and its children)."""
    pids: list[int] = []
    postmaster = _postmaster_pid(datadir)
    for pid in [postmaster, *_processes_under(datadir)]:
        if pid is not None and pid not in pids:
            pids.append(pid)
            pids.extend(child for child in _children_of(pid) if child not in pids)
    if pids:
        _kill(pids)


def _pg_write_conf(datadir: Path, settings: dict[str, str | int]) -> None:
    lines = ["", "# Added by tests/clusters.py"]
    lines += [
        f"{key} = '{value}'" if isinstance(value, str) else f"{key} = {value}"
        for key, value in settings.items()
    ]
    with open(datadir / "postgresql.conf", "a") as handle:
        handle.write("\n".join(lines) + "\n")


def _pg_start(datadir: Path, log: Path) -> None:
    _as_postgres("pg_ctl", "-D", str(datadir), "-l", str(log), "-w", "-t", "60", "start", timeout=90, log=log)


def _pg_build() -> None:
    """initdb a primary, copy it with pg_basebackup into a standby, make the standby synchronous."""
    _pg_stop_all()
    shutil.rmtree(PG_DIR, ignore_errors=True)
    PG_DIR.mkdir(parents=True)
    shutil.chown(PG_DIR, PG_OS_USER, PG_OS_USER)
    PG_DIR.chmod(0o700)
    _as_postgres(
        "initdb", "-D", str(PRIMARY_DIR), "-U", "postgres", "--auth=trust", "-E", "UTF8",
        "--locale=C.UTF-8", "--no-sync", "--no-instructions",
    )  # fmt: skip
    _pg_write_conf(
        PRIMARY_DIR,
        {
            "port": PG_PRIMARY_PORT,
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(PG_DIR),
            "wal_level": "replica",
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "hot_standby": "on",
            "wal_keep_size": "64MB",
            "synchronous_commit": "on",
            "max_connections": 200,
            # Test data: a crash of the server process loses nothing without fsync (the OS keeps it).
            "fsync": "off",
            "logging_collector": "off",
        },
    )
    (PRIMARY_DIR / "pg_hba.conf").write_text(
        "# Written by tests/clusters.py\n"
        "local all all trust\n"
        "host all all 127.0.0.1/32 trust\n"
        "local replication all trust\n"
        "host replication all 127.0.0.1/32 trust\n"
    )
    _pg_start(PRIMARY_DIR, PRIMARY_LOG)
    _execute(_pg_url(PG_PRIMARY_PORT), f"CREATE DATABASE {DEFAULT_DATABASE}")
    _as_postgres(
        "pg_basebackup", "-D", str(STANDBY_DIR), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync",
        "-d", f"host=127.0.0.1 port={PG_PRIMARY_PORT} user=postgres application_name={PG_STANDBY_NAME}",
        timeout=120, log=PRIMARY_LOG,
    )  # fmt: skip
    # The standby's own settings; ALTER SYSTEM on the primary (below) is not in the copy, so after a
    # promotion the standby commits alone instead of waiting for a standby of its own.
    with open(STANDBY_DIR / "postgresql.auto.conf", "a") as handle:
        handle.write(
            f"port = {PG_STANDBY_PORT}\n"
            f"primary_conninfo = 'host=127.0.0.1 port={PG_PRIMARY_PORT} user=postgres "
            f"application_name={PG_STANDBY_NAME}'\n"
        )
    _execute(
        _pg_url(PG_PRIMARY_PORT),
        f"ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 ({PG_STANDBY_NAME})'",
    )
    _scalar(_pg_url(PG_PRIMARY_PORT), "SELECT pg_reload_conf()")
    _pg_start(STANDBY_DIR, STANDBY_LOG)


def pg_pair_up() -> None:
    """Ensure the primary (55432) and its synchronous standby (55433) are up: return at once when
    they are, otherwise rebuild both from scratch. Bounded by :data:`PG_UP_SECONDS`."""
    with _locked():
        if pg_pair_healthy():
            return
        deadline = time.monotonic() + PG_UP_SECONDS
        _pg_build()
        wait_until(
            lambda: pg_sync_state() == "sync",
            max(5.0, deadline - time.monotonic()),
            f"standby {PG_STANDBY_NAME} streaming synchronously (sync_state 'sync') from the primary",
            STANDBY_LOG,
        )


def _pg_stop_all() -> None:
    for datadir in (PRIMARY_DIR, STANDBY_DIR):
        _pg_kill(datadir)
    leftovers = _processes_under(PG_DIR)  # pg_basebackup, or servers whose directory is gone
    if leftovers:
        _kill(leftovers)


def pg_pair_down() -> None:
    """Stop both servers (at once: their data goes too) and remove their directories."""
    with _locked():
        _pg_stop_all()
        shutil.rmtree(PG_DIR, ignore_errors=True)
        _tidy_base()


def reset_pair() -> None:
    """Rebuild primary and standby from scratch (after a failover), so tests can run again."""
    with _locked():
        pg_pair_down()
        pg_pair_up()


def stop_primary() -> None:
    """Crash the primary (``pg_ctl stop -m immediate``; SIGKILL if that fails); returns once it is
    gone. The standby keeps running, in recovery, until :func:`promote_standby`."""
    with _locked():
        if _postmaster_pid(PRIMARY_DIR) is None:
            raise ClusterError("the PostgreSQL primary is not running")
        with contextlib.suppress(ClusterError):
            _as_postgres(
                "pg_ctl", "-D", str(PRIMARY_DIR), "-m", "immediate", "-w", "-t", "30", "stop", timeout=45
            )
        _pg_kill(PRIMARY_DIR)


def promote_standby(seconds: float = PG_UP_SECONDS) -> None:
    """Promote the standby (``pg_ctl promote``); returns once it accepts writes."""
    with _locked():
        _as_postgres(
            "pg_ctl", "-D", str(STANDBY_DIR), "-w", "-t", "60", "promote", timeout=90, log=STANDBY_LOG
        )
        wait_until(
            lambda: _in_recovery(PG_STANDBY_PORT) is False,
            seconds,
            "the promoted standby read-write",
            STANDBY_LOG,
        )


def _walreceivers() -> list[int]:
    """The standby's WAL receiver processes (children of its postmaster)."""
    postmaster = _postmaster_pid(STANDBY_DIR)
    if postmaster is None:
        return []
    return [pid for pid in _children_of(postmaster) if "walreceiver" in _cmdline(pid)]


def pause_standby() -> None:
    """Freeze the standby's WAL receiver (SIGSTOP): it stops receiving and acknowledging WAL,
    so every commit on the primary waits for it (``synchronous_commit``) until
    :func:`resume_standby`, or until the primary is stopped under it."""
    pids = _walreceivers()
    if not pids:
        raise ClusterError(f"the standby has no WAL receiver to pause{_log_hint(STANDBY_LOG)}")
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)


def resume_standby() -> None:
    """Let a paused WAL receiver go on (SIGCONT); a no-op when none is paused."""
    for pid in _walreceivers():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def create_pg_database(name: str | None = None) -> str:
    """Create a throw-away database on the primary (it reaches the standby) and return its name."""
    name = _checked_name(name or new_database_name())
    _execute(_pg_url(PG_PRIMARY_PORT), f"CREATE DATABASE {name}")
    return name


def drop_pg_database(name: str) -> None:
    """Drop a throw-away database on whichever server accepts writes (a no-op when neither does)."""
    name = _checked_name(name)
    for port in (PG_PRIMARY_PORT, PG_STANDBY_PORT):
        if _in_recovery(port) is False:
            _execute(_pg_url(port), f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            return


@contextlib.contextmanager
def pg_database() -> Iterator[PgPairUrls]:
    """A throw-away database on the pair for a ``with`` block: yields its URLs."""
    name = create_pg_database()
    try:
        yield pg_pair_urls(name)
    finally:
        drop_pg_database(name)


class PgPairState(NamedTuple):
    """What the pair looks like: each server's ``pg_is_in_recovery()`` (None: down) and the
    standby's ``sync_state`` on the primary."""

    primary_in_recovery: bool | None
    standby_in_recovery: bool | None
    sync_state: str | None


def pg_pair_status() -> PgPairState:
    """The pair's current state."""
    return PgPairState(_in_recovery(PG_PRIMARY_PORT), _in_recovery(PG_STANDBY_PORT), pg_sync_state())


# --------------------------------------------------------------------------------------------
# What a test holds (the fixtures of tests/cluster/conftest.py return these)
# --------------------------------------------------------------------------------------------


class Galera:
    """The running 3-node Galera cluster: its URLs, its state and its fault switches."""

    nodes = GALERA_NODES

    def urls(self, database: str = DEFAULT_DATABASE) -> list[str]:
        """The three nodes' URLs of ``database`` (node 1 first)."""
        return galera_urls(database)

    def url(self, index: int, database: str = DEFAULT_DATABASE) -> str:
        """Node ``index``'s URL of ``database``."""
        return galera_node(index).url(database)

    def size(self, index: int) -> int | None:
        """``wsrep_cluster_size`` as node ``index`` sees it (None: it does not answer)."""
        return galera_cluster_size(index)

    def status(self, index: int) -> dict[str, str] | None:
        """Node ``index``'s ``wsrep_%`` status (None: it does not answer)."""
        return galera_node_status(index)

    def wait_size(self, index: int, size: int, seconds: float = 30.0) -> None:
        """Wait (bounded) until node ``index`` sees a primary component of ``size`` nodes."""
        wait_until(
            lambda: _synced(galera_node_status(index), size),
            seconds,
            f"galera node {index} Synced in a cluster of {size}",
            GaleraNode(index).error_log,
        )

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index`` (see :func:`kill_node`)."""
        kill_node(index)

    def restart_node(self, index: int) -> None:
        """Start node ``index`` again and wait until it is Synced (see :func:`restart_node`)."""
        restart_node(index)

    def isolate_node(self, index: int) -> None:
        """Cut node ``index`` off the others (see :func:`isolate_node`)."""
        isolate_node(index)

    def heal(self) -> None:
        """Lift isolations and wait until the running nodes are Synced together."""
        heal()

    def ensure_up(self) -> None:
        """Bring the cluster back to 3 healthy nodes (repairing or rebuilding it)."""
        galera_up()

    def error_log(self, index: int) -> Path:
        """Node ``index``'s error log."""
        return galera_node(index).error_log


class PgPair:
    """The running PostgreSQL primary and synchronous standby: URLs, state and failover."""

    primary_port = PG_PRIMARY_PORT
    standby_port = PG_STANDBY_PORT

    def urls(self, database: str = DEFAULT_DATABASE) -> PgPairUrls:
        """The pair's URLs of ``database``."""
        return pg_pair_urls(database)

    def sync_state(self) -> str | None:
        """The standby's ``sync_state`` on the primary (``'sync'`` when healthy)."""
        return pg_sync_state()

    def stop_primary(self) -> None:
        """Crash the primary (see :func:`stop_primary`)."""
        stop_primary()

    def promote_standby(self) -> None:
        """Promote the standby and wait until it takes writes (see :func:`promote_standby`)."""
        promote_standby()

    def pause_standby(self) -> None:
        """Freeze the standby's WAL receiver: commits wait for it (see :func:`pause_standby`)."""
        pause_standby()

    def resume_standby(self) -> None:
        """Let the standby's WAL receiver go on (see :func:`resume_standby`)."""
        resume_standby()

    def reset(self) -> None:
        """Rebuild primary and standby from scratch (see :func:`reset_pair`)."""
        reset_pair()

    def ensure_up(self) -> None:
        """Bring the pair back (rebuilding it when it is not healthy)."""
        pg_pair_up()

    def logs(self) -> tuple[Path, Path]:
        """The primary's and the standby's server logs."""
        return PRIMARY_LOG, STANDBY_LOG


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _galera_summary() -> str:
    lines = []
    for index in GALERA_NODES:
        status = galera_node_status(index)
        where = f"node{index} 127.0.0.1:{GALERA_CLIENT_PORTS[index]}"
        if status is None:
            lines.append(f"  {where}: down")
            continue
        keys = ("wsrep_local_state_comment", "wsrep_cluster_status", "wsrep_cluster_size", "wsrep_ready")
        lines.append(f"  {where}: " + " ".join(f"{k.removeprefix('wsrep_')}={status.get(k)}" for k in keys))
    return "\n".join(lines)


def _pg_summary() -> str:
    state = pg_pair_status()
    role = {False: "read-write", True: "in recovery", None: "down"}
    return (
        f"  primary 127.0.0.1:{PG_PRIMARY_PORT}: {role[state.primary_in_recovery]}\n"
        f"  standby 127.0.0.1:{PG_STANDBY_PORT}: {role[state.standby_in_recovery]}\n"
        f"  sync_state of {PG_STANDBY_NAME}: {state.sync_state}"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.clusters up|down|status [--galera] [--postgres]`` (neither flag: both)."""
    parser = argparse.ArgumentParser(prog="python -m tests.clusters", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--galera", action="store_true", help="the 3-node MariaDB Galera cluster")
    parser.add_argument("--postgres", action="store_true", help="the PostgreSQL primary + standby")
    args = parser.parse_args(argv)
    global VERBOSE
    VERBOSE = True
    both = not (args.galera or args.postgres)
    chosen = [
        (name, up, down, status)
        for name, up, down, status, wanted in (
            ("galera", galera_up, galera_down, _galera_summary, args.galera or both),
            ("postgres", pg_pair_up, pg_pair_down, _pg_summary, args.postgres or both),
        )
        if wanted
    ]
    failed = False
    for name, up, down, status in chosen:
        started = time.monotonic()
        try:
            if args.action == "up":
                up()
            elif args.action == "down":
                down()
            else:
                print(f"{name}:\n{status()}")
                continue
        except ClusterError as exc:
            print(
                f"clusters: {name} {args.action} failed after {time.monotonic() - started:.1f}s: {exc}",
                file=sys.stderr,
            )
            failed = True
            continue
        print(f"clusters: {name} {args.action} in {time.monotonic() - started:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
