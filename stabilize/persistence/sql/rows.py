"""Declarative rows: the schema as typed classes. Columns, keys and indexes only, no behaviour.

Each column is declared once, here, with a type that checks and encodes its values (``types``) and
a role saying what the store does with it (``Column.info["role"]``); the codecs in ``mapping`` and
the update statements are derived from these declarations, so a new field is a column here, a
field on the domain class and a migration (``alembic check`` in the suite fails on any drift).

Times are epoch milliseconds in BIGINT columns, as in the domain models: one unit everywhere, and
no time-zone conversion that differs between drivers. Enums are stored by member name.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import BigInteger, ForeignKey, ForeignKeyConstraint, Index, Integer, MetaData, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from stabilize.models.stage import JoinType, SplitType, SyntheticStageOwner
from stabilize.models.status import WorkflowStatus
from stabilize.models.workflow import WorkflowType
from stabilize.persistence.sql.types import BoundedText, Count, Document, EnumName, Flag, Millis

#: Constraint names Alembic can find again on every dialect (SQLite batch mode needs names).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Auto-increment ids: BIGINT on servers, INTEGER on SQLite so the column is its rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")

ID_LENGTH = 26  # a ULID
REF_LENGTH = 255
NAME_LENGTH = 255
STATUS_LENGTH = 32
MESSAGE_ID_LENGTH = 64

#: MariaDB/MySQL: utf8mb4 holds every plane of Unicode; a binary NO PAD collation makes ids and ref
#: ids compare exactly (the default would call "a", "A" and "a " the same ref id). The migration
#: picks utf8mb4_0900_bin on MySQL 8, which has no utf8mb4_nopad_bin.
MYSQL_TABLE_OPTIONS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_nopad_bin",
}

# -- roles: what the store does with a column (``Column.info["role"]``) -----------------------------

#: The row's identity, from the domain object.
KEY = {"role": "key"}
#: Written when the row is inserted, from the domain object; never rewritten.
FIXED = {"role": "fixed"}
#: Rewritten by the entity's update (a stage's compare-and-set, ``update_status``, a task write).
STATE = {"role": "state"}
#: The compare-and-set token: checked and moved by the store.
VERSION = {"role": "version"}
#: Supplied by the store, not a field of the domain object (the parent's id, a position, a time).
PLACE = {"role": "place"}


def ids(optional: bool = False) -> BoundedText:
    """A ULID id column's type (26 characters); None is refused unless ``optional``."""
    return BoundedText(ID_LENGTH, optional=optional)


def names(optional: bool = False) -> BoundedText:
    """A name column's type (255 characters); None is refused unless ``optional``."""
    return BoundedText(NAME_LENGTH, optional=optional)


class Base(DeclarativeBase):
    """The declarative base of every row: one ``MetaData`` with ``NAMING_CONVENTION``, and
    ``dict[str, Any]`` columns are ``Document`` (JSON, never JSONB).
    """
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: Document()}


class WorkflowRow(Base):
    """A workflow: its identity, trigger and context (written once) and its state (rewritten by
    ``update_status``). Its stages go with it (``ON DELETE CASCADE``).
    """
    __tablename__ = "workflows"
    __table_args__ = (
        Index("ix_workflows_application_start_time", "application", "start_time"),
        Index("ix_workflows_pipeline_config_id_start_time", "pipeline_config_id", "start_time"),
        Index("ix_workflows_status_end_time", "status", "end_time"),
        MYSQL_TABLE_OPTIONS,
    )

    id: Mapped[str] = mapped_column(ids(), primary_key=True, info=KEY)
    type: Mapped[WorkflowType] = mapped_column(EnumName(WorkflowType), info=FIXED)
    application: Mapped[str] = mapped_column(names(), info=FIXED)
    name: Mapped[str] = mapped_column(names(), info=FIXED)
    status: Mapped[WorkflowStatus] = mapped_column(EnumName(WorkflowStatus), info=STATE)
    context: Mapped[dict[str, Any]] = mapped_column(info=FIXED)
    trigger: Mapped[dict[str, Any]] = mapped_column(info=FIXED)
    start_time: Mapped[int | None] = mapped_column(Millis(), info=STATE)
    end_time: Mapped[int | None] = mapped_column(Millis(), info=STATE)
    start_time_expiry: Mapped[int | None] = mapped_column(Millis(), info=FIXED)
    is_canceled: Mapped[bool] = mapped_column(Flag(), info=STATE)
    canceled_by: Mapped[str | None] = mapped_column(names(optional=True), info=STATE)
    cancellation_reason: Mapped[str | None] = mapped_column(BoundedText(optional=True), info=STATE)
    #: SQL NULL when not paused (not JSON null), so ``paused IS NULL`` finds them.
    paused: Mapped[dict[str, Any] | None] = mapped_column(Document(optional=True), info=STATE)
    pipeline_config_id: Mapped[str | None] = mapped_column(names(optional=True), info=FIXED)
    is_limit_concurrent: Mapped[bool] = mapped_column(Flag(), info=FIXED)
    max_concurrent_executions: Mapped[int] = mapped_column(Count(), info=FIXED)
    keep_waiting_pipelines: Mapped[bool] = mapped_column(Flag(), info=FIXED)
    origin: Mapped[str] = mapped_column(names(), info=FIXED)
    config_version: Mapped[str | None] = mapped_column(names(optional=True), info=FIXED)
    queue_table: Mapped[str | None] = mapped_column(names(optional=True), info=STATE)
    created_at: Mapped[int] = mapped_column(Millis(optional=False), info=PLACE)


