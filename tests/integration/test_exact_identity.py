"""Ids and ref ids compare exactly on every dialect: case and trailing spaces count.

MariaDB's default and PAD SPACE collations would call "a", "A" and "a " equal; the schema's
binary NO PAD collation keeps them apart, as SQLite and PostgreSQL do.
"""

from __future__ import annotations

from stabilize.models import StageExecution, Workflow
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue import RunTask, StartStage, StartWorkflow
from stabilize.queue.sql import SqlQueue


def test_ref_ids_differing_in_case_or_trailing_space_are_distinct(store: SqlWorkflowStore) -> None:
    stages = [StageExecution.create("t", name, name) for name in ("a", "A", "a ")]
    stages.append(StageExecution.create("t", "join", "join", requisite_stage_ref_ids={"a "}))
    stages[2].outputs = {"from": "a-space"}
    stages[0].outputs = {"from": "a"}
    workflow = Workflow.create("app", "exact", stages)
    store.store(workflow)

    assert [s.ref_id for s in store.retrieve(workflow.id).stages] == ["a", "A", "a ", "join"]
    assert store.get_merged_ancestor_outputs(workflow.id, "join") == {"from": "a-space"}
    assert [s.ref_id for s in store.get_upstream_stages(workflow.id, "join")] == ["a "]


def test_lookups_do_not_ignore_trailing_spaces(store: SqlWorkflowStore) -> None:
    workflow = Workflow.create("app", "exact", [StageExecution.create("t", "a", "a")])
    store.store(workflow)
    store.mark_message_processed("m")

    assert store.exists(workflow.id)
    assert not store.exists(workflow.id + " ")
    assert not store.exists(workflow.id.lower())
    assert store.is_message_processed("m")
    assert not store.is_message_processed("m ")


def test_pending_message_probes_do_not_pad_or_fold_case(url: str) -> None:
    """``has_pending_message_for_*`` compare the row's own id columns, exactly: on MariaDB the
    stage probe read the id out of the payload as text, and "ST1 " matched "ST1"."""
    queue = SqlQueue(url)
    queue.push(StartStage(execution_id="E1 ", stage_id="ST1 "))
    queue.push(RunTask(execution_id="e2", stage_id="st2", task_id="T1 "))

    assert queue.has_pending_message_for_stage("ST1 ")
    assert not queue.has_pending_message_for_stage("ST1")
    assert not queue.has_pending_message_for_stage("st1 ")
    assert queue.has_pending_message_for_stage("st2")
    assert not queue.has_pending_message_for_stage("st2 ")
    assert not queue.has_pending_message_for_stage("ST2")
    assert queue.has_pending_message_for_task("T1 ")
    assert not queue.has_pending_message_for_task("T1")
    assert not queue.has_pending_message_for_task("t1 ")
    assert queue.has_pending_message_for_execution("E1 ")
    assert not queue.has_pending_message_for_execution("E1")
    assert not queue.has_pending_message_for_execution("e2 ")


def test_queue_message_ids_compare_exactly(url: str) -> None:
    queue = SqlQueue(url)
    message = StartWorkflow(execution_id="e")
    queue.push(message)
    padded, folded = message.message_id + " ", message.message_id.lower()

    assert queue.live_delivery_keys([padded, folded]) == set()
    assert queue.live_delivery_keys([message.message_id]) == {message.message_id}
    assert not queue.move_to_dlq(padded)
    assert not queue.move_to_dlq(folded)
    assert queue.move_to_dlq(message.message_id, "by its own id")
    assert not queue.replay_dlq(padded)
    assert not queue.replay_dlq(folded)
    assert queue.replay_dlq(message.message_id)
    assert queue.size() == 1


def test_the_json_key_test_of_contexts_is_exact(store: SqlWorkflowStore) -> None:
    """The one query that looks into documents (the engine's older in-context signal buffer,
    found by the dialect's JSON key test) matches the key exactly: no padding, no case folding."""
    keys = ["_buffered_signals", "_buffered_signals ", "_BUFFERED_SIGNALS", " _buffered_signals"]
    stages = [StageExecution.create("t", f"s{i}", f"s{i}", context={key: []}) for i, key in enumerate(keys)]
    workflow = Workflow.create("app", "exact", stages)
    store.store(workflow)

    assert store.count_buffered_signal_stages(only_complete=False) == 1
    assert store.cleanup_buffered_signals(only_complete=False) == 1
    assert store.count_buffered_signal_stages(only_complete=False) == 0
    contexts = {stage.ref_id: stage.context for stage in store.retrieve(workflow.id).stages}
    assert contexts == {"s0": {}, **{f"s{i}": {key: []} for i, key in enumerate(keys) if i}}
