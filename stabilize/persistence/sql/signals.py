"""Signals kept for a stage until it can take them (the engine's persistent triggers).

A persistent signal sent to a stage that is not suspended yet is buffered: a ``workflow_signals``
row (``WorkflowSignalRow``), consumed oldest first when the stage suspends, dropped when the stage
ends. Engines before signal storage kept the buffer in the stage's context instead, under
``_buffered_signals``; ``count_buffered`` and ``strip_buffered`` find and remove what is left of
those.

Statements only: the store's methods check their input and run these in a unit of work each.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, bindparam, delete, false, func, select, update

from stabilize.models.status import WorkflowStatus
from stabilize.persistence.errors import ValidationError
from stabilize.persistence.ids import now_ms
from stabilize.persistence.sql import mapping
from stabilize.persistence.sql.claims import COMPLETE
from stabilize.persistence.sql.dialects import GenericProfile
from stabilize.persistence.sql.dialects.base import RowLimit, rowcount
from stabilize.persistence.sql.rows import StageRow, WorkflowSignalRow, table_of
from stabilize.persistence.sql.types import checker
from stabilize.persistence.sql.values import check_text

SIGNALS = table_of(WorkflowSignalRow)
_C = SIGNALS.c
_STAGES = table_of(StageRow)
#: The stage-context key of the engine's older, in-context signal buffer.
BUFFER_KEY = "_buffered_signals"
_STATUS_NAMES = frozenset(WorkflowStatus.__members__)

# -- the signal table -----------------------------------------------------------------------------


def signal_values(
    execution_id: str, stage_ref_id: str, signal_name: str, signal_data: Any, limit: RowLimit | None
) -> dict[str, Any]:
    """A new, unconsumed signal row, each value checked by its column (``ValidationError`` names
    the argument); ``signal_data`` None is ``{}``."""
    given = {
        "workflow_id": ("execution_id", execution_id),
        "stage_ref_id": ("stage_ref_id", stage_ref_id),
        "signal_name": ("signal_name", signal_name),
        "signal_data": ("signal_data", {} if signal_data is None else signal_data),
    }
    values = {column: checker(_C[column])(value, path) for column, (path, value) in given.items()}
    values.update(consumed=False, created_at=now_ms(), consumed_at=None)
    return mapping.check_size(values, limit, "signal")


def lookup_text(value: object, path: str) -> str:
    """A string to look rows up by: any length (an over-long one matches nothing, as every
    lookup), but a string the databases can compare (``ValidationError`` names ``path``)."""
    if not isinstance(value, str):
        raise ValidationError(path, f"must be a string, got {type(value).__name__}")
    check_text(value, path)
    return value


def insert(connection: Connection, values: dict[str, Any]) -> int:
    """Insert one signal row and return its id, in one statement: ``RETURNING`` where the dialect
    has it, the driver's last row id elsewhere."""
    statement = SIGNALS.insert().values(values)
    if connection.dialect.insert_returning:
        return int(connection.execute(statement.returning(_C.id)).scalar_one())
    key = connection.execute(statement).inserted_primary_key
    if key is None:  # pragma: no cover - an INSERT of one row always has it
        raise RuntimeError("the driver reported no id for the inserted signal")
    return int(key[0])


def of_stage(execution_id: str, stage_ref_id: str) -> ColumnElement[bool]:
    """The unconsumed signals of one stage (the table's index: workflow, stage ref, consumed)."""
    return and_(_C.workflow_id == execution_id, _C.stage_ref_id == stage_ref_id, _C.consumed == false())


def consume(
    connection: Connection, profile: GenericProfile, waiting: ColumnElement[bool]
) -> dict[str, Any] | None:
    """Take the oldest (lowest id) signal matching ``waiting``: mark it consumed and return its
    name and data; None when there is none.

    Two consumers never take one signal, on every dialect, by one path: the pick reads the oldest
    candidate (with ``FOR UPDATE SKIP LOCKED`` where the server has it, so a concurrent consumer
    passes over a row another one holds instead of queueing behind it), and the mark is an update
    conditional on ``consumed`` still being false. A mark that matches nothing lost the row to
    another consumer; the pick then goes on past that row's id, so the loop ends even on a
    database whose plain reads see an older snapshot than its updates (a signal of a lower id
    that commits meanwhile is left for the next call).
    """
    pick = select(_C.id, _C.signal_name, _C.signal_data).where(waiting).order_by(_C.id).limit(1)
    if profile.supports_skip_locked(connection.dialect):
        pick = pick.with_for_update(skip_locked=True)
    passed: int | None = None
    while True:
        row = connection.execute(pick if passed is None else pick.where(_C.id > passed)).first()
        if row is None:
            return None
        mark = (
            update(SIGNALS)
            .where(_C.id == row.id, _C.consumed == false())
            .values(consumed=True, consumed_at=now_ms())
        )
        if rowcount(connection.execute(mark)) == 1:
            return {"signal_name": row.signal_name, "signal_data": row.signal_data or {}}
        passed = row.id