class StageRow(Base):
    """A stage of a workflow, with its position in the workflow, its state (rewritten by the
    compare-and-set of ``store_stage`` on ``version``) and its control flow (written once).
    Its edges and tasks go with it (``ON DELETE CASCADE``).
    """
    __tablename__ = "stages"
    __table_args__ = (
        Index("uq_stages_workflow_id_ref_id", "workflow_id", "ref_id", unique=True),
        Index("ix_stages_workflow_id_position", "workflow_id", "position"),
        Index("ix_stages_parent_stage_id", "parent_stage_id"),
        MYSQL_TABLE_OPTIONS,
    )

    id: Mapped[str] = mapped_column(ids(), primary_key=True, info=KEY)
    workflow_id: Mapped[str] = mapped_column(
        ids(), ForeignKey("workflows.id", ondelete="CASCADE"), info=PLACE
    )
    #: Order of addition within the workflow; ``retrieve`` returns stages in this order.
    position: Mapped[int] = mapped_column(Count(), info=PLACE)
    ref_id: Mapped[str] = mapped_column(BoundedText(REF_LENGTH), info=FIXED)
    type: Mapped[str] = mapped_column(names(), info=FIXED)
    name: Mapped[str] = mapped_column(names(), info=FIXED)
    status: Mapped[WorkflowStatus] = mapped_column(EnumName(WorkflowStatus), info=STATE)
    context: Mapped[dict[str, Any]] = mapped_column(info=STATE)
    outputs: Mapped[dict[str, Any]] = mapped_column(info=STATE)
    parent_stage_id: Mapped[str | None] = mapped_column(ids(optional=True), info=FIXED)
    synthetic_stage_owner: Mapped[SyntheticStageOwner | None] = mapped_column(
        EnumName(SyntheticStageOwner, optional=True), info=FIXED
    )
    start_time: Mapped[int | None] = mapped_column(Millis(), info=STATE)
    end_time: Mapped[int | None] = mapped_column(Millis(), info=STATE)
    start_time_expiry: Mapped[int | None] = mapped_column(Millis(), info=STATE)
    scheduled_time: Mapped[int | None] = mapped_column(Millis(), info=STATE)
    version: Mapped[int] = mapped_column(Count(), info=VERSION)
    # The engine's control flow, as written when the stage was added (migration 0004).
    join_type: Mapped[JoinType] = mapped_column(EnumName(JoinType), info=FIXED)
    join_threshold: Mapped[int] = mapped_column(Count(), info=FIXED)
    split_type: Mapped[SplitType] = mapped_column(EnumName(SplitType), info=FIXED)
    split_conditions: Mapped[dict[str, Any]] = mapped_column(info=FIXED)
    mi_config: Mapped[dict[str, Any] | None] = mapped_column(Document(optional=True), info=FIXED)
    deferred_choice_group: Mapped[str | None] = mapped_column(names(optional=True), info=FIXED)
    milestone_ref_id: Mapped[str | None] = mapped_column(BoundedText(REF_LENGTH, optional=True), info=FIXED)
    milestone_status: Mapped[str | None] = mapped_column(
        BoundedText(STATUS_LENGTH, optional=True), info=FIXED
    )
    mutex_key: Mapped[str | None] = mapped_column(names(optional=True), info=FIXED)
    cancel_region: Mapped[str | None] = mapped_column(names(optional=True), info=FIXED)


