"""Fixtures for the tests that need the clusters of issue 15 (``tests/clusters.py``).

``galera`` and ``pg_pair`` (session) start their cluster when it is not up, with the same
functions ``.ci/run`` calls, and fail the test, never skip it, when it cannot start. The
function-scoped ``galera_db`` and ``pg_pair_db`` first bring their cluster back to health (a test
before may have killed a node or failed over), then give a throw-away database, dropped after.

Every test that uses one of these fixtures is marked ``cluster`` here (the tests under
``tests/cluster`` are marked anyway): ``make pytest`` runs them alone, after the ``restart`` tests,
because they kill and isolate nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import clusters
from tests.clusters import ClusterError, Galera, PgPair, PgPairUrls

CLUSTER_FIXTURES = {"galera", "pg_pair", "galera_db", "pg_pair_db"}
HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``cluster`` every test under tests/cluster and every test using a cluster fixture,
    before ``-m`` selects (so ``-m "not cluster"`` leaves them out)."""
    for item in items:
        uses = CLUSTER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if (uses or HERE in Path(str(item.path)).parents) and item.get_closest_marker("cluster") is None:
            item.add_marker(pytest.mark.cluster)


def _ensure(up: Callable[[], None], name: str) -> None:
    try:
        up()
    except ClusterError as exc:
        pytest.fail(
            f"the {name} test cluster did not come up: {exc}\n"
            f"(`python -m tests.clusters status` shows it; cluster tests never skip)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def galera() -> Galera:
    """The 3-node MariaDB Galera cluster (127.0.0.1:33061-33063), started when down."""
    _ensure(clusters.galera_up, "Galera")
    return Galera()


@pytest.fixture(scope="session")
def pg_pair() -> PgPair:
    """The PostgreSQL primary (127.0.0.1:55432) and synchronous standby (55433), started when down."""
    _ensure(clusters.pg_pair_up, "PostgreSQL primary/standby")
    return PgPair()


@pytest.fixture
def galera_db(galera: Galera) -> Iterator[list[str]]:
    """A throw-away database on a healthy Galera cluster: the three nodes' URLs (node 1 first)."""
    _ensure(clusters.galera_up, "Galera")
    name = clusters.create_galera_database()
    yield galera.urls(name)
    _ensure(clusters.galera_up, "Galera")  # a test that left a node down or isolated
    clusters.drop_galera_database(name)


@pytest.fixture
def pg_pair_db(pg_pair: PgPair) -> Iterator[PgPairUrls]:
    """A throw-away database on a healthy primary/standby pair: its URLs (primary, standby and
    the multi-host forms). After a failover the pair is rebuilt by the next test's fixture."""
    _ensure(clusters.pg_pair_up, "PostgreSQL primary/standby")
    name = clusters.create_pg_database()
    yield pg_pair.urls(name)
    clusters.drop_pg_database(name)
