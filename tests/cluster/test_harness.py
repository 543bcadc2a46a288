"""Smoke tests of the cluster harness (``tests/clusters.py``): the clusters replicate, lose a
node, get it back, and fail over, as the tests of issue 15 will need them to.

Plain SQLAlchemy on the real servers; every wait for a state is a bounded poll.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from tests.clusters import Galera, PgPair, PgPairUrls, wait_until

pytestmark = pytest.mark.cluster


@contextmanager
def connect(url: str, **connect_args: object) -> Iterator[Connection]:
    """One connection in a transaction committed at the end of the block (no pool)."""
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5, **connect_args})
    try:
        with engine.begin() as connection:
            yield connection
    finally:
        engine.dispose()


#: A Galera read that waits until the node has applied every write the cluster committed before
#: it (``wsrep_sync_wait``), so reading another node's write needs no polling.
CAUSAL = "SET SESSION wsrep_sync_wait = 1"


def rows_on(url: str, causal: bool = False) -> list[tuple[int, str]]:
    """The ``items`` rows on ``url`` (``causal``: a Galera read after every earlier commit)."""
    with connect(url, **({"init_command": CAUSAL} if causal else {})) as connection:
        result = connection.execute(text("SELECT id, v FROM items ORDER BY id"))
        return [(int(row[0]), str(row[1])) for row in result]


def insert(url: str, key: int, value: str) -> None:
    with connect(url) as connection:
        connection.execute(text("INSERT INTO items (id, v) VALUES (:id, :v)"), {"id": key, "v": value})


def create_items(url: str) -> None:
    with connect(url) as connection:
        connection.execute(text("CREATE TABLE items (id INT PRIMARY KEY, v VARCHAR(40) NOT NULL)"))


# --------------------------------------------------------------------------------------------
# Galera
# --------------------------------------------------------------------------------------------


def test_galera_write_on_node1_is_read_on_node3(galera: Galera, galera_db: list[str]) -> None:
    node1, _node2, node3 = galera_db
    assert [galera.size(i) for i in galera.nodes] == [3, 3, 3]
    with connect(node1) as connection:
        status = connection.execute(text("SHOW GLOBAL STATUS LIKE 'wsrep_cluster_size'")).one()
        assert tuple(status) == ("wsrep_cluster_size", "3")
        assert connection.execute(text("SELECT @@wsrep_on, @@port")).one() == (1, 33061)

    create_items(node1)
    insert(node1, 1, "written on node 1")

    assert rows_on(node3, causal=True) == [(1, "written on node 1")]


def test_galera_node_killed_then_rejoins(galera: Galera, galera_db: list[str]) -> None:
    node1, node2, node3 = galera_db
    create_items(node1)
    insert(node1, 1, "before the kill")

    galera.kill_node(2)
    galera.wait_size(1, 2)
    galera.wait_size(3, 2)
    with pytest.raises(DBAPIError):
        rows_on(node2)
    insert(node1, 2, "while node 2 is down")
    assert rows_on(node3, causal=True) == [(1, "before the kill"), (2, "while node 2 is down")]

    galera.restart_node(2)
    assert [galera.size(i) for i in galera.nodes] == [3, 3, 3]
    assert rows_on(node2, causal=True) == [(1, "before the kill"), (2, "while node 2 is down")]
    insert(node2, 3, "written on the rejoined node")
    assert [row[0] for row in rows_on(node1, causal=True)] == [1, 2, 3]


def test_galera_isolated_node_refuses_then_heals(galera: Galera, galera_db: list[str]) -> None:
    node1, _node2, node3 = galera_db
    create_items(node1)

    galera.isolate_node(3)
    galera.wait_size(1, 2)
    wait_until(
        lambda: (galera.status(3) or {}).get("wsrep_cluster_status") == "non-Primary",
        30,
        "isolated node 3 outside the primary component",
    )
    with pytest.raises(DBAPIError, match="WSREP has not yet prepared node"):
        rows_on(node3)
    insert(node1, 1, "while node 3 is isolated")

    galera.heal()
    assert [galera.size(i) for i in galera.nodes] == [3, 3, 3]
    assert rows_on(node3, causal=True) == [(1, "while node 3 is isolated")]


# --------------------------------------------------------------------------------------------
# PostgreSQL primary + synchronous standby
# --------------------------------------------------------------------------------------------


def test_pg_commit_on_primary_is_on_standby(pg_pair: PgPair, pg_pair_db: PgPairUrls) -> None:
    assert pg_pair.sync_state() == "sync"
    with connect(pg_pair_db.primary) as connection:
        assert connection.execute(text("SHOW synchronous_standby_names")).scalar() == "FIRST 1 (standby1)"
        assert connection.execute(text("SHOW synchronous_commit")).scalar() == "on"
    create_items(pg_pair_db.primary)

    # remote_apply: the commit returns once the standby has applied it, so it is readable there now.
    with connect(pg_pair_db.primary) as connection:
        connection.execute(text("SET LOCAL synchronous_commit = remote_apply"))
        connection.execute(text("INSERT INTO items (id, v) VALUES (1, 'applied on both')"))
    assert rows_on(pg_pair_db.standby) == [(1, "applied on both")]

    # The default (on): flushed on both at commit, applied on the standby a moment later.
    insert(pg_pair_db.primary, 2, "flushed on both")
    wait_until(lambda: len(rows_on(pg_pair_db.standby)) == 2, 30, "row 2 applied on the standby")

    with connect(pg_pair_db.standby) as connection:
        assert connection.execute(text("SELECT pg_is_in_recovery()")).scalar() is True
    with pytest.raises(DBAPIError, match="read-only transaction"):
        insert(pg_pair_db.standby, 3, "refused")

    # Both multi-host forms SQLAlchemy takes find the read-write server.
    for url in (pg_pair_db.multi_host_query, pg_pair_db.multi_host_libpq_query):
        with connect(url) as connection:
            assert connection.execute(text("SELECT inet_server_port()")).scalar() == pg_pair.primary_port


def test_pg_failover_to_the_promoted_standby(pg_pair: PgPair, pg_pair_db: PgPairUrls) -> None:
    create_items(pg_pair_db.primary)
    insert(pg_pair_db.primary, 1, "acknowledged by the primary")
    try:
        pg_pair.stop_primary()
        with pytest.raises(DBAPIError):
            rows_on(pg_pair_db.primary)

        pg_pair.promote_standby()
        # A synchronous commit survives the primary's crash: it was on the standby before the ack.
        assert rows_on(pg_pair_db.standby) == [(1, "acknowledged by the primary")]
        insert(pg_pair_db.standby, 2, "written on the promoted standby")
        with connect(pg_pair_db.multi_host_query) as connection:
            assert connection.execute(text("SELECT inet_server_port()")).scalar() == pg_pair.standby_port
            connection.execute(text("INSERT INTO items (id, v) VALUES (3, 'through the multi-host URL')"))
        assert [row[0] for row in rows_on(pg_pair_db.standby)] == [1, 2, 3]
    finally:
        pg_pair.reset()
    assert pg_pair.sync_state() == "sync"