def pending_count(waiting: ColumnElement[bool]) -> Select[int]:
    """How many signals match ``waiting``."""
    return select(func.count()).select_from(SIGNALS).where(waiting)


def discard(connection: Connection, waiting: ColumnElement[bool]) -> int:
    """Delete the signals matching ``waiting``; return how many."""
    return rowcount(connection.execute(delete(SIGNALS).where(waiting)))


# -- the older in-context buffer ------------------------------------------------------------------


def status_scope(only_complete: object, statuses: object) -> list[str] | None:
    """The stage statuses a buffer count or cleanup acts on, by name; None for every stage.

    As the engine scopes it: ``statuses`` (names, or ``WorkflowStatus`` members), when not empty,
    wins; otherwise ``only_complete`` selects the complete statuses, and False selects all.

    Raises:
        ValidationError: ``only_complete`` is not a bool, ``statuses`` is not a list of statuses,
            or names a status that does not exist (a typo would otherwise report a clean zero).
    """
    if only_complete is not True and only_complete is not False:
        raise ValidationError("only_complete", f"must be True or False, got {only_complete!r}")
    if statuses is not None and (isinstance(statuses, str | bytes) or not isinstance(statuses, Collection)):
        raise ValidationError("statuses", f"must be a list of status names, got {statuses!r}")
    if not statuses:
        return list(COMPLETE) if only_complete else None
    names = [s.name if isinstance(s, WorkflowStatus) else s for s in statuses]
    unknown = sorted(repr(n) for n in names if not isinstance(n, str) or n not in _STATUS_NAMES)
    if unknown:
        expected = ", ".join(sorted(_STATUS_NAMES))
        raise ValidationError("statuses", f"unknown status {', '.join(unknown)}; expected one of {expected}")
    return sorted(set(names))


def _buffered(
    profile: GenericProfile, statuses: Sequence[str] | None
) -> tuple[list[ColumnElement[bool]], bool]:
    """The candidate stages' conditions, and whether they test the key in SQL (else only the
    status is tested there, and the caller looks for the key in each context it reads)."""
    where: list[ColumnElement[bool]] = []
    if statuses is not None:
        where.append(_STAGES.c.status.in_(statuses))
    has_key = profile.json_has_key(_STAGES.c.context, BUFFER_KEY)
    if has_key is not None:
        where.append(has_key)
    return where, has_key is not None


def count_buffered(connection: Connection, profile: GenericProfile, statuses: Sequence[str] | None) -> int:
    """How many stage rows (of ``statuses``; None: any) have ``_buffered_signals`` in their context:
    one count where the dialect tests JSON keys, else a read of the candidates' contexts."""
    where, exact = _buffered(profile, statuses)
    if exact:
        return int(connection.execute(select(func.count()).select_from(_STAGES).where(*where)).scalar_one())
    contexts = connection.execute(select(_STAGES.c.context).where(*where)).scalars()
    return sum(1 for context in contexts if BUFFER_KEY in context)


_STRIP = (
    update(_STAGES)
    .where(_STAGES.c.id == bindparam("key_id"))
    .values(context=bindparam("context", type_=_STAGES.c.context.type), version=_STAGES.c.version + 1)
)


def strip_buffered(
    connection: Connection,
    profile: GenericProfile,
    statuses: Sequence[str] | None,
    after: str | None,
    batch: int,
) -> tuple[int, str | None]:
    """Remove ``_buffered_signals`` from the next ``batch`` candidate stages (by id, after
    ``after``): the rows are read under a row lock, the key is removed in Python, and each changed
    row is written back with its version moved on by one.

    The documents are rewritten by the store's own encoder, not by a SQL JSON function: JSON
    functions re-encode the whole document their own way (PostgreSQL's jsonb turns the float 1e16
    into an int), and the contract keeps every value exactly as written.

    Returns:
        How many rows changed, and the id to go on after (None: no candidates are left).
    """
    where, _ = _buffered(profile, statuses)
    if after is not None:
        where.append(_STAGES.c.id > after)
    page = select(_STAGES.c.id, _STAGES.c.context).where(*where).order_by(_STAGES.c.id).limit(batch)
    rows = connection.execute(page.with_for_update()).all()
    encode = checker(_STAGES.c.context)
    changes = [
        {"key_id": stage_id, "context": encode(_without_buffer(context), f"stage {stage_id}.context")}
        for stage_id, context in rows
        if BUFFER_KEY in context
    ]
    if changes:
        connection.execute(_STRIP, changes)
    return len(changes), (rows[-1].id if len(rows) == batch else None)


def _without_buffer(context: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in context.items() if key != BUFFER_KEY}
