"""PostgreSQL URLs naming several hosts, in libpq's form (``h1:p1,h2:p2``) as well as SQLAlchemy's
``?host=`` parameters (issue 15, item 3): libpq tries them in order and, with
``target_session_attrs=read-write``, settles on the primary. Here against the ordinary server,
with a dead address first; the failover itself is proven on the cluster (tests/cluster).
"""

from __future__ import annotations

import pytest

from stabilize.persistence.sql.engine import mask, normalize_url
from stabilize.persistence.sql.store import SqlWorkflowStore
from tests.integration.builders import full_workflow


@pytest.mark.parametrize(
    ("given", "hosts", "query"),
    [
        (
            "postgresql://u:secret@h1:5432,h2:5433/db?target_session_attrs=read-write",
            ("h1:5432", "h2:5433"),
            {"target_session_attrs": "read-write"},
        ),
        ("postgres://h1,h2/db", ("h1", "h2"), {}),
        ("postgresql://u@/db?host=a:1&host=b:2", ("a:1", "b:2"), {}),
    ],
)
def test_libpq_host_lists_become_host_parameters(
    given: str, hosts: tuple[str, ...], query: dict[str, str]
) -> None:
    url = normalize_url(given)
    assert url.drivername == "postgresql+psycopg" and url.database == "db" and url.host is None
    assert url.query["host"] == hosts
    assert {k: v for k, v in url.query.items() if k != "host"} == query
    assert "secret" not in mask(url)


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_a_store_on_a_host_list_reaches_the_live_server(url: str) -> None:
    live = normalize_url(url)
    listed = f"postgresql://{live.username}@127.0.0.1:1,{live.host}:{live.port}/{live.database}"
    for form in (listed + "?target_session_attrs=read-write", listed):
        store = SqlWorkflowStore(form)
        workflow = full_workflow()
        store.store(workflow)
        assert store.retrieve(workflow.id).id == workflow.id
        assert "host=127.0.0.1%3A1" in repr(store)