class StageEdgeRow(Base):
    """One requisite of a stage: ``ref_id`` waits for ``requisite_ref_id``.

    The DAG as rows, so the ancestor query is a recursive CTE over an indexed table instead of a
    walk over JSON arrays. A requisite may name a ref id that no stage has (yet), so only the
    dependent side has a foreign key. Every column is supplied by the store, from the stage's
    ``requisite_stage_ref_ids``.
    """

    __tablename__ = "stage_edges"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workflow_id", "ref_id"],
            ["stages.workflow_id", "stages.ref_id"],
            ondelete="CASCADE",
        ),
        # The stages waiting for a ref id (``queries.DOWNSTREAM``). Led by the requisite, so it
        # never competes with the primary key for the per-stage lookups of a cascade (0005).
        Index("ix_stage_edges_requisite_ref_id_workflow_id", "requisite_ref_id", "workflow_id"),
        MYSQL_TABLE_OPTIONS,
    )

    workflow_id: Mapped[str] = mapped_column(ids(), primary_key=True, info=PLACE)
    ref_id: Mapped[str] = mapped_column(BoundedText(REF_LENGTH), primary_key=True, info=PLACE)
    requisite_ref_id: Mapped[str] = mapped_column(BoundedText(REF_LENGTH), primary_key=True, info=PLACE)


class TaskRow(Base):
    """A task of a stage, at its position in the stage; its fields are rewritten by
    ``store_stage``, which leaves the row alone when the task did not change (``images``).
    """
    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_stage_id_position", "stage_id", "position"), MYSQL_TABLE_OPTIONS)

    id: Mapped[str] = mapped_column(ids(), primary_key=True, info=KEY)
    stage_id: Mapped[str] = mapped_column(ids(), ForeignKey("stages.id", ondelete="CASCADE"), info=PLACE)
    #: Order within the stage; tasks run in this order.
    position: Mapped[int] = mapped_column(Count(), info=PLACE)
    name: Mapped[str] = mapped_column(names(), info=STATE)
    implementing_class: Mapped[str] = mapped_column(names(), info=STATE)
    status: Mapped[WorkflowStatus] = mapped_column(EnumName(WorkflowStatus), info=STATE)
    start_time: Mapped[int | None] = mapped_column(Millis(), info=STATE)
    end_time: Mapped[int | None] = mapped_column(Millis(), info=STATE)
    stage_start: Mapped[bool] = mapped_column(Flag(), info=STATE)
    stage_end: Mapped[bool] = mapped_column(Flag(), info=STATE)
    loop_start: Mapped[bool] = mapped_column(Flag(), info=STATE)
    loop_end: Mapped[bool] = mapped_column(Flag(), info=STATE)
    task_exception_details: Mapped[dict[str, Any]] = mapped_column(info=STATE)
    version: Mapped[int] = mapped_column(Count(), info=VERSION)


class ProcessedMessageRow(Base):
    """A message whose effects have committed; a redelivered copy is skipped."""

    __tablename__ = "processed_messages"
    __table_args__ = (Index("ix_processed_messages_processed_at", "processed_at"), MYSQL_TABLE_OPTIONS)

    message_id: Mapped[str] = mapped_column(BoundedText(MESSAGE_ID_LENGTH), primary_key=True, info=KEY)
    handler_type: Mapped[str | None] = mapped_column(names(optional=True), info=FIXED)
    execution_id: Mapped[str | None] = mapped_column(ids(optional=True), info=FIXED)
    processed_at: Mapped[int] = mapped_column(Millis(optional=False), info=PLACE)


