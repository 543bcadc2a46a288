"""A whole step as one statement, where the dialect has data-modifying CTEs (PostgreSQL).

A step of several writes (a compare-and-set, the tasks it rewrites, a message, a processed mark)
costs a round trip per statement plus BEGIN and COMMIT. Here each write is a data-modifying CTE of
one ``SELECT`` (``update().returning().cte()``, ``insert().from_select()``), and the ``SELECT``
reads back how many rows each CTE wrote. Writes that must match a row (a compare-and-set, a
workflow update) are *guards*; every other write is conditional on all guards having matched, so
with at most one guard the statement either writes everything or nothing and may commit by
itself: the whole step is one round trip (``Unit.WRITE_ONE``). With two or more guards it runs in
a transaction, which a failed guard rolls back.

The statement is built once per sequence of shapes (``PartShape``), of at most ``MAX_PARTS``
writes: the parameters differ from step to step, the SQL does not. CTEs are listed, and so
executed, in the transaction's lock order. A write that a CTE cannot express (new rows of a
workflow, a caller's statement), or more writes than ``MAX_PARTS``, leave the step to the ordinary
path, a statement per write in a transaction (``transaction.SqlStoreTransaction``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy import (
    CTE,
    BindParameter,
    Column,
    ColumnElement,
    Select,
    and_,
    bindparam,
    exists,
    func,
    select,
    true,
)

Params = dict[str, Any]

#: The most writes one step statement holds; a step of more runs write by write in a transaction.
#: The statement's SQL grows with each part, and compiling it grows with the square (SQLAlchemy
#: matches every INSERT of it against all the statement's parameters): a fan-out step pushing 100
#: messages took seconds to compile, once per size and process, and even compiled ran slower than
#: its writes one by one. An engine's ordinary step (a compare-and-set with its tasks, a message or
#: two, a processed mark) is well within it.
MAX_PARTS = 8


def bind(prefix: str, column: Column[Any], key: str | None = None) -> BindParameter[Any]:
    """The parameter ``prefix + key`` (default: the column's key), typed by ``column``."""
    return bindparam(prefix + (key or column.key), type_=column.type)


class PartShape(Protocol):
    """What a write's CTEs look like: hashable, and all the statement's SQL depends on. The
    parameters of its CTEs are named ``prefix + column``."""

    @property
    def guarded(self) -> bool:
        """Whether the write has a guard (``guard`` returns a CTE)."""

    def guard(self, prefix: str) -> CTE | None:
        """The write's guard, if it has one: the step stands only if it matches exactly one row."""

    def dependents(self, prefix: str, ready: ColumnElement[bool]) -> list[CTE]:
        """The write's other CTEs, each of which must write only where ``ready`` (true when every
        guard of the step matched)."""


#: Given the row counts of a part's CTEs and the connection (for a follow-up read), raise if the
#: part failed, else return what to do once the step has committed (or None).
Finished = Callable[[Sequence[int], Any], Callable[[], None] | None]


@dataclass
class StepPart:
    """One write of a step: its shape, its parameters (unprefixed) and what to do with the row
    counts of its CTEs once the statement ran."""

    shape: PartShape
    params: Params
    finished: Finished


@dataclass(frozen=True)
class _Statement:
    select: Select[Any]
    #: How many CTEs each part has, in order (the counts come back in this layout).
    layout: tuple[int, ...]


@lru_cache(maxsize=512)
def _statement(shapes: tuple[PartShape, ...]) -> _Statement:
    prefixes = [f"w{i}_" for i in range(len(shapes))]
    own = [shape.guard(prefix) for shape, prefix in zip(shapes, prefixes, strict=True)]
    guards = [guard for guard in own if guard is not None]
    ready = and_(*(exists(select(guard.c[0])) for guard in guards)) if guards else true()
    per_part = [
        ([] if guard is None else [guard]) + shape.dependents(prefix, ready)
        for shape, prefix, guard in zip(shapes, prefixes, own, strict=True)
    ]
    counts = [
        select(func.count()).select_from(cte).scalar_subquery().label(cte.name)
        for ctes in per_part
        for cte in ctes
    ]
    return _Statement(select(*counts), tuple(len(ctes) for ctes in per_part))


def guards(parts: Sequence[StepPart]) -> int:
    """How many guards the step has (at most one: it may commit by itself)."""
    return sum(1 for part in parts if part.shape.guarded)


def run(connection: Any, parts: Sequence[StepPart]) -> list[Callable[[], None]]:
    """Run the step's one statement on ``connection``; each part's ``finished`` sees its counts
    (in lock order, so the first failed guard is the one reported). Returns the after-commit
    actions."""
    statement = _statement(tuple(part.shape for part in parts))
    params: Params = {}
    for i, part in enumerate(parts):
        prefix = f"w{i}_"
        params.update({prefix + key: value for key, value in part.params.items()})
    counts = list(connection.execute(statement.select, params).one())
    actions = []
    start = 0
    for part, size in zip(parts, statement.layout, strict=True):
        action = part.finished(counts[start : start + size], connection)
        start += size
        if action is not None:
            actions.append(action)
    return actions
