"""Core statements compiled once per dialect and run on the driver's cursor: the hot paths' SQL.

Every statement is a SQLAlchemy expression with bound parameters; only the execution is direct.
Why: for the store's and queue's one-row statements, SQLAlchemy's per-call machinery (Session
state, parameter processing, result wrapping, events) cost three to eight times the SQL itself
(``bench/``: 470 us per ``store_stage`` on SQLite, of which the database did 20).

The price is that values must already be what the driver takes. The mapping modules produce
str / int / bool / None; JSON documents are encoded here with ``compact_json``, the one bind type
that needs it (PostgreSQL's compiled SQL casts them with ``::JSONB``). Statements whose parameters
SQLAlchemy would expand at execution time (``IN`` lists) are refused: they stay on Core
connections.

Driver errors become SQLAlchemy's ``DBAPIError`` subclasses (``IntegrityError`` and so on), as on
a Core connection, so ``faults.translated`` and the callers' handlers see one kind of error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement, sqltypes

from stabilize.persistence.sql.values import compact_json, load_document

Params = Mapping[str, Any]

#: Callbacks given the SQL of every statement a ``Cursor`` runs, per dialect (that is, per engine):
#: SQLAlchemy's cursor events never see these statements. For diagnostics and statement counts.
_observers: dict[Dialect, list[Callable[[str], None]]] = {}


@contextmanager
def observed(dialect: Dialect, observer: Callable[[str], None]) -> Iterator[None]:
    """Call ``observer`` with each statement run on ``dialect``'s engine while the block runs."""
    _observers.setdefault(dialect, []).append(observer)
    try:
        yield
    finally:
        _observers[dialect].remove(observer)
        if not _observers[dialect]:
            del _observers[dialect]


def _notify(dialect: Dialect, sql: str) -> None:
    for observer in _observers.get(dialect, ()):
        observer(sql)


@dataclass(frozen=True)
class Compiled:
    """One statement's SQL for one dialect, and how to lay out its parameters."""

    sql: str
    #: Bind names in the order a positional paramstyle (qmark, format) wants them; None when the
    #: driver takes a mapping (pyformat, named).
    positions: tuple[str, ...] | None
    #: Binds that hold a JSON document, encoded to text here.
    documents: frozenset[str]
    #: Positions of result columns that hold a JSON document (text on SQLite and MySQL, decoded
    #: here; PostgreSQL's driver decodes JSONB itself).
    result_documents: tuple[int, ...]
    #: Positions of boolean result columns (SQLite and MySQL return 0 / 1).
    result_booleans: tuple[int, ...]
    #: Values of the statement's own literals (``max(position) + 1``), which SQLAlchemy binds too.
    literals: dict[str, Any]

    def args(self, params: Params) -> tuple[Any, ...] | dict[str, Any]:
        if self.literals:
            params = {**self.literals, **params}
        documents = self.documents
        if self.positions is None:
            named = dict(params)
            for name in documents:
                if name in named:
                    named[name] = _document(named[name])
            return named
        if not documents:
            return tuple([params[name] for name in self.positions])
        return tuple([_document(params[n]) if n in documents else params[n] for n in self.positions])


def _document(value: Any) -> str | None:
    if value is None:
        return None
    if value == {}:  # the commonest document (outputs, exception details), without the encoder
        return "{}"
    return compact_json(value)


class Prepared:
    """A Core statement, compiled the first time each dialect runs it."""

    __slots__ = ("_by_dialect", "statement")

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._by_dialect: dict[Dialect, Compiled] = {}

    def compiled(self, dialect: Dialect) -> Compiled:
        found = self._by_dialect.get(dialect)
        if found is None:
            found = self._by_dialect[dialect] = _compile(self.statement, dialect)
        return found


def _compile(statement: ClauseElement, dialect: Dialect) -> Compiled:
    compiled: Any = statement.compile(dialect=dialect)
    if compiled.literal_execute_params or compiled.post_compile_params:
        raise ValueError(
            f"statement expands parameters at execution time; run it on a Connection: {compiled}"
        )
    documents = frozenset(
        name for name, bind in compiled.binds.items() if isinstance(bind.type, sqltypes.JSON)
    )
    positions = tuple(compiled.positiontup) if compiled.positional else None
    literals = {name: b.effective_value for name, b in compiled.binds.items() if not b.required}
    columns = getattr(statement, "exported_columns", ())
    result_documents = tuple(i for i, c in enumerate(columns) if isinstance(c.type, sqltypes.JSON))
    result_booleans = tuple(i for i, c in enumerate(columns) if isinstance(c.type, sqltypes.Boolean))
    return Compiled(compiled.string, positions, documents, result_documents, result_booleans, literals)


