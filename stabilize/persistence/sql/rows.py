"""Declarative rows: the schema as typed classes. Columns, keys and indexes only, no behaviour.

Times are epoch milliseconds in BIGINT columns, as in the domain models: one unit everywhere, and
no time-zone conversion that differs between drivers. Statuses are stored by enum member name.
Migrations under ``migrations/versions`` must build exactly this schema; ``alembic check`` in the
test suite fails on any drift.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Constraint names Alembic can find again on every dialect (SQLite batch mode needs names).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: One JSON type for every document column: JSONB on PostgreSQL (indexable, compact), the
#: dialect's JSON elsewhere (TEXT on SQLite, LONGTEXT with a validity check on MariaDB).
JsonDocument = JSON().with_variant(postgresql.JSONB(), "postgresql")

#: The same for an optional document: ``None`` is SQL NULL, not the JSON value null.
NullableJsonDocument = JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")

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

#: MySQL/MariaDB TEXT holds 64 KiB only; the other dialects' TEXT is unbounded.
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JsonDocument, list[Any]: JsonDocument}


class WorkflowRow(Base):
    __tablename__ = "workflows"
    __table_args__ = (
        Index("ix_workflows_application_start_time", "application", "start_time"),
        Index("ix_workflows_pipeline_config_id_start_time", "pipeline_config_id", "start_time"),
        Index("ix_workflows_status_end_time", "status", "end_time"),
        MYSQL_TABLE_OPTIONS,
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    type: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    application: Mapped[str] = mapped_column(String(NAME_LENGTH))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    context: Mapped[dict[str, Any]]
    trigger: Mapped[dict[str, Any]]
    start_time: Mapped[int | None] = mapped_column(BigInteger)
    end_time: Mapped[int | None] = mapped_column(BigInteger)
    start_time_expiry: Mapped[int | None] = mapped_column(BigInteger)
    is_canceled: Mapped[bool] = mapped_column(Boolean)
    canceled_by: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    cancellation_reason: Mapped[str | None] = mapped_column(LongText)
    #: SQL NULL when not paused (not JSON null), so ``paused IS NULL`` finds them.
    paused: Mapped[dict[str, Any] | None] = mapped_column(NullableJsonDocument)
    pipeline_config_id: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    is_limit_concurrent: Mapped[bool] = mapped_column(Boolean)
    max_concurrent_executions: Mapped[int] = mapped_column(Integer)
    keep_waiting_pipelines: Mapped[bool] = mapped_column(Boolean)
    origin: Mapped[str] = mapped_column(String(NAME_LENGTH))
    config_version: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[int] = mapped_column(BigInteger)


class StageRow(Base):
    __tablename__ = "stages"
    __table_args__ = (
        Index("uq_stages_workflow_id_ref_id", "workflow_id", "ref_id", unique=True),
        Index("ix_stages_workflow_id_position", "workflow_id", "position"),
        Index("ix_stages_parent_stage_id", "parent_stage_id"),
        MYSQL_TABLE_OPTIONS,
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("workflows.id", ondelete="CASCADE")
    )
    #: Order of addition within the workflow; ``retrieve`` returns stages in this order.
    position: Mapped[int] = mapped_column(Integer)
    ref_id: Mapped[str] = mapped_column(String(REF_LENGTH))
    type: Mapped[str] = mapped_column(String(NAME_LENGTH))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    context: Mapped[dict[str, Any]]
    outputs: Mapped[dict[str, Any]]
    parent_stage_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    synthetic_stage_owner: Mapped[str | None] = mapped_column(String(STATUS_LENGTH))
    start_time: Mapped[int | None] = mapped_column(BigInteger)
    end_time: Mapped[int | None] = mapped_column(BigInteger)
    start_time_expiry: Mapped[int | None] = mapped_column(BigInteger)
    scheduled_time: Mapped[int | None] = mapped_column(BigInteger)
    version: Mapped[int] = mapped_column(Integer)


class StageEdgeRow(Base):
    """One requisite of a stage: ``ref_id`` waits for ``requisite_ref_id``.

    The DAG as rows, so the ancestor query is a recursive CTE over an indexed table instead of a
    walk over JSON arrays. A requisite may name a ref id that no stage has (yet), so only the
    dependent side has a foreign key.
    """

    __tablename__ = "stage_edges"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workflow_id", "ref_id"],
            ["stages.workflow_id", "stages.ref_id"],
            ondelete="CASCADE",
        ),
        Index("ix_stage_edges_workflow_id_requisite_ref_id", "workflow_id", "requisite_ref_id"),
        MYSQL_TABLE_OPTIONS,
    )

    workflow_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    ref_id: Mapped[str] = mapped_column(String(REF_LENGTH), primary_key=True)
    requisite_ref_id: Mapped[str] = mapped_column(String(REF_LENGTH), primary_key=True)


class TaskRow(Base):
    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_stage_id_position", "stage_id", "position"), MYSQL_TABLE_OPTIONS)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    stage_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("stages.id", ondelete="CASCADE"))
    #: Order within the stage; tasks run in this order.
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    implementing_class: Mapped[str] = mapped_column(String(NAME_LENGTH))
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    start_time: Mapped[int | None] = mapped_column(BigInteger)
    end_time: Mapped[int | None] = mapped_column(BigInteger)
    stage_start: Mapped[bool] = mapped_column(Boolean)
    stage_end: Mapped[bool] = mapped_column(Boolean)
    loop_start: Mapped[bool] = mapped_column(Boolean)
    loop_end: Mapped[bool] = mapped_column(Boolean)
    task_exception_details: Mapped[dict[str, Any]]
    version: Mapped[int] = mapped_column(Integer)


class ProcessedMessageRow(Base):
    """A message whose effects have committed; a redelivered copy is skipped."""

    __tablename__ = "processed_messages"
    __table_args__ = (Index("ix_processed_messages_processed_at", "processed_at"), MYSQL_TABLE_OPTIONS)

    message_id: Mapped[str] = mapped_column(String(MESSAGE_ID_LENGTH), primary_key=True)
    handler_type: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    execution_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    processed_at: Mapped[int] = mapped_column(BigInteger)


class QueueMessageRow(Base):
    """A message waiting for delivery, or claimed under a visibility lock until ``locked_until``."""

    __tablename__ = "queue_messages"
    __table_args__ = (
        # The claim query's order, so a claim is one index range scan (migration 0002).
        Index("ix_queue_messages_deliver_at_id", "deliver_at", "id"),
        Index("ix_queue_messages_task_id", "task_id"),
        Index("ix_queue_messages_execution_id", "execution_id"),
        MYSQL_TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(MESSAGE_ID_LENGTH), unique=True)
    message_type: Mapped[str] = mapped_column(String(NAME_LENGTH))
    payload: Mapped[dict[str, Any]]
    #: Epoch ms when the message becomes due; a claim moves it to the end of the lock.
    deliver_at: Mapped[int] = mapped_column(BigInteger)
    locked_until: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    execution_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    task_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    last_error: Mapped[str | None] = mapped_column(LongText)
    created_at: Mapped[int] = mapped_column(BigInteger)


class DeadLetterRow(Base):
    """A message that used up its attempts, kept with its last error until replayed or cleared."""

    __tablename__ = "queue_dead_letters"
    __table_args__ = (Index("ix_queue_dead_letters_failed_at", "failed_at"), MYSQL_TABLE_OPTIONS)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(MESSAGE_ID_LENGTH), unique=True)
    message_type: Mapped[str] = mapped_column(String(NAME_LENGTH))
    payload: Mapped[dict[str, Any]]
    attempts: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    execution_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    task_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    last_error: Mapped[str | None] = mapped_column(LongText)
    created_at: Mapped[int] = mapped_column(BigInteger)
    failed_at: Mapped[int] = mapped_column(BigInteger)


def table_of(row: type[Base]) -> Table:
    """The row class's Table (Declarative types ``__table__`` as the wider ``FromClause``)."""
    return cast(Table, row.__table__)
