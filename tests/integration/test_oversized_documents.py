"""A document too big for the database is refused before any SQL, naming its place and the
database's limit (issue 11, CONTRACT.md section 7).

MariaDB's limit is the server's ``max_allowed_packet`` (16 MB here), learned when the engine
connects; before, an oversized value failed with the driver's "packet bigger than
'max_allowed_packet'" and dropped the connection. PyMySQL writes each value into the statement's
text, escaping quotes and backslashes, so a value's size there is counted as sent. PostgreSQL's
limit (1 GB a field) and SQLite's (1e9 bytes a row) are too big to reach in a test; both store a
value MariaDB refuses.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from stabilize.persistence.errors import ValidationError
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue import JumpToStage
from stabilize.queue.sql import SqlQueue
from tests.integration.builders import chain, count_statements, stage, workflow

MB = 1024 * 1024


def _packet(store: SqlWorkflowStore) -> int:
    with Session(store.engine) as session:
        return int(session.execute(text("SELECT @@max_allowed_packet")).scalar_one())


def _assert_refused(error: ValidationError, path: str, packet: int) -> None:
    assert error.path == path
    assert "bytes one row may hold here" in error.problem
    assert f"max_allowed_packet ({packet} bytes)" in error.problem  # the limit, stated


@pytest.mark.parametrize("dialect", ["mariadb"])
@pytest.mark.parametrize(
    ("place", "path"),
    [
        ("outputs", "stages[0].outputs['blob']"),
        ("nested", "stages[0].context['files'][1]['body']"),
        ("workflow", "workflow.context['blob']"),
    ],
)
def test_store_refuses_a_document_over_max_allowed_packet_before_any_sql(
    store: SqlWorkflowStore, place: str, path: str
) -> None:
    packet = _packet(store)
    blob = "x" * (packet + 1)
    producer = stage("producer")
    wf = workflow(producer, stage("consumer", {"producer"}))
    if place == "outputs":
        producer.outputs = {"small": 1, "blob": blob}
    elif place == "nested":
        producer.context = {"files": [{"body": "short"}, {"body": blob, "name": "big.bin"}]}
    else:
        wf.context = {"blob": blob}

    with count_statements(store.engine) as statements, pytest.raises(ValidationError) as refused:
        store.store(wf)

    assert statements == []  # refused before any SQL
    _assert_refused(refused.value, path, packet)
    assert not store.exists(wf.id)


@pytest.mark.parametrize("dialect", ["mariadb"])
@pytest.mark.parametrize(
    ("kind", "char", "sent_bytes"),
    [
        # 4 UTF-8 bytes a character: the character count is under the limit, the bytes over it.
        ("astral", "\U0001f680", 4),
        # JSON writes '"' as \", which PyMySQL escapes again: 4 bytes a character are sent.
        ("quotes", '"', 4),
        ("backslashes", "\\", 4),
        ("newlines", "\n", 3),  # JSON's \n, its backslash escaped
        ("apostrophes", "'", 2),  # PyMySQL's \'
    ],
)
def test_the_size_counted_is_what_the_driver_sends(
    store: SqlWorkflowStore, kind: str, char: str, sent_bytes: int
) -> None:
    packet = _packet(store)
    over = stage("producer", outputs={"blob": char * (packet // sent_bytes + 1)})
    wf = workflow(over, stage("consumer", {"producer"}))

    with count_statements(store.engine) as statements, pytest.raises(ValidationError) as refused:
        store.store(wf)

    assert statements == []
    _assert_refused(refused.value, "stages[0].outputs['blob']", packet)
    # The same characters, by a margin under the stated limit, are stored: what the check lets
    # through fits the packet, statement and all.
    under = stage("producer", outputs={"blob": char * ((packet - 128 * 1024) // sent_bytes)})
    fits = workflow(under, stage("consumer", {"producer"}))
    store.store(fits)
    assert store.get_merged_ancestor_outputs(fits.id, "consumer") == under.outputs


@pytest.mark.parametrize("dialect", ["mariadb"])
def test_store_stage_refuses_an_oversized_document_before_any_sql(store: SqlWorkflowStore) -> None:
    packet = _packet(store)
    wf = chain(2, 1)
    store.store(wf)
    first = wf.stages[0]
    first.outputs = {"blob": "y" * packet}

    with count_statements(store.engine) as statements, pytest.raises(ValidationError) as refused:
        store.store_stage(first)

    assert statements == []
    _assert_refused(refused.value, "stage.outputs['blob']", packet)
    loaded = store.retrieve_stage(first.id)
    assert (loaded.version, loaded.outputs) == (0, {})


@pytest.mark.parametrize("dialect", ["mariadb"])
def test_a_new_queue_refuses_an_oversized_message_before_any_sql(store: SqlWorkflowStore, url: str) -> None:
    """A queue's engine learns the limit when it first connects; its first push, too big, is
    refused like any later one (a new engine: the URL differs by a harmless parameter)."""
    packet = _packet(store)
    fresh = make_url(url).update_query_dict({"connect_timeout": "4"}).render_as_string(hide_password=False)
    queue = SqlQueue(fresh)
    message = JumpToStage(execution_id="e", stage_id="s", jump_outputs={"blob": "z" * packet})

    with count_statements(queue.engine) as statements, pytest.raises(ValidationError) as refused:
        queue.push(message)
    with Session(queue.engine) as session, session.begin(), pytest.raises(ValidationError) as in_session:
        queue.push(message, connection=session)  # the caller's transaction: checked alike

    assert statements == []
    path = "message(JumpToStage).payload['jump_outputs']['blob']"
    _assert_refused(refused.value, path, packet)
    _assert_refused(in_session.value, path, packet)
    assert queue.size() == 0


@pytest.mark.parametrize("dialect", ["mariadb"])
def test_a_row_whose_documents_together_are_too_big_names_the_biggest(store: SqlWorkflowStore) -> None:
    """No single value is over the limit, the row is: the place named is the biggest document."""
    packet = _packet(store)
    producer = stage("producer", outputs={"a": "o" * (packet * 6 // 10)}, context={"b": "c" * (packet // 2)})
    wf = workflow(producer, stage("consumer", {"producer"}))

    with pytest.raises(ValidationError) as refused:
        store.store(wf)

    _assert_refused(refused.value, "stages[0].outputs", packet)
    assert not store.exists(wf.id)


@pytest.mark.parametrize("dialect", ["sqlite_file", "sqlite_memory", "postgresql"])
def test_sqlite_and_postgres_store_a_value_of_several_megabytes(store: SqlWorkflowStore) -> None:
    """20 MB, beyond MariaDB's packet, is stored, read back and merged as it was.

    Their own limits, 1 GB on PostgreSQL and 1e9 bytes on SQLite, are stated the same way when
    reached.
    """
    blob = '\U0001f680 quoted "text" \\ and more ' * (20 * MB // 32)
    producer = stage("producer", outputs={"blob": blob, "n": 1})
    wf = workflow(producer, stage("consumer", {"producer"}))

    store.store(wf)

    assert len(json.dumps(producer.outputs, ensure_ascii=False).encode()) > 20 * MB
    assert store.retrieve(wf.id).stages[0].outputs == producer.outputs
    assert store.get_merged_ancestor_outputs(wf.id, "consumer") == producer.outputs
    store.delete(wf.id)