def _decode_column(rows: list[list[Any]], i: int) -> None:
    """Decode column ``i``'s JSON texts (SQLite, MySQL; PostgreSQL's driver decodes JSONB) with
    one parse of them all as an array: per-document ``json.loads`` calls cost more than the
    parsing on a read of many small documents. A text that is not valid JSON is decoded alone,
    raising its own error."""
    at = [row for row in rows if isinstance(row[i], str) and row[i] != "{}"]
    for row in rows:
        if row[i] == "{}":
            row[i] = {}
    if not at:
        return
    try:
        documents = json.loads("[" + ",".join([row[i] for row in at]) + "]")
    except ValueError:
        documents = [load_document(row[i]) for row in at]
    for row, document in zip(at, documents, strict=True):
        row[i] = document


class Cursor:
    """The driver's cursor inside one transaction, running ``Prepared`` statements."""

    __slots__ = ("dbapi_connection", "dialect", "raw")

    def __init__(self, raw: Any, dialect: Dialect, dbapi_connection: Any) -> None:
        self.raw = raw
        self.dialect = dialect
        self.dbapi_connection = dbapi_connection

    @classmethod
    def on(cls, connection: Connection) -> Cursor:
        """A cursor inside a Core connection's transaction (a caller's, or a Session's)."""
        pooled = connection.connection
        return cls(pooled.cursor(), connection.dialect, pooled.dbapi_connection)

    def command(self, sql: str) -> None:
        """Run a fixed command without parameters (``BEGIN IMMEDIATE``)."""
        if _observers:
            _notify(self.dialect, sql)
        try:
            self.raw.execute(sql)
        except self.dialect.loaded_dbapi.Error as error:
            raise self.wrapped(error, sql) from error

    def run(self, prepared: Prepared, params: Params) -> int:
        """Execute; return the rows it matched (UPDATE, DELETE)."""
        compiled = prepared.compiled(self.dialect)
        if _observers:
            _notify(self.dialect, compiled.sql)
        try:
            self.raw.execute(compiled.sql, compiled.args(params))
        except self.dialect.loaded_dbapi.Error as error:
            raise self.wrapped(error, compiled.sql) from error
        return int(self.raw.rowcount)

    def run_many(self, prepared: Prepared, rows: Sequence[Params]) -> int:
        """Execute once per row, in one driver call (batched by every driver used here); return
        the rows matched in all (-1 where the driver cannot tell)."""
        if not rows:
            return 0
        compiled = prepared.compiled(self.dialect)
        if _observers:
            _notify(self.dialect, compiled.sql)
        try:
            self.raw.executemany(compiled.sql, [compiled.args(row) for row in rows])
        except self.dialect.loaded_dbapi.Error as error:
            raise self.wrapped(error, compiled.sql) from error
        return int(self.raw.rowcount)

    def fetch(self, prepared: Prepared, params: Params) -> list[Any]:
        """Execute and return every row as the driver gives it (tuples)."""
        compiled = prepared.compiled(self.dialect)
        if _observers:
            _notify(self.dialect, compiled.sql)
        try:
            self.raw.execute(compiled.sql, compiled.args(params))
            return list(self.raw.fetchall())
        except self.dialect.loaded_dbapi.Error as error:
            raise self.wrapped(error, compiled.sql) from error

    def fetch_rows(self, prepared: Prepared, params: Params) -> list[Any]:
        """Execute and return every row with the values Core would give: JSON documents decoded,
        booleans as bool."""
        rows = self.fetch(prepared, params)
        compiled = prepared.compiled(self.dialect)
        documents, booleans = compiled.result_documents, compiled.result_booleans
        if not rows or not (documents or booleans):
            return rows
        decoded = [list(row) for row in rows]
        for i in documents:
            _decode_column(decoded, i)
        for i in booleans:
            for values in decoded:
                if values[i] is not None:
                    values[i] = bool(values[i])
        return decoded

    def fetch_dicts(self, prepared: Prepared, params: Params) -> list[dict[str, Any]]:
        """``fetch_rows`` as dicts by column name."""
        rows = self.fetch_rows(prepared, params)
        if not rows:
            return []
        names = [d[0] for d in self.raw.description]
        return [dict(zip(names, row, strict=True)) for row in rows]

    def wrapped(self, error: Any, sql: str) -> DBAPIError:
        """The driver's ``error`` as SQLAlchemy's, flagged when it means the connection is lost."""
        lost = bool(self.dialect.is_disconnect(error, self.dbapi_connection, self.raw))
        wrapped = DBAPIError.instance(
            sql,
            None,
            error,
            self.dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=lost,
            dialect=self.dialect,
        )
        assert isinstance(wrapped, DBAPIError)
        return wrapped
