"""Signals buffered for a stage (``workflow_signals``) and the older in-context buffer
(``_buffered_signals``), on every dialect: the store calls the Stabilize 0.33 engine makes.

Concurrent consumers run on the dialects another connection can reach at the same time: an
in-memory SQLite database is one connection shared by the whole process.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import and_, select

from stabilize.errors import ConcurrencyError
from stabilize.models import StageExecution, Workflow, WorkflowStatus
from stabilize.persistence.errors import ValidationError
from stabilize.persistence.sql import signals
from stabilize.persistence.sql.dialects import GenericProfile, Unit
from stabilize.persistence.sql.rows import StageRow, WorkflowSignalRow
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.persistence.store import WorkflowNotFoundError
from tests.conftest import FILE_OR_SERVER_DIALECTS
from tests.integration.builders import RICH_JSON, snapshot, stage, stage_row_version, workflow

BUFFER = signals.BUFFER_KEY


def stored(store: SqlWorkflowStore, *stages: StageExecution, **fields: Any) -> Workflow:
    made = workflow(*(stages or (stage("wait"), stage("other"))), **fields)
    store.store(made)
    return made


def signal_rows(store: SqlWorkflowStore) -> list[dict[str, Any]]:
    with store.engine.connect() as connection:
        rows = connection.execute(select(WorkflowSignalRow.__table__).order_by(WorkflowSignalRow.id))
        return [dict(row._mapping) for row in rows]


# -- buffer_signal ----------------------------------------------------------------------------------


def test_the_store_keeps_signals_itself(store: SqlWorkflowStore) -> None:
    assert store.supports_signal_storage() is True


def test_buffer_signal_stores_an_unconsumed_row_and_returns_its_id(store: SqlWorkflowStore) -> None:
    wf = stored(store)

    first = store.buffer_signal(wf.id, "wait", "approve", {"by": "ada", "n": [1, 2.5]})
    second = store.buffer_signal(wf.id, "wait", "approve")

    assert 0 < first < second
    rows = signal_rows(store)
    assert [row["id"] for row in rows] == [first, second]
    assert {k: rows[0][k] for k in ("workflow_id", "stage_ref_id", "signal_name", "signal_data")} == {
        "workflow_id": wf.id,
        "stage_ref_id": "wait",
        "signal_name": "approve",
        "signal_data": {"by": "ada", "n": [1, 2.5]},
    }
    assert rows[1]["signal_data"] == {}  # None is stored as {}
    assert all(row["consumed"] is False and row["consumed_at"] is None for row in rows)
    assert all(isinstance(row["created_at"], int) and row["created_at"] > 0 for row in rows)


def test_buffer_signal_for_an_unknown_workflow_raises_and_writes_nothing(store: SqlWorkflowStore) -> None:
    stored(store)
    before = snapshot(store.engine)

    with pytest.raises(WorkflowNotFoundError, match="NOSUCHWORKFLOW"):
        store.buffer_signal("NOSUCHWORKFLOW", "wait", "approve", {"x": 1})

    assert snapshot(store.engine) == before


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"execution_id": 42}, "execution_id"),
        ({"stage_ref_id": "r" * 256}, "stage_ref_id"),
        ({"stage_ref_id": None}, "stage_ref_id"),
        ({"signal_name": "bad\x00name"}, "signal_name"),
        ({"signal_name": "n" * 256}, "signal_name"),
        ({"signal_data": ["not", "a", "dict"]}, "signal_data"),
        ({"signal_data": {"when": object()}}, "signal_data['when']"),
        ({"signal_data": {"x": math.nan}}, "signal_data['x']"),
    ],
)
def test_buffer_signal_refuses_bad_values_by_name_and_writes_nothing(
    store: SqlWorkflowStore, arguments: dict[str, Any], field: str
) -> None:
    wf = stored(store)
    before = snapshot(store.engine)
    call = {
        "execution_id": wf.id,
        "stage_ref_id": "wait",
        "signal_name": "go",
        "signal_data": {},
        **arguments,
    }

    with pytest.raises(ValidationError) as refused:
        store.buffer_signal(**call)

    assert refused.value.path.startswith(field)
    assert snapshot(store.engine) == before


def test_signal_data_comes_back_exactly(store: SqlWorkflowStore) -> None:
    wf = stored(store)
    store.buffer_signal(wf.id, "wait", "rich", RICH_JSON)

    assert store.consume_signal(wf.id, "wait") == {"signal_name": "rich", "signal_data": RICH_JSON}


# -- consume_signal ---------------------------------------------------------------------------------


def test_consume_takes_the_oldest_first_and_never_twice(store: SqlWorkflowStore) -> None:
    wf = stored(store)
    for n in range(3):
        store.buffer_signal(wf.id, "wait", f"s{n}", {"n": n})

    taken = [store.consume_signal(wf.id, "wait") for _ in range(4)]

    assert taken == [{"signal_name": f"s{n}", "signal_data": {"n": n}} for n in range(3)] + [None]
    rows = signal_rows(store)
    assert all(row["consumed"] is True and isinstance(row["consumed_at"], int) for row in rows)
    assert all(row["consumed_at"] >= row["created_at"] for row in rows)


def test_consume_by_name_takes_the_oldest_of_that_name(store: SqlWorkflowStore) -> None:
    wf = stored(store)
    store.buffer_signal(wf.id, "wait", "x", {"n": 1})
    store.buffer_signal(wf.id, "wait", "y", {"n": 2})
    store.buffer_signal(wf.id, "wait", "x", {"n": 3})

    assert store.consume_signal(wf.id, "wait", "y") == {"signal_name": "y", "signal_data": {"n": 2}}
    assert store.consume_signal(wf.id, "wait", "y") is None
    assert store.consume_signal(wf.id, "wait", "z") is None
    assert store.consume_signal(wf.id, "wait", "x") == {"signal_name": "x", "signal_data": {"n": 1}}
    assert store.consume_signal(wf.id, "wait", "") == {"signal_name": "x", "signal_data": {"n": 3}}  # any
    assert store.consume_signal(wf.id, "wait") is None


def test_consume_sees_only_its_own_stage_and_workflow(store: SqlWorkflowStore) -> None:
    wf, other = stored(store), stored(store)
    store.buffer_signal(wf.id, "other", "go")
    store.buffer_signal(other.id, "wait", "go")

    assert store.consume_signal(wf.id, "wait") is None
    assert store.pending_signal_count(wf.id, "wait") == 0
    assert store.consume_signal("no-such-workflow", "wait") is None
    assert store.consume_signal(wf.id, "w" * 300) is None  # an over-long ref matches nothing
    assert store.pending_signal_count(wf.id, "other") == 1
    assert store.pending_signal_count(other.id, "wait") == 1


@pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS, indirect=True)
@pytest.mark.parametrize("pick", ["as_the_dialect_picks", "compare_and_set_only"])
def test_concurrent_consumers_each_take_every_signal_exactly_once(url: str, pick: str) -> None:
    """``compare_and_set_only`` runs the consume of a dialect without ``SKIP LOCKED`` (the generic
    profile's) on the same server: conditional marks and picks past lost rows alone."""
    producer = SqlWorkflowStore(url)
    wf = stored(producer)
    count, consumers = 240, 4
    for n in range(count):
        producer.buffer_signal(wf.id, "wait", "tick", {"n": n})
    start = threading.Barrier(consumers, timeout=60)
    taken: list[list[int]] = [[] for _ in range(consumers)]
    errors: list[BaseException] = []
    waiting = and_(signals.of_stage(wf.id, "wait"), signals.SIGNALS.c.signal_name == "tick")

    def take(store: SqlWorkflowStore) -> dict[str, Any] | None:
        if pick == "as_the_dialect_picks":
            return store.consume_signal(wf.id, "wait", "tick")
        return store._db.run(lambda c: signals.consume(c, GenericProfile(), waiting), Unit.WRITE)

    def consume(index: int) -> None:
        store = SqlWorkflowStore(url)  # each consumer its own store (and its own connections)
        try:
            start.wait()
            while (signal := take(store)) is not None:
                taken[index].append(signal["signal_data"]["n"])
        except BaseException as error:  # reported below: a thread's exception is otherwise lost
            errors.append(error)

    threads = [threading.Thread(target=consume, args=(i,), daemon=True) for i in range(consumers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive(), "a consumer did not finish in time"

    assert errors == []
    every = [n for one in taken for n in one]
    assert [n for n, times in Counter(every).items() if times > 1] == []
    assert sorted(every) == list(range(count))
    assert all(one == sorted(one) for one in taken)  # each consumer got them oldest first
    assert producer.pending_signal_count(wf.id, "wait") == 0


# -- pending_signal_count, discard_signals -----------------------------------------------------------


def test_pending_count_and_discard_see_only_unconsumed_signals_of_the_stage(store: SqlWorkflowStore) -> None:
    wf = stored(store)
    for name in ("a", "b", "c"):
        store.buffer_signal(wf.id, "wait", name)
    store.buffer_signal(wf.id, "other", "d")
    store.consume_signal(wf.id, "wait")

    assert store.pending_signal_count(wf.id, "wait") == 2
    assert store.discard_signals(wf.id, "wait") == 2
    assert store.discard_signals(wf.id, "wait") == 0
    assert store.pending_signal_count(wf.id, "wait") == 0
    assert store.consume_signal(wf.id, "wait") is None
    assert store.pending_signal_count(wf.id, "other") == 1
    rows = signal_rows(store)
    assert [(row["stage_ref_id"], row["signal_name"], row["consumed"]) for row in rows] == [
        ("wait", "a", True),  # consumed signals stay until their workflow goes
        ("other", "d", False),
    ]


def test_signals_go_with_their_workflow(store: SqlWorkflowStore) -> None:
    wf, kept = stored(store), stored(store)
    store.buffer_signal(wf.id, "wait", "go")
    store.buffer_signal(kept.id, "wait", "go")

    store.delete(wf.id)

    assert [row["workflow_id"] for row in signal_rows(store)] == [kept.id]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s, wf: s.consume_signal(7, "wait"), "execution_id"),
        (lambda s, wf: s.consume_signal(wf, None), "stage_ref_id"),
        (lambda s, wf: s.consume_signal(wf, "wait", 3), "signal_name"),
        (lambda s, wf: s.consume_signal(wf, "wait", "a\x00"), "signal_name"),
        (lambda s, wf: s.pending_signal_count(wf, 1.5), "stage_ref_id"),
        (lambda s, wf: s.discard_signals(None, "wait"), "execution_id"),
        (lambda s, wf: s.discard_signals(wf, b"wait"), "stage_ref_id"),
    ],
)
def test_signal_reads_refuse_arguments_that_are_no_strings_and_change_nothing(
    store: SqlWorkflowStore, call: Any, field: str
) -> None:
    wf = stored(store)
    store.buffer_signal(wf.id, "wait", "go")
    before = snapshot(store.engine)

    with pytest.raises(ValidationError) as refused:
        call(store, wf.id)

    assert refused.value.path == field
    assert snapshot(store.engine) == before


