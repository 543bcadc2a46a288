"""Upstream Stabilize 0.33.1's own engine on our store and queue (issue 12, "The compatibility test").

The harness (``upstream_env``) installs ``stabilize==0.33.1`` from the package registry into its
own cached venv, lays our ``stabilize/persistence`` and ``stabilize/queue`` over a copy of its
package, and runs each workflow of ``engine_driver`` through upstream's ``Orchestrator``,
``QueueProcessor`` and task registry: once on upstream's own store (its SQLite and PostgreSQL
stores), once on ours (SQLite, PostgreSQL, MariaDB). A workflow must end on ours exactly as it ends
on upstream's own store of the same dialect (upstream's SQLite run for MariaDB, which upstream
lacks): workflow status, every stage's status, tasks and outputs, the merged ancestor outputs of
every stage, and what the driver observed on the way (a paused run's stages, a signal's timing,
a buffered second workflow).

The references are checked too: each workflow must do on upstream's own store what it is there
to exercise (the mutex keeps the two stages apart, the run really pauses, the retried task really
failed twice, the deferred choice cancels the losing branch, a concurrency limit of one buffers
the second workflow), so a comparison is never between two runs that both did nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.compat import upstream_env as harness
from tests.conftest import ThrowAwayDatabases

#: Harness dialect -> the conftest dialect whose throw-away databases it runs on (and test id).
CONFTEST_DIALECT = {"sqlite": "sqlite_file", "postgresql": "postgresql", "mariadb": "mariadb"}

Results = dict[str, dict[str, Any]]
Runner = Callable[[str, str], Results]


@pytest.fixture(scope="session")
def upstream_python() -> Path:
    return harness.ensure_venv()


@pytest.fixture(scope="session")
def overlay(tmp_path_factory: pytest.TempPathFactory, upstream_python: Path) -> Path:
    directory = tmp_path_factory.mktemp("overlay")
    harness.build_overlay(directory, upstream_python)
    return directory


@pytest.fixture(scope="session")
def engine_runs(databases: ThrowAwayDatabases, overlay: Path, upstream_python: Path) -> Runner:
    """``runs(side, dialect)``: every workflow's result on that side, each on a fresh database;
    computed once per test process."""
    cache: dict[tuple[str, str], Results] = {}

    def runs(side: str, dialect: str) -> Results:
        if (side, dialect) not in cache:
            urls = {
                name: harness.plain_url(databases.new(CONFTEST_DIALECT[dialect]))
                for name in harness.WORKFLOWS
            }
            cache[side, dialect] = harness.run_side(
                side, dialect, urls, overlay=overlay if side == "ours" else None, python=upstream_python
            )
        return cache[side, dialect]

    return runs


def _params(dialects: tuple[str, ...]) -> list[Any]:
    return [
        pytest.param(dialect, workflow, id=f"{CONFTEST_DIALECT[dialect]}-{workflow}")
        for dialect in dialects
        for workflow in harness.WORKFLOWS
    ]


# -- what each workflow must show on upstream's own store ---------------------------------------------


def _stage(outcome: dict[str, Any], name: str) -> dict[str, Any]:
    stage: dict[str, Any] = outcome["stages"][name]
    return stage


def _succeeded(outcome: dict[str, Any]) -> None:
    assert outcome["status"] == "SUCCEEDED"
    assert all(stage["status"] == "SUCCEEDED" for stage in outcome["stages"].values()), outcome["stages"]


def _expect_linear_chain(outcome: dict[str, Any]) -> None:
    _succeeded(outcome)
    assert _stage(outcome, "c")["outputs"]["trail"] == ["a", "b", "c"]
    assert outcome["merged_ancestor_outputs"]["c"]["winner"] == "b"


def _expect_diamond(outcome: dict[str, Any]) -> None:
    _succeeded(outcome)
    # The join sees both branches, merged in the engine's order (b before c, lists appended).
    assert _stage(outcome, "d")["outputs"]["d_saw"]["trail"] == ["a", "b", "c"]
    assert outcome["merged_ancestor_outputs"]["d"]["winner"] == "c"


def _expect_synthetic_before(outcome: dict[str, Any]) -> None:
    _succeeded(outcome)
    prepare = _stage(outcome, "prepare")
    assert prepare["synthetic"] and prepare["status"] == "SUCCEEDED"
    assert prepare["outputs"]["prepare_saw"] == {"prepared_for": "deploy"}
    assert "prepare" not in outcome["merged_ancestor_outputs"]


def _expect_retry(outcome: dict[str, Any]) -> None:
    _succeeded(outcome)
    assert _stage(outcome, "flaky")["outputs"] == {"failures_before_success": 2}


def _expect_mutex(outcome: dict[str, Any]) -> None:
    _succeeded(outcome)
    assert _stage(outcome, "left")["outputs"] == {"left_overlapped": False}
    assert _stage(outcome, "right")["outputs"] == {"right_overlapped": False}


def _expect_pause_resume(outcome: dict[str, Any]) -> None:
    _succeeded(outcome)
    paused = outcome["observations"]["while_paused"]
    assert paused["workflow"] == "PAUSED" and paused["stages"]["b"] == "PAUSED"
    assert paused["paused_by"] == "compat-operator"


def _expect_signal(outcome: dict[str, Any]) -> None:
    _succeeded(outcome)
    assert outcome["observations"]["signalled_when"] == "SUSPENDED"
    assert _stage(outcome, "approval")["outputs"]["approved_by"] == "alice"


def _expect_persistent_signal(outcome: dict[str, Any]) -> None:
    _succeeded(outcome)
    assert outcome["observations"]["signalled_when"] == "NOT_STARTED"
    assert _stage(outcome, "approval")["outputs"]["signal"] == {"user": "alice", "ticket": 7}


def _expect_deferred_choice(outcome: dict[str, Any]) -> None:
    # The first branch started takes the group's claim; the other is canceled, and with it the run.
    assert outcome["status"] == "CANCELED"
    assert _stage(outcome, "accept")["status"] == "SUCCEEDED"
    assert _stage(outcome, "decline")["status"] == "CANCELED"


def _expect_limit_concurrent(outcome: dict[str, Any]) -> None:
    # One running workflow per config: the second waits BUFFERED, then runs once the first is done.
    _succeeded(outcome)
    assert "BUFFERED" in outcome["observations"]["second_while_first_runs"]
    assert "RUNNING" not in outcome["observations"]["second_while_first_runs"]
    (second,) = outcome["companions"]
    _succeeded(second)


EXPECTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "linear_chain": _expect_linear_chain,
    "diamond": _expect_diamond,
    "synthetic_before": _expect_synthetic_before,
    "retry": _expect_retry,
    "mutex": _expect_mutex,
    "pause_resume": _expect_pause_resume,
    "signal": _expect_signal,
    "persistent_signal": _expect_persistent_signal,
    "deferred_choice": _expect_deferred_choice,
    "limit_concurrent": _expect_limit_concurrent,
}


def test_every_workflow_has_an_expectation() -> None:
    assert set(EXPECTATIONS) == set(harness.WORKFLOWS)


# -- the tests ----------------------------------------------------------------------------------------


def test_overlay_is_ours_over_upstreams(overlay: Path, upstream_python: Path) -> None:
    """Our two packages win file for file; upstream's engine-side modules and everything outside
    the two packages stay upstream's; a package of upstream's named like a module of ours is gone."""
    manifest = json.loads((overlay / harness.MANIFEST).read_text())
    package = overlay / "stabilize"
    upstream = harness.upstream_package_dir(upstream_python)
    for ours in harness.OUR_PACKAGE.joinpath("persistence").rglob("*.py"):
        rel = ours.relative_to(harness.OUR_PACKAGE)
        assert package.joinpath(rel).read_bytes() == ours.read_bytes(), rel
    for ours in harness.OUR_PACKAGE.joinpath("queue").rglob("*.py"):
        rel = ours.relative_to(harness.OUR_PACKAGE)
        assert package.joinpath(rel).read_bytes() == ours.read_bytes(), rel
    assert not package.joinpath("persistence", "sqlite").exists()  # upstream's package, ours is a module
    assert "stabilize.queue.processor.processor" in manifest["kept"]
    assert "stabilize.queue.dedup" in manifest["kept"]
    assert "stabilize.persistence.sqlite.store" in manifest["replaced"]
    for rel in (
        "errors/__init__.py",
        "models/stage/stage.py",
        "handlers/base.py",
        "queue/processor/drain.py",
    ):
        assert package.joinpath(rel).read_bytes() == upstream.joinpath(rel).read_bytes(), rel
    assert package.joinpath("_migrations", "env.py").is_file()


@pytest.mark.parametrize(("dialect", "workflow"), _params(harness.UPSTREAM_DIALECTS))
def test_upstream_reference(engine_runs: Runner, dialect: str, workflow: str) -> None:
    """Upstream's engine on upstream's own store completes the workflow and shows what it tests."""
    result = engine_runs("upstream", dialect)[workflow]
    outcome = result["outcome"]
    assert outcome is not None and not result["stalled"], harness.describe_failure(result)
    assert not result["engine_errors"], harness.describe_failure(result)
    EXPECTATIONS[workflow](outcome)


@pytest.mark.parametrize(("dialect", "workflow"), _params(harness.DIALECTS))
def test_workflow_ends_as_on_upstreams_store(engine_runs: Runner, dialect: str, workflow: str) -> None:
    """Upstream's engine on our store ends the workflow as it does on its own store."""
    reference = engine_runs("upstream", harness.reference_dialect(dialect))[workflow]
    assert reference["outcome"] is not None, harness.describe_failure(reference)
    ours = engine_runs("ours", dialect)[workflow]
    expected, got = harness.comparable(reference), harness.comparable(ours)
    assert got == expected, (
        f"upstream's engine on our {dialect} store ended {workflow!r} differently from its own "
        f"{harness.reference_dialect(dialect)} store\n"
        + harness.describe_failure(ours)
        + "\n"
        + "\n".join(harness.differences(expected, got))
    )
