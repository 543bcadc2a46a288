"""``store.transaction(queue, session=app_session)``: the application's own Session joins a step.

What this file proves, on every dialect, with an application table the test creates (Core
``Table``) and an application-owned ``Session`` on the store's engine:

- commit: the application's row, the stage's compare-and-set (and its changed task), the pushed
  message and the processed mark are all there, and the in-memory versions move only once the
  application's transaction has committed;
- rollback (the application raises after the store's block): none of it is there, and no
  in-memory version moved;
- a failed compare-and-set inside the store's block raises ``ConcurrencyError``; when the error
  leaves the Session's ``begin()`` block none of it is there, the application's row included; when
  the application handles it inside, its own row is still pending and commits alone, as the
  store's docstring says;
- the store never commits or closes the caller's Session (still in its transaction after the
  store's block, its writes invisible to other connections), and a Session bound to another
  database is refused with ``ValidationError`` before anything is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, create_engine, func, insert, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from stabilize.errors import ConcurrencyError, ValidationError
from stabilize.models import StageExecution, Workflow, WorkflowStatus
from stabilize.models.ids import new_id
from stabilize.persistence.sql.engine import get_engine
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.queue import SqlQueue, StartStage
from tests.integration.builders import chain, snapshot, stage_row_version, task_row_versions


@pytest.fixture
def orders(store: SqlWorkflowStore) -> Iterator[Table]:
    """The application's own table, in the test database, dropped after the test."""
    table = Table(
        f"app_orders_{uuid.uuid4().hex[:8]}",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("note", String(64), nullable=False),
    )
    table.create(store.engine)
    yield table
    table.drop(store.engine)


@dataclass
class Step:
    """A stored workflow and the stage an engine step moves, with a task whose status changes."""

    workflow: Workflow
    stage: StageExecution
    message_id: str

    def write(self, store: SqlWorkflowStore, queue: SqlQueue, session: Session) -> None:
        with store.transaction(queue, session=session) as txn:
            self.stage.status = WorkflowStatus.RUNNING
            self.stage.context["step"] = "joined"
            self.stage.tasks[0].status = WorkflowStatus.RUNNING
            txn.store_stage(self.stage)
            txn.push_message(StartStage(execution_id=self.workflow.id, stage_id=self.stage.id))
            txn.mark_message_processed(self.message_id, "StartStage", self.workflow.id)


@pytest.fixture
def step(store: SqlWorkflowStore) -> Step:
    workflow = chain(2, 2)
    store.store(workflow)
    return Step(workflow, store.retrieve_stage(workflow.stages[0].id), new_id())


def own_rows(engine: Engine, table: Table) -> list[tuple[int, str]]:
    with engine.connect() as connection:
        return [(row.id, row.note) for row in connection.execute(select(table).order_by(table.c.id))]


def assert_nothing_of_the_step(
    store: SqlWorkflowStore, queue: SqlQueue, step: Step, versions: dict[str, int]
) -> None:
    """Neither the stage write, nor the message, nor the mark; no version moved in memory."""
    assert stage_row_version(store.engine, step.stage.id) == 0
    assert task_row_versions(store.engine, step.stage.id) == versions
    assert store.retrieve_stage(step.stage.id).status == WorkflowStatus.NOT_STARTED
    assert queue.size() == 0
    assert not store.is_message_processed(step.message_id)
    assert step.stage.version == 0
    assert [t.version for t in step.stage.tasks] == [0, 0]


def test_commit_keeps_the_applications_row_and_the_whole_step(
    store: SqlWorkflowStore, url: str, dialect: str, orders: Table, step: Step
) -> None:
    queue = SqlQueue(url)
    with Session(store.engine) as session:
        with session.begin():
            session.execute(insert(orders).values(id=1, note="paid"))
            step.write(store, queue, session)
            # The store did not commit or close the caller's Session.
            assert session.in_transaction()
            assert session.execute(select(func.count()).select_from(orders)).scalar_one() == 1
            # Versions move when the application commits, not before.
            assert step.stage.version == 0
            assert [t.version for t in step.stage.tasks] == [0, 0]
            if dialect != "sqlite_memory":  # one shared connection there: no "other" connection
                assert own_rows(store.engine, orders) == []
                assert stage_row_version(store.engine, step.stage.id) == 0
        assert not session.in_transaction()

    assert own_rows(store.engine, orders) == [(1, "paid")]
    assert stage_row_version(store.engine, step.stage.id) == 1
    assert step.stage.version == 1
    task_versions = task_row_versions(store.engine, step.stage.id)
    assert task_versions == {step.stage.tasks[0].id: 1, step.stage.tasks[1].id: 0}
    assert [t.version for t in step.stage.tasks] == [1, 0]
    stored = store.retrieve_stage(step.stage.id)
    assert stored.status == WorkflowStatus.RUNNING and stored.context["step"] == "joined"
    assert store.is_message_processed(step.message_id)
    message = queue.poll_one()
    assert isinstance(message, StartStage) and message.stage_id == step.stage.id
    # The next step goes on from the moved version: the in-memory stage is current.
    step.stage.context["step"] = "next"
    store.store_stage(step.stage)
    assert stage_row_version(store.engine, step.stage.id) == 2


