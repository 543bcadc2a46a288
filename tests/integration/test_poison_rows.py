"""Poison rows: whatever a ``queue_messages`` row holds, a poll delivers the good messages behind
it and moves the bad one to the dead letters with the reason, on every dialect (issue 11,
CONTRACT.md section 5).

The bad rows are written the way a foreign writer, a bug or a manual edit would: raw text put into
the payload column through SQLAlchemy Core (the ORM's table, the payload bound as plain text, so
no check of ours runs on it). Where the column itself cannot hold a kind (PostgreSQL's ``json``
and MariaDB's ``JSON_VALID`` check refuse text that is not JSON), the test asserts that the
database refused it, so the list of refusals per dialect is part of what is checked.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Connection,
    Engine,
    LargeBinary,
    Text,
    bindparam,
    cast,
    func,
    insert,
    select,
    type_coerce,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError

from stabilize.models import WorkflowStatus
from stabilize.persistence.ids import new_id, now_ms
from stabilize.persistence.sql.engine import get_engine
from stabilize.persistence.sql.rows import DeadLetterRow, QueueMessageRow, table_of
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue import JumpToStage, Message, StartStage, StartWorkflow
from stabilize.queue.messages import serialize_message
from stabilize.queue.sql import SqlQueue
from stabilize.runner import submit
from stabilize.runner.demo import demo_workflow
from stabilize.runner.processes import start_workers
from tests.conftest import FILE_OR_SERVER_DIALECTS

QUEUE = table_of(QueueMessageRow)
DEAD_LETTERS = table_of(DeadLetterRow)
JOIN_SECONDS = 50


def _payload_text(message: Message, **changes: Any) -> str:
    """A real message's payload as JSON text, with fields replaced, and the fields named in
    ``drop`` removed."""
    _, payload = serialize_message(message)
    drop = changes.pop("drop", ())
    payload.update(changes)
    for name in drop:
        del payload[name]
    return json.dumps(payload)  # escapes lone surrogates and NUL as \\uXXXX, writes NaN as NaN


def _nested(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth - 1):
        value = {"down": value}
    return value


def _stage_message() -> StartStage:
    return StartStage(execution_id="poisoned", stage_id="ST1")


#: Kind -> (message type on the row, payload text, what the dead letter's reason says).
POISON: dict[str, tuple[str, Callable[[], str | bytes], str]] = {
    "json_null": ("StartStage", lambda: "null", "payload is a JSON NoneType, not an object"),
    "not_json": ("StartStage", lambda: "this is {not JSON", "payload is not JSON"),
    "json_string": ("StartStage", lambda: '"StartStage"', "payload is a JSON str"),
    "json_array": ("StartStage", lambda: "[1, 2, 3]", "payload is a JSON list"),
    "json_number": ("StartStage", lambda: "42", "payload is a JSON int"),
    "huge_int": (
        "StartStage",
        lambda: _payload_text(_stage_message()).replace('"retry_count": 0', '"retry_count": ' + "7" * 5000),
        "payload is not JSON this process can read: Exceeds the limit (4300 digits)",
    ),
    "stage_id_int": (
        "StartStage",
        lambda: _payload_text(_stage_message(), stage_id=12345),
        "StartStage.stage_id: expected str, got int",
    ),
    "attempts_text": (
        "StartStage",
        lambda: _payload_text(_stage_message(), attempts="three"),
        "StartStage.attempts: expected int, got str",
    ),
    "missing_fields": (
        "StartStage",
        lambda: _payload_text(_stage_message(), drop=("stage_id", "execution_id")),
        "StartStage payload is missing field(s): execution_id, stage_id",
    ),
    "unknown_field": (
        "StartStage",
        lambda: _payload_text(_stage_message(), surprise=True),
        "StartStage payload has unknown field(s): surprise",
    ),
    # JSON the decoder reads, a message it builds, but deeper than any document may be stored.
    "deep_nesting": (
        "JumpToStage",
        lambda: _payload_text(JumpToStage(execution_id="poisoned", stage_id="ST1"), jump_context=_nested(40)),
        "is nested deeper than 31 levels",
    ),
    # Deeper than Python's JSON decoder recurses.
    "very_deep_nesting": (
        "StartStage",
        lambda: _payload_text(_stage_message(), stage_id="#").replace('"#"', "[" * 5000 + "]" * 5000),
        "payload is not JSON this process can read: maximum recursion depth exceeded",
    ),
    "lone_surrogate": (
        "StartStage",
        lambda: _payload_text(_stage_message(), stage_id="ST\ud800"),
        "payload['stage_id']: text contains a lone surrogate",
    ),
    "nul_character": (
        "StartStage",
        lambda: _payload_text(_stage_message(), stage_id="ST\x001"),
        "payload['stage_id']: text contains a NUL character",
    ),
    "nan": (
        "StartStage",
        lambda: _payload_text(_stage_message(), retry_count=float("nan")),
        "payload['retry_count']: nan is not a finite number",
    ),
    # Bytes that are not UTF-8 in a text column (SQLite checks no encoding; a foreign writer).
    "invalid_utf8": (
        "StartStage",
        lambda: _payload_text(_stage_message(), stage_id="#").encode().replace(b'"#"', b'"ST\xff1"'),
        "payload is not UTF-8 text",
    ),
    "unknown_type": (
        "NoSuchMessage",
        lambda: _payload_text(_stage_message()),
        "unknown message type 'NoSuchMessage'",
    ),
}

#: What each database's payload column refuses itself: PostgreSQL's ``json`` type and
#: MariaDB's ``JSON_VALID`` check accept JSON text only (no NaN), and MariaDB's check also
#: refuses lone surrogates and nesting deeper than 31. SQLite's column is plain text.
REFUSED_BY_COLUMN: dict[str, set[str]] = {
    "sqlite_file": set(),
    "sqlite_memory": set(),
    "postgresql": {"not_json", "nan", "invalid_utf8"},
    "mariadb": {"not_json", "nan", "lone_surrogate", "deep_nesting", "very_deep_nesting", "invalid_utf8"},
}


def _raw_payload(engine: Engine, binary: bool) -> Any:
    """The payload bound as plain text (or bytes, given as text), so no check of ours runs on
    it; PostgreSQL's psycopg dialect casts a text parameter to TEXT, which a ``json`` column
    takes only through an explicit cast."""
    if engine.dialect.name == "postgresql":
        text = func.convert_from(bindparam("raw", type_=LargeBinary), "UTF8") if binary else bindparam("raw")
        return cast(type_coerce(text, Text), postgresql.JSON)
    if binary:
        raw = bindparam("raw", type_=LargeBinary)
        return cast(raw, Text) if engine.dialect.name == "sqlite" else raw
    return bindparam("raw", type_=Text)


def insert_raw(connection: Connection, message_type: str, payload_text: str | bytes) -> str:
    """Write one due queue row holding ``payload_text`` as it is; return its message id."""
    message_id = new_id()
    binary = isinstance(payload_text, bytes)
    statement = insert(QUEUE).values(payload=_raw_payload(connection.engine, binary))
    connection.execute(
        statement,
        {
            "raw": payload_text,
            "message_id": message_id,
            "message_type": message_type,
            "deliver_at": 0,  # due long ago: in front of everything pushed normally
            "attempts": 0,
            "max_attempts": 5,
            "created_at": now_ms(),
            "execution_id": "poisoned",
        },
    )
    return message_id


def insert_poison(engine: Engine, dialect: str, kinds: list[str]) -> dict[str, tuple[str, str | bytes]]:
    """Insert each kind the column holds (asserting the database refuses exactly the others);
    return kind -> (message id, payload text) of the rows written."""
    written: dict[str, tuple[str, str | bytes]] = {}
    for kind in kinds:
        message_type, payload, _ = POISON[kind]
        text = payload()
        try:
            with engine.begin() as connection:
                written[kind] = (insert_raw(connection, message_type, text), text)
        except DBAPIError as error:
            assert kind in REFUSED_BY_COLUMN[dialect], f"{dialect} refused {kind}: {error}"
        else:
            assert kind not in REFUSED_BY_COLUMN[dialect], f"{dialect}'s column held {kind}"
    return written


def _dead_letter(engine: Engine, message_id: str) -> Any:
    with engine.connect() as connection:
        return connection.execute(
            select(DEAD_LETTERS.c.message_type, DEAD_LETTERS.c.last_error, DEAD_LETTERS.c.raw_payload)
            .add_columns(cast(DEAD_LETTERS.c.payload, Text).label("payload_text"))
            .where(DEAD_LETTERS.c.message_id == message_id)
        ).one_or_none()


def assert_dead_lettered(engine: Engine, kind: str, message_id: str, text: str | bytes) -> None:
    """The row is a dead letter with the kind's reason, and what it held is kept: as the raw
    text (bytes that are not UTF-8 as ``\\xNN`` escapes), or (a JSON object every document
    check passes) as the payload document."""
    letter = _dead_letter(engine, message_id)
    assert letter is not None, f"{kind}: no dead letter"
    message_type, reason = POISON[kind][0], POISON[kind][2]
    assert letter.message_type == message_type
    assert letter.last_error.startswith("undecodable: ") and reason in letter.last_error, letter.last_error
    if isinstance(text, bytes):
        text = text.decode("utf-8", "backslashreplace")
    if letter.raw_payload is not None:
        assert letter.raw_payload == text
        assert json.loads(letter.payload_text) is None
    else:
        assert json.loads(letter.payload_text) == json.loads(text)


@pytest.mark.parametrize("kind", list(POISON))
def test_a_poison_row_is_dead_lettered_and_the_good_message_behind_it_delivered(
    dialect: str, url: str, kind: str
) -> None:
    queue, engine = SqlQueue(url), get_engine(url)
    written = insert_poison(engine, dialect, [kind])
    good = StartWorkflow(execution_id="good")
    queue.push(good)

    delivered = queue.poll_one()  # never raises, whatever is in front

    assert delivered is not None and delivered.message_id == good.message_id
    queue.ack(delivered)
    assert queue.poll_one() is None
    assert queue.size() == 0
    if kind in written:
        assert queue.dlq_size() == 1
        assert_dead_lettered(engine, kind, *written[kind])
    else:
        assert queue.dlq_size() == 0


def test_every_poison_kind_at_once_in_front_of_good_messages(dialect: str, url: str) -> None:
    queue, engine = SqlQueue(url), get_engine(url)
    written = insert_poison(engine, dialect, list(POISON))
    goods = [StartWorkflow(execution_id=f"good-{i}") for i in range(3)]
    for good in goods:
        queue.push(good)

    delivered = []
    # A poll looks at a bounded number of rows (MAX_CANDIDATES), so a poll that only buried
    # poison may answer None; a few polls get past any number of them, none of them raising.
    for _ in range(len(POISON) + len(goods)):
        message = queue.poll_one()
        if message is not None:
            delivered.append(message.message_id)
            queue.ack(message)
        elif len(delivered) == len(goods):
            break

    assert delivered == [good.message_id for good in goods]  # in push order
    assert queue.size() == 0
    assert queue.dlq_size() == len(written)
    for kind, (message_id, text) in written.items():
        assert_dead_lettered(engine, kind, message_id, text)
    # The dead letters list, which an operator reads, shows them too.
    listed = {entry["message_id"]: entry for entry in queue.list_dlq(limit=100)}
    assert set(listed) == {message_id for message_id, _ in written.values()}


def test_a_poison_row_whose_attempts_are_spent_is_dead_lettered_with_its_raw_text(
    dialect: str, url: str
) -> None:
    """The attempts check comes first; the dead letter still cannot hold the NUL as a
    document, so it keeps the raw text."""
    queue, engine = SqlQueue(url), get_engine(url)
    kind = "nul_character"  # every dialect's column holds the escape
    message_type, payload, _ = POISON[kind]
    text = payload()
    with engine.begin() as connection:
        message_id = insert_raw(connection, message_type, text)
        connection.execute(QUEUE.update().where(QUEUE.c.message_id == message_id).values(attempts=5))
    queue.push(good := StartWorkflow(execution_id="good"))

    delivered = queue.poll_one()

    assert delivered is not None and delivered.message_id == good.message_id
    letter = _dead_letter(engine, message_id)
    assert letter is not None and letter.raw_payload == text
    assert "attempts" in letter.last_error


def test_replaying_a_dead_letter_without_a_readable_payload_is_refused(dialect: str, url: str) -> None:
    queue, engine = SqlQueue(url), get_engine(url)
    [(message_id, _)] = insert_poison(engine, dialect, ["json_null"]).values()
    assert queue.poll_one() is None
    with pytest.raises(ValueError, match="held no readable message"):
        queue.replay_dlq(message_id)
    assert queue.dlq_size() == 1 and queue.size() == 0


@pytest.mark.parametrize("dialect", FILE_OR_SERVER_DIALECTS)
def test_runner_workers_finish_a_workflow_around_poison_rows(dialect: str, url: str, tmp_path: Path) -> None:
    store, queue, engine = SqlWorkflowStore(url), SqlQueue(url), get_engine(url)
    written = insert_poison(engine, dialect, list(POISON))
    workflow = demo_workflow(5)
    submit(store, queue, workflow)

    processes = start_workers(url, workflow.id, 2, lock_seconds=10.0)
    for process in processes:
        process.join(JOIN_SECONDS)

    assert not any(p.is_alive() for p in processes), "a worker is still running after the deadline"
    assert [p.exitcode for p in processes] == [0, 0], "a worker died"
    done = store.retrieve(workflow.id)
    assert done.status is WorkflowStatus.SUCCEEDED
    assert all(stage.status is WorkflowStatus.SUCCEEDED for stage in done.stages)
    assert queue.size() == 0
    for kind, (message_id, text) in written.items():
        assert_dead_lettered(engine, kind, message_id, text)