# -- the older buffer in stage contexts ----------------------------------------------------------------


def buffered_workflow(store: SqlWorkflowStore) -> dict[str, StageExecution]:
    """A stage of each kind the buffer count and cleanup must tell apart."""
    made = {
        "done": stage(
            "done", status=WorkflowStatus.SUCCEEDED, context={BUFFER: [{"n": 1}], "rich": RICH_JSON}
        ),
        "running": stage("running", status=WorkflowStatus.RUNNING, context={BUFFER: [{"n": 2}], "k": 1}),
        "plain": stage("plain", status=WorkflowStatus.SUCCEEDED, context={"k": 2}),
        "null": stage("null", status=WorkflowStatus.TERMINAL, context={BUFFER: None}),
        "nested": stage("nested", status=WorkflowStatus.CANCELED, context={"x": {BUFFER: [1]}}),
        "empty": stage("empty", status=WorkflowStatus.NOT_STARTED, context={BUFFER: []}),
    }
    stored(store, *made.values())
    return made


def contexts(store: SqlWorkflowStore) -> dict[str, dict[str, Any]]:
    with store.engine.connect() as connection:
        return {
            ref: context for ref, context in connection.execute(select(StageRow.ref_id, StageRow.context))
        }


def test_count_buffered_stages_by_scope(store: SqlWorkflowStore) -> None:
    buffered_workflow(store)

    assert store.count_buffered_signal_stages() == 2  # done, null: a top-level key, whatever its value
    assert store.count_buffered_signal_stages(only_complete=False) == 4
    assert store.count_buffered_signal_stages(statuses=["RUNNING", "NOT_STARTED"]) == 2
    assert store.count_buffered_signal_stages(statuses=[WorkflowStatus.TERMINAL]) == 1
    assert store.count_buffered_signal_stages(False, ["SUCCEEDED"]) == 1  # statuses win
    assert store.count_buffered_signal_stages(statuses=[]) == 2  # empty: as only_complete says
    assert store.count_buffered_signal_stages(statuses=["PAUSED"]) == 0