def test_a_sessionmaker_session_can_run_two_steps_in_one_transaction(
    store: SqlWorkflowStore, url: str, orders: Table, step: Step
) -> None:
    """The store leaves the Session open and usable: a second step in the same transaction, on
    the next stage, and the application's rows around both commit together."""
    queue = SqlQueue(url)
    sessions = sessionmaker(store.engine)
    second = store.retrieve_stage(step.workflow.stages[1].id)
    with sessions.begin() as session:
        session.execute(insert(orders).values(id=1, note="first"))
        step.write(store, queue, session)
        with store.transaction(queue, session=session) as txn:
            second.status = WorkflowStatus.RUNNING
            txn.store_stage(second)
            txn.push_message(StartStage(execution_id=step.workflow.id, stage_id=second.id))
        assert session.in_transaction()
        session.execute(insert(orders).values(id=2, note="second"))
    assert own_rows(store.engine, orders) == [(1, "first"), (2, "second")]
    assert stage_row_version(store.engine, step.stage.id) == 1
    assert stage_row_version(store.engine, second.id) == 1
    assert (step.stage.version, second.version) == (1, 1)
    assert queue.size() == 2


def test_rollback_leaves_none_of_it(store: SqlWorkflowStore, url: str, orders: Table, step: Step) -> None:
    queue = SqlQueue(url)
    versions = task_row_versions(store.engine, step.stage.id)
    before = snapshot(store.engine)
    with Session(store.engine) as session:
        with pytest.raises(RuntimeError, match="application changed its mind"), session.begin():
            session.execute(insert(orders).values(id=1, note="paid"))
            step.write(store, queue, session)
            assert session.in_transaction()
            raise RuntimeError("application changed its mind")
        assert not session.in_transaction()
    assert own_rows(store.engine, orders) == []
    assert snapshot(store.engine) == before
    assert_nothing_of_the_step(store, queue, step, versions)


def _lose_the_race(store: SqlWorkflowStore, step: Step) -> None:
    """Another worker moves the stage first: the step's copy is now one version behind."""
    other = store.retrieve_stage(step.stage.id)
    other.context["winner"] = "other"
    store.store_stage(other)
    assert stage_row_version(store.engine, step.stage.id) == 1


def test_a_failed_compare_and_set_leaving_the_begin_block_leaves_none_of_it(
    store: SqlWorkflowStore, url: str, orders: Table, step: Step
) -> None:
    queue = SqlQueue(url)
    _lose_the_race(store, step)
    versions = task_row_versions(store.engine, step.stage.id)
    before = snapshot(store.engine)
    with Session(store.engine) as session:
        with pytest.raises(ConcurrencyError, match=step.stage.id), session.begin():
            session.execute(insert(orders).values(id=1, note="paid"))
            step.write(store, queue, session)
        assert not session.in_transaction()
    assert own_rows(store.engine, orders) == []
    assert snapshot(store.engine) == before
    assert stage_row_version(store.engine, step.stage.id) == 1
    assert store.retrieve_stage(step.stage.id).context == {"i": 0, "winner": "other"}
    assert task_row_versions(store.engine, step.stage.id) == versions
    assert queue.size() == 0
    assert not store.is_message_processed(step.message_id)
    assert step.stage.version == 0


def test_a_failed_compare_and_set_handled_inside_leaves_the_applications_work_pending(
    store: SqlWorkflowStore, url: str, orders: Table, step: Step
) -> None:
    """The state the store's docstring names: its SAVEPOINT rolled back, the application's own
    work still pending in the Session, which commits it alone."""
    queue = SqlQueue(url)
    _lose_the_race(store, step)
    before = snapshot(store.engine)
    with Session(store.engine) as session, session.begin():
        session.execute(insert(orders).values(id=1, note="paid"))
        with pytest.raises(ConcurrencyError):
            step.write(store, queue, session)
        assert session.in_transaction()
        assert session.execute(select(orders.c.note)).scalars().all() == ["paid"]
        session.execute(insert(orders).values(id=2, note="after the conflict"))
    assert own_rows(store.engine, orders) == [(1, "paid"), (2, "after the conflict")]
    assert snapshot(store.engine) == before  # none of the step
    assert queue.size() == 0
    assert not store.is_message_processed(step.message_id)
    assert step.stage.version == 0


def assert_refused(store: SqlWorkflowStore, queue: SqlQueue, step: Step, other: Engine) -> None:
    """A Session on ``other`` is refused before anything is written, and stays the caller's."""
    before = snapshot(store.engine)
    with Session(other) as session, session.begin():
        with pytest.raises(ValidationError) as refused, store.transaction(queue, session=session) as txn:
            txn.store_stage(step.stage)
        assert refused.value.path == "session"
        assert "another database" in str(refused.value)
        assert session.in_transaction()
    assert snapshot(store.engine) == before
    assert step.stage.version == 0


def test_a_session_on_another_database_is_refused(
    store: SqlWorkflowStore, url: str, step: Step, fresh_url: Callable[[], str]
) -> None:
    assert_refused(store, SqlQueue(url), step, get_engine(fresh_url()))


@pytest.mark.parametrize("dialect", ["sqlite_memory"], indirect=True)
def test_a_session_on_another_in_memory_database_of_the_same_url_is_refused(
    store: SqlWorkflowStore, url: str, step: Step
) -> None:
    """A second engine on ``sqlite:///:memory:`` is another, empty database, whatever its URL."""
    other = create_engine(url, poolclass=StaticPool)
    try:
        assert_refused(store, SqlQueue(url), step, other)
    finally:
        other.dispose()