class QueueMessageRow(Base):
    """A message waiting for delivery, or claimed under a visibility lock until ``locked_until``."""

    __tablename__ = "queue_messages"
    __table_args__ = (
        # The claim query's order, so a claim is one index range scan (migration 0002).
        Index("ix_queue_messages_deliver_at_id", "deliver_at", "id"),
        Index("ix_queue_messages_task_id", "task_id"),
        Index("ix_queue_messages_execution_id", "execution_id"),
        Index("ix_queue_messages_stage_id", "stage_id"),
        MYSQL_TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(BoundedText(MESSAGE_ID_LENGTH), unique=True)
    message_type: Mapped[str] = mapped_column(names())
    payload: Mapped[dict[str, Any]]
    #: Epoch ms when the message becomes due; a claim moves it to the end of the lock.
    deliver_at: Mapped[int] = mapped_column(Millis(optional=False))
    locked_until: Mapped[int | None] = mapped_column(Millis())
    attempts: Mapped[int] = mapped_column(Count())
    max_attempts: Mapped[int] = mapped_column(Count())
    execution_id: Mapped[str | None] = mapped_column(ids(optional=True))
    task_id: Mapped[str | None] = mapped_column(ids(optional=True))
    last_error: Mapped[str | None] = mapped_column(BoundedText(optional=True))
    created_at: Mapped[int] = mapped_column(Millis(optional=False))
    #: The stage a stage- or task-level message names, for ``has_pending_message_for_stage``.
    stage_id: Mapped[str | None] = mapped_column(ids(optional=True))


class DeadLetterRow(Base):
    """A message that used up its attempts, kept with its last error until replayed or cleared."""

    __tablename__ = "queue_dead_letters"
    __table_args__ = (Index("ix_queue_dead_letters_failed_at", "failed_at"), MYSQL_TABLE_OPTIONS)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(BoundedText(MESSAGE_ID_LENGTH), unique=True)
    message_type: Mapped[str] = mapped_column(names())
    #: JSON null for a row that held no readable message: then ``raw_payload`` has what it held.
    payload: Mapped[dict[str, Any] | None] = mapped_column(Document(json_null=True), nullable=False)
    attempts: Mapped[int] = mapped_column(Count())
    max_attempts: Mapped[int] = mapped_column(Count())
    execution_id: Mapped[str | None] = mapped_column(ids(optional=True))
    task_id: Mapped[str | None] = mapped_column(ids(optional=True))
    last_error: Mapped[str | None] = mapped_column(BoundedText(optional=True))
    created_at: Mapped[int] = mapped_column(Millis(optional=False))
    failed_at: Mapped[int] = mapped_column(Millis(optional=False))
    raw_payload: Mapped[str | None] = mapped_column(BoundedText(optional=True))


class StageClaimRow(Base):
    """A named claim of a workflow held by one stage: the engine's mutex (``mutex:<key>``) and
    deferred choice (``choice:<group>``); see ``SqlStoreTransaction.acquire_claim``."""

    __tablename__ = "stage_claims"
    __table_args__ = (MYSQL_TABLE_OPTIONS,)

    workflow_id: Mapped[str] = mapped_column(
        ids(), ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True
    )
    claim_key: Mapped[str] = mapped_column(names(), primary_key=True)
    stage_id: Mapped[str] = mapped_column(ids())
    claimed_at: Mapped[int] = mapped_column(Millis(optional=False))


class WorkflowSignalRow(Base):
    """A signal sent to a stage before it was ready for it, kept until the stage consumes it."""

    __tablename__ = "workflow_signals"
    __table_args__ = (
        Index(
            "ix_workflow_signals_workflow_id_stage_ref_id_consumed", "workflow_id", "stage_ref_id", "consumed"
        ),
        MYSQL_TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workflow_id: Mapped[str] = mapped_column(ids(), ForeignKey("workflows.id", ondelete="CASCADE"))
    stage_ref_id: Mapped[str] = mapped_column(BoundedText(REF_LENGTH))
    signal_name: Mapped[str] = mapped_column(names())
    signal_data: Mapped[dict[str, Any]]
    consumed: Mapped[bool] = mapped_column(Flag())
    created_at: Mapped[int] = mapped_column(Millis(optional=False))
    consumed_at: Mapped[int | None] = mapped_column(Millis())


class AdmissionLockRow(Base):
    """One row per admission key (a pipeline config): a transaction that writes it holds the
    row's lock until it ends, so admissions of one key run one at a time on every dialect."""

    __tablename__ = "admission_locks"
    __table_args__ = (MYSQL_TABLE_OPTIONS,)

    lock_key: Mapped[str] = mapped_column(names(), primary_key=True)
    locked_at: Mapped[int] = mapped_column(Millis(optional=False))


def table_of(row: type[Base]) -> Table:
    """The row class's Table (Declarative types ``__table__`` as the wider ``FromClause``)."""
    return cast(Table, row.__table__)


def role(column: Any) -> str | None:
    """A column's role (``KEY``, ``FIXED``, ``STATE``, ``VERSION``, ``PLACE``), None for the queue's."""
    found: str | None = column.info.get("role")
    return found