def test_cleanup_strips_the_buffer_keeping_every_other_value_and_moves_the_version(
    store: SqlWorkflowStore,
) -> None:
    made = buffered_workflow(store)
    before = contexts(store)
    versions = {ref: stage_row_version(store.engine, s.id) for ref, s in made.items()}

    assert store.cleanup_buffered_signals() == 2

    after = contexts(store)
    assert after["done"] == {"rich": RICH_JSON}
    assert after["null"] == {}
    assert {ref: after[ref] for ref in ("running", "plain", "nested", "empty")} == {
        ref: before[ref] for ref in ("running", "plain", "nested", "empty")
    }
    moved = {ref: stage_row_version(store.engine, s.id) - versions[ref] for ref, s in made.items()}
    assert moved == {"done": 1, "null": 1, "running": 0, "plain": 0, "nested": 0, "empty": 0}
    assert store.count_buffered_signal_stages() == 0
    assert store.cleanup_buffered_signals() == 0

    assert store.cleanup_buffered_signals(statuses=["NOT_STARTED"]) == 1
    assert store.cleanup_buffered_signals(only_complete=False) == 1
    assert store.count_buffered_signal_stages(only_complete=False) == 0
    assert contexts(store)["running"] == {"k": 1}


def test_an_engine_holding_a_stage_read_before_the_cleanup_must_read_it_again(
    store: SqlWorkflowStore,
) -> None:
    wf = stored(store, stage("done", status=WorkflowStatus.SUCCEEDED, context={BUFFER: [{"n": 1}]}))
    held = store.retrieve(wf.id).stages[0]

    assert store.cleanup_buffered_signals() == 1

    held.context["note"] = "written by an engine that read the stage before the cleanup"
    with pytest.raises(ConcurrencyError):
        store.store_stage(held)  # it would otherwise write the buffer back
    assert contexts(store)["done"] == {}
    fresh = store.retrieve(wf.id).stages[0]
    fresh.context["note"] = "again"
    store.store_stage(fresh)
    assert contexts(store)["done"] == {"note": "again"}


def test_cleanup_goes_through_more_stages_than_one_batch(store: SqlWorkflowStore) -> None:
    per_workflow, workflows = 130, 5  # 650 stages: two batches of 500 and what is left
    for w in range(workflows):
        stages = [
            stage(f"s{i}", status=WorkflowStatus.SUCCEEDED, context={BUFFER: [i], "w": w})
            for i in range(per_workflow)
        ]
        stored(store, *stages, stage("live", status=WorkflowStatus.RUNNING, context={BUFFER: [0]}))

    assert store.count_buffered_signal_stages() == per_workflow * workflows
    assert store.cleanup_buffered_signals() == per_workflow * workflows
    assert store.count_buffered_signal_stages() == 0
    assert store.count_buffered_signal_stages(only_complete=False) == workflows


def test_the_python_fallback_for_dialects_without_a_json_key_test_agrees(store: SqlWorkflowStore) -> None:
    """``GenericProfile`` has no JSON key test: the candidates' contexts are read and looked in."""
    buffered_workflow(store)
    generic = GenericProfile()
    complete = signals.status_scope(True, None)

    def count(scope: list[str] | None) -> int:
        return store._db.run(lambda c: signals.count_buffered(c, generic, scope), Unit.READ)

    assert (count(complete), count(None), count(["RUNNING"])) == (2, 4, 1)
    stripped, after = store._db.run(
        lambda c: signals.strip_buffered(c, generic, complete, None, 2), Unit.WRITE
    )
    assert (
        stripped
        + store._db.run(lambda c: signals.strip_buffered(c, generic, complete, after, 500)[0], Unit.WRITE)
        == 2
    )
    assert store.count_buffered_signal_stages() == 0
    assert contexts(store)["done"] == {"rich": RICH_JSON}


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"statuses": ["SUCCEEDED", "DONE"]}, "statuses"),
        ({"statuses": "SUCCEEDED"}, "statuses"),
        ({"statuses": [None]}, "statuses"),
        ({"statuses": 3}, "statuses"),
        ({"only_complete": "yes"}, "only_complete"),
    ],
)
def test_buffer_count_and_cleanup_refuse_bad_scopes_and_change_nothing(
    store: SqlWorkflowStore, arguments: dict[str, Any], field: str
) -> None:
    buffered_workflow(store)
    before = snapshot(store.engine)

    for call in (store.count_buffered_signal_stages, store.cleanup_buffered_signals):
        with pytest.raises(ValidationError) as refused:
            call(**arguments)
        assert refused.value.path == field

    assert snapshot(store.engine) == before
    with pytest.raises(ValidationError, match=r"unknown status 'DONE'; expected one of .*SUCCEEDED"):
        store.cleanup_buffered_signals(statuses=["DONE"])
