"""Fuzzed values through ``store`` / ``retrieve`` / ``store_stage`` on every dialect (issue #6).

Hypothesis builds workflows whose JSON documents (contexts, outputs, trigger, pause details, task
exception details) and text columns (ids, names, ref ids) hold: text from every Unicode plane,
astral characters, lone surrogates and NUL; nesting near and beyond the depth limit; strings of
about a million characters and long lists; integers far beyond 64 bits; floats from subnormal to
huge, -0.0, NaN and infinities; the standard types of CONTRACT.md section 7; and values nothing
may store (arbitrary objects, bytes, complex numbers, non-string keys).

The oracle below is written from the contract, not from ``stabilize.persistence.sql.values``:
every value either comes back exactly in the contract's encoding (types included: an int is not
a float is not a bool), or the write is refused with a ``ValidationError`` whose path names one
of the offending values, and the database is as it was (no row of the workflow; for
``store_stage``, the stage and task rows unchanged).

Encoding (CONTRACT.md section 7): datetime, date and time as ISO 8601 strings; ``Path``, ``UUID``
and ``Decimal`` as strings; an ``Enum`` as its value; sets and tuples as lists. Refused: an
arbitrary object, NaN or infinity, a string with a NUL character. Limits every dialect shares
(so no dialect stores a value differently from another):
- text must be valid Unicode (no lone surrogate), wherever it comes from (a key, a ``Path``);
- documents nest at most ``MAX_DEPTH`` containers deep, counting the document itself;
- floats are finite; every one comes back as the same float (-0.0, 5e-324 and 1e300 included);
- integers have at most ``INT_DIGITS`` digits (Python's own int-to-text limit, which every
  driver's JSON encoder and decoder hits);
- text columns hold at most their length in characters (26 for ids, 255 for names and ref ids).

The ``store`` fixture empties the database once per test, not per example: every example works
on workflows with fresh ids and only inspects those.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum, IntEnum
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, Table, column, func, insert, select, table

from stabilize.errors import ValidationError
from stabilize.models import StageExecution, TaskExecution, Trigger, Workflow
from stabilize.models.ids import new_id
from stabilize.models.workflow import PausedDetails
from stabilize.persistence.sql.rows import Base, StageRow, TaskRow, WorkflowRow
from stabilize.persistence.sql.store import SqlWorkflowStore

MAX_DEPTH = 31
INT_DIGITS = 4300
INT_BOUND = 10**INT_DIGITS
ID_LIMIT = 26
NAME_LIMIT = 255
#: Examples per dialect and test; the module runs in well under a minute over the four dialects.
#: STABILIZE_FUZZ_EXAMPLES asks for a longer hunt.
EXAMPLES = int(os.environ.get("STABILIZE_FUZZ_EXAMPLES", "40"))

NOT_FINITE = "not a finite number"
NO_JSON = "cannot be stored as JSON"
NUL = "NUL"
SURROGATE = "surrogate"


# -- the oracle: the contract's encoding, and what it refuses -------------------------------------


@dataclass(frozen=True)
class SetOf:
    """An encoded set: a list of these items in any order."""

    items: tuple[Any, ...]


@dataclass
class Expectation:
    """What the contract says about one write: the offending paths (and the problem each
    message must name), or else the encoded documents and columns to read back."""

    bad: dict[str, str] = field(default_factory=dict)
    documents: list[tuple[str, Callable[[Any], Any], Any]] = field(default_factory=list)
    columns: list[tuple[str, Callable[[Any], Any], Any]] = field(default_factory=list)

    def document(self, path: str, value: Any, read: Callable[[Any], Any]) -> None:
        self.documents.append((path, read, encode(value, path, 1, self.bad)))

    def column(self, path: str, value: Any, limit: int | None, read: Callable[[Any], Any]) -> None:
        problems = []
        if limit is not None and len(value) > limit:
            problems.append(f"is {len(value)} characters long, the limit is {limit}")
        problems += [p for p in [text_problem(value)] if p]
        if problems:
            self.bad[path] = "|".join(problems)
        self.columns.append((path, read, value))


def text_problem(text: str) -> str | None:
    if "\x00" in text:
        return NUL
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return SURROGATE
    return None


def encode(value: Any, path: str, depth: int, bad: dict[str, str]) -> Any:
    """The contract's encoding of ``value`` at ``path``; offending values go into ``bad``."""
    if isinstance(value, Enum):
        return encode(value.value, path, depth, bad)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        number = int(value)
        if abs(number) >= INT_BOUND:
            bad[path] = "digits"
        return number
    if isinstance(value, float):
        real = float(value)
        if not math.isfinite(real):
            bad[path] = NOT_FINITE
        return real
    if isinstance(value, str | PurePath):
        text = str(value)
        problem = text_problem(text)
        if problem:
            bad[path] = problem
        return text
    if isinstance(value, dict | list | tuple | set | frozenset) and depth > MAX_DEPTH:
        bad[path] = f"nested deeper than {MAX_DEPTH} levels"
        return None
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item_path = f"{path}[{key!r}]"
            if not isinstance(key, str):
                bad[item_path] = "keys must be strings"
            elif problem := text_problem(key):
                bad[item_path] = problem
            else:
                out[key] = encode(item, item_path, depth + 1, bad)
        return out
    if isinstance(value, list | tuple):
        return [encode(item, f"{path}[{i}]", depth + 1, bad) for i, item in enumerate(value)]
    if isinstance(value, set | frozenset):
        # Only valid items are generated inside sets: an item's index in the stored list is not
        # part of the contract, so neither is the path of a bad one.
        return SetOf(tuple(encode(item, f"{path}[?]", depth + 1, bad) for item in value))
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            bad[path] = NOT_FINITE
        return str(value)
    bad[path] = NO_JSON
    return None


def difference(actual: Any, expected: Any, path: str) -> str | None:
    """Where ``actual`` differs from ``expected`` in value or JSON type, or None."""
    if isinstance(expected, SetOf):
        if not isinstance(actual, list):
            return f"{path}: a set must come back as a list, got {type(actual).__name__}"
        typed = Counter((type(item), item) for item in actual)
        if typed != Counter((type(item), item) for item in expected.items):
            return f"{path}: set items {actual!r} != {expected.items!r}"
        return None
    if type(actual) is not type(expected):
        kinds = f"{type(actual).__name__} != {type(expected).__name__}"
        return f"{path}: {kinds}: {_short(actual)} != {_short(expected)}"
    if isinstance(expected, dict):
        if set(actual) != set(expected):
            return f"{path}: keys {sorted(map(repr, actual))} != {sorted(map(repr, expected))}"
        for key in expected:
            found = difference(actual[key], expected[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(expected, list):
        if len(actual) != len(expected):
            return f"{path}: {len(actual)} items != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            found = difference(a, e, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(expected, float) and math.copysign(1, actual) != math.copysign(1, expected):
        return f"{path}: {actual!r} != {expected!r} (sign)"
    if actual != expected:
        return f"{path}: {_short(actual)} != {_short(expected)}"
    return None


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 200 else f"{shown[:100]}...({len(shown)} chars)...{shown[-60:]}"


# -- values ------------------------------------------------------------------------------------------


class Color(Enum):
    RED = "red"
    PAIR = (1, "two")


class Level(IntEnum):
    HIGH = 3


class Strange(Enum):
    """An Enum whose value is itself unstorable."""

    OBJECT = complex(1, 2)


class Tag(str):
    pass


class Count(int):
    pass


class Huge(int):
    """An int too long for ``repr`` (Python's int-to-text limit) that can still be shown."""

    def __repr__(self) -> str:
        return f"Huge(<{'-' if self < 0 else ''}{math.floor(math.log10(abs(self))) + 1} digits>)"


class Opaque:
    def __repr__(self) -> str:
        return "Opaque()"


#: Characters worth a dedicated draw: astral planes 1, 2, 14, 16, separators, BOM, noncharacters,
#: JSON's escapes.
SPECIAL = ["\U0001f680", "\U00010000", "\U0010ffff", "\U000e0001", "\U00020000", "\u2028", "\u2029"]
SPECIAL += ["\ufeff", "\uffff", "\ufffe", "é", "\t", "\n", '"', "\\", "'", " ", "\x7f", "\x01", "€"]
BAD_CHARS = ["\x00", "\ud800", "\udbff", "\udc00", "\udfff"]

clean_chars = st.one_of(st.characters(codec="utf-8", exclude_characters="\x00"), st.sampled_from(SPECIAL))
any_chars = st.one_of(
    clean_chars, st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), st.sampled_from(BAD_CHARS)
)
clean_text = st.text(clean_chars, max_size=12)
#: Text with at least one NUL or lone surrogate, anywhere in it.
dirty_text: st.SearchStrategy[str] = st.builds(
    lambda head, bad, tail: head + bad + tail,
    st.text(clean_chars, max_size=3),
    st.sampled_from(BAD_CHARS) | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.text(any_chars, max_size=3),
)


def _huge(char: str, size: int) -> str:
    return (char * (size // len(char) + 1))[:size]


#: About a million characters (up to 12 bytes each once JSON-escaped).
huge_text: st.SearchStrategy[str] = st.builds(
    _huge,
    st.sampled_from(["a", "é", "€", "\U0001f680", "\U0010ffff", 'ab\u2028"\\']),
    st.integers(900_000, 1_100_000),
)
timezones = st.none() | st.builds(
    dt.timezone,
    st.timedeltas(
        min_value=dt.timedelta(hours=-23, minutes=-59), max_value=dt.timedelta(hours=23, minutes=59)
    ),
)
BIG_INTS = [
    2**63,
    -(2**63) - 1,
    2**64,
    -(2**64),
    2**128 + 1,
    -(2**200),
    10**INT_DIGITS - 1,
    -(10**INT_DIGITS) + 1,
]
EDGE_FLOATS = [-0.0, 0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300, 1e-7, 0.1, 1 / 3, 1.5e15]
EDGE_FLOATS += [9.999999999999998e15, -9.999999999999998e15, 123456789.123456789, 1e16, 6.02214076e23]
EDGE_FLOATS += [1e300, -1.7976931348623157e308, 2.0**53, 1e22]

clean_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(BIG_INTS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(EDGE_FLOATS),
    clean_text,
    clean_text,
    st.datetimes(timezones=timezones),
    st.dates(),
    st.times(timezones=timezones),
    st.builds(PurePosixPath, clean_text),
    st.builds(Path, clean_text),
    st.builds(PureWindowsPath, clean_text),
    st.uuids(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.sampled_from([Color.RED, Color.PAIR, Level.HIGH]),
    st.builds(Tag, clean_text),
    st.builds(Count, st.integers()),
    st.sets(st.integers(), max_size=5),
    st.frozensets(st.text(clean_chars, max_size=4), max_size=4),
    st.sets(st.one_of(st.integers(-3, 3), st.text(clean_chars, max_size=2)), max_size=4),
)
refused_scalars = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.decimals(),  # NaN, sNaN, Infinity among them
    st.sampled_from([Huge(10**INT_DIGITS), Huge(-(10**5000))]),
    dirty_text,
    st.builds(PurePosixPath, dirty_text),
    st.builds(Tag, dirty_text),
    st.builds(Opaque),
    st.binary(max_size=4),
    st.complex_numbers(max_magnitude=10),
    st.just(Strange.OBJECT),
)
clean_keys = st.text(clean_chars, max_size=8)
refused_keys = st.one_of(
    dirty_text, st.integers(-5, 5), st.none(), st.tuples(st.integers(0, 3)), st.booleans(), st.floats(0, 1)
)


def nested(depth: int, leaf: Any, shape: str) -> Any:
    """``leaf`` inside ``depth`` containers."""
    for level in range(depth):
        use_dict = shape == "dict" or (shape == "mixed" and level % 2 == 0)
        leaf = {"k": leaf} if use_dict else [leaf]
    return leaf


def containers(children: st.SearchStrategy[Any], keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(keys, children, max_size=4),
    )


clean_values = st.recursive(clean_scalars, lambda c: containers(c, clean_keys), max_leaves=6)
any_values = st.recursive(
    st.one_of(clean_scalars, refused_scalars),
    lambda c: containers(c, st.one_of(clean_keys, clean_keys, refused_keys)),
    max_leaves=6,
)


def deep_values(low: int, high: int) -> st.SearchStrategy[Any]:
    """A chain of ``low`` to ``high`` containers around a scalar. Under a top-level key its
    containers are levels 2 .. n + 1 (the document is level 1): a chain of MAX_DEPTH is refused."""
    leaves = st.one_of(
        st.none(), st.integers(), st.floats(-1.0, 1.0), clean_text, st.dates(), st.just(Color.RED)
    )
    return st.builds(nested, st.integers(low, high), leaves, st.sampled_from(["dict", "list", "mixed"]))


#: Long lists of small items: 20,000 copies of a 4,300-digit integer would be 86 MB of JSON, over
#: what one row may hold on MariaDB here (max_allowed_packet), and refused for it; that refusal is
#: ``test_bad_input``'s to prove, this module's documents all fit.
short_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**18), 10**18), clean_text, st.floats(-1, 1)
)
long_lists = st.builds(lambda item, n: [item] * n, short_scalars, st.integers(1_000, 20_000)) | st.builds(
    lambda n: list(range(-n, n)), st.integers(1_000, 10_000)
)


@st.composite
def storable_documents(draw: st.DrawFn, *, huge: bool) -> dict[str, Any]:
    """A mapping the contract stores: plain, nested up to the limit, long lists, or (when
    ``huge``) a string of about a million characters."""
    kind = draw(st.sampled_from(["plain", "plain", "deep", "long", "huge", "empty"]))
    doc: dict[str, Any] = draw(st.dictionaries(clean_keys, clean_values, max_size=4))
    if kind == "deep":
        doc["deep"] = draw(deep_values(MAX_DEPTH - 4, MAX_DEPTH - 1))
    elif kind == "long":
        doc["long"] = draw(long_lists)
    elif kind == "huge" and huge:
        doc["huge"] = draw(huge_text)
    elif kind == "empty":
        doc = {}
    return doc


@st.composite
def faulty_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A mapping with (most likely) something refused in it, somewhere."""
    kind = draw(st.sampled_from(["value", "key", "deep", "wild"]))
    if kind == "wild":  # anything anywhere: possibly several faults, possibly none
        return draw(st.dictionaries(st.one_of(clean_keys, refused_keys), any_values, min_size=1, max_size=4))
    doc: dict[str, Any] = draw(st.dictionaries(clean_keys, clean_values, max_size=3))
    if kind == "deep":
        fault: Any = draw(deep_values(MAX_DEPTH, MAX_DEPTH + 3))
    elif kind == "key":
        fault = {draw(refused_keys): draw(clean_scalars)}
    else:
        fault = draw(refused_scalars)
    # Hidden a few containers down, or at the top.
    for shape in draw(st.lists(st.sampled_from(["list", "tuple", "dict"]), max_size=3)):
        fault = [fault] if shape == "list" else (None, fault) if shape == "tuple" else {"in": fault}
    doc[draw(clean_keys)] = fault
    return doc


class Fuzz:
    """Draws the values of one example. Each place a value goes (a column, a document) is a
    *slot*; an example is clean (no slot faulty), has one faulty slot, or many."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.mode = data.draw(st.sampled_from(["clean", "one", "clean", "one", "many"]), label="mode")
        self.target = data.draw(st.integers(0, 24), label="faulty slot")
        self.slots = 0
        # At most one huge value, in about one example in four.
        self.huge_left = data.draw(st.integers(0, 3), label="huge") == 3

    def faulty(self) -> bool:
        self.slots += 1
        if self.mode == "clean":
            return False
        if self.mode == "one":
            return self.slots - 1 == self.target
        return self.data.draw(st.integers(0, 3)) == 0

    def document(self) -> dict[str, Any]:
        if self.faulty():
            return self.data.draw(faulty_documents())
        made = self.data.draw(storable_documents(huge=self.huge_left))
        # One huge value per example: several would make one statement bigger than MariaDB's
        # default max_allowed_packet (16 MiB), a server setting rather than a value's problem.
        self.huge_left = self.huge_left and "huge" not in made
        return made

    def text(self, limit: int | None) -> str:
        """Text for a column: short or up to ``limit`` characters; if faulty, longer or bad."""
        if self.faulty():
            over = limit is not None and self.data.draw(st.booleans())
            if over:
                assert limit is not None
                return self.data.draw(st.text(clean_chars, max_size=3)) + "x" * (limit + 1)
            return self.data.draw(dirty_text)
        if limit is None and self.huge_left and self.data.draw(st.integers(0, 5)) == 5:
            self.huge_left = False
            return self.data.draw(huge_text)
        near = st.builds(
            lambda char, n, tail: (char * n + tail)[:limit],
            clean_chars,
            st.integers(max(0, (limit or 300) - 6), limit or 300),
            st.text(clean_chars, max_size=3),
        )
        return self.data.draw(st.one_of(st.text(clean_chars, max_size=16), near))

    def id(self) -> str:
        """A ULID, or a unique id with any text at its end; if faulty, over-long or bad."""
        unique = new_id()
        if self.faulty():
            return unique + self.data.draw(st.text(clean_chars, min_size=1, max_size=6) | dirty_text)
        if self.data.draw(st.booleans()):
            return unique
        return unique[:10] + unique[-10:] + self.data.draw(st.text(clean_chars, max_size=6))


# -- building workflows and their expectations ------------------------------------------------------


def draw_workflow(fuzz: Fuzz, expect: Expectation) -> Workflow:
    wf = Workflow.create(fuzz.text(NAME_LIMIT), fuzz.text(NAME_LIMIT), [])
    wf.id = fuzz.id()
    expect.column("workflow.id", wf.id, ID_LIMIT, lambda w: w.id)
    expect.column("workflow.application", wf.application, NAME_LIMIT, lambda w: w.application)
    expect.column("workflow.name", wf.name, NAME_LIMIT, lambda w: w.name)
    wf.cancellation_reason = fuzz.text(None)
    expect.column(
        "workflow.cancellation_reason", wf.cancellation_reason, None, lambda w: w.cancellation_reason
    )

    wf.context = fuzz.document()
    expect.document("workflow.context", wf.context, lambda w: w.context)
    wf.trigger = Trigger(type=fuzz.text(None), parameters=fuzz.document(), payload=fuzz.document())
    wf.trigger.artifacts = [fuzz.document() for _ in range(fuzz.data.draw(st.integers(0, 1)))]
    expect.document("workflow.trigger", wf.trigger.to_dict(), lambda w: w.trigger.to_dict())
    if fuzz.data.draw(st.booleans()):
        wf.paused = PausedDetails(paused_by=fuzz.text(None), pause_time=1_700_000_000_000)
        expect.document("workflow.paused", vars(wf.paused), lambda w: vars(w.paused))

    for position in range(fuzz.data.draw(st.integers(1, 2))):
        # A ref id unique within the workflow whatever is drawn (and maybe over-long or bad).
        ref_id = fuzz.text(NAME_LIMIT - 2) + f"#{position}"
        stage = StageExecution.create(fuzz.text(NAME_LIMIT), fuzz.text(NAME_LIMIT), ref_id)
        stage.id = fuzz.id()
        p = f"stages[{position}]"
        if position and fuzz.data.draw(st.booleans()):
            requisite = wf.stages[position - 1].ref_id
            stage.requisite_stage_ref_ids = {requisite}
            if len(requisite) > NAME_LIMIT or text_problem(requisite):
                expect.bad[f"{p}.requisite_stage_ref_ids.requisite_ref_id"] = ".*"
        stage.context, stage.outputs = fuzz.document(), fuzz.document()
        wf.add_stage(stage)
        for name in ("id", "ref_id", "type", "name"):
            limit = ID_LIMIT if name == "id" else NAME_LIMIT
            expect.column(f"{p}.{name}", getattr(stage, name), limit, attribute(f"stages.{position}.{name}"))
        for name in ("context", "outputs"):
            expect.document(f"{p}.{name}", getattr(stage, name), attribute(f"stages.{position}.{name}"))
        for k in range(fuzz.data.draw(st.integers(0, 2))):
            stage.add_task(draw_task(fuzz, expect, f"{p}.tasks[{k}]", f"stages.{position}.tasks.{k}"))
    return wf


def draw_task(fuzz: Fuzz, expect: Expectation, path: str, where: str) -> TaskExecution:
    """A new task at ``path``; ``where`` finds it again in what is read back (see ``attribute``)."""
    task = TaskExecution.create(fuzz.text(NAME_LIMIT), fuzz.text(NAME_LIMIT))
    task.id = fuzz.id()
    task.task_exception_details = fuzz.document()
    for name in ("id", "name", "implementing_class"):
        limit = ID_LIMIT if name == "id" else NAME_LIMIT
        expect.column(f"{path}.{name}", getattr(task, name), limit, attribute(f"{where}.{name}"))
    expect.document(
        f"{path}.task_exception_details",
        task.task_exception_details,
        attribute(f"{where}.task_exception_details"),
    )
    return task


def attribute(where: str) -> Callable[[Any], Any]:
    """A reader of ``where``, a dotted path of attributes and list indexes: ``stages.0.tasks.1.name``."""

    def read(obj: Any) -> Any:
        for step in where.split("."):
            obj = obj[int(step)] if step.isdigit() else getattr(obj, step)
        return obj

    return read


def assert_refused(error: ValidationError, expect: Expectation) -> None:
    assert error.path in expect.bad, (
        f"refused at {error.path!r}, which is fine; offending paths: {sorted(expect.bad)}"
    )
    message = str(error)
    assert message.startswith(f"{error.path}: "), message
    problem = expect.bad[error.path]
    assert problem == ".*" or any(p in message for p in problem.split("|")), (message, problem)


def assert_read_back(loaded: Any, expect: Expectation) -> None:
    for path, read, value in expect.columns:
        assert read(loaded) == value, f"{path}: {_short(read(loaded))} != {_short(value)}"
    for path, read, encoded in expect.documents:
        found = difference(read(loaded), encoded, path)
        assert found is None, found


def rows_of_stage(engine: Engine, stage_id: str) -> tuple[list[str], list[str]]:
    stages: Table = StageRow.__table__  # type: ignore[assignment]
    tasks: Table = TaskRow.__table__  # type: ignore[assignment]
    with engine.connect() as connection:
        stage_rows = [
            repr(tuple(r)) for r in connection.execute(select(stages).where(stages.c.id == stage_id))
        ]
        task_rows = sorted(
            repr(tuple(r)) for r in connection.execute(select(tasks).where(tasks.c.stage_id == stage_id))
        )
    return stage_rows, task_rows


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows per table: a refused write must leave every count as it was (the workflow's own id
    may be text no query can carry)."""
    with engine.connect() as connection:
        return {
            t.name: int(connection.execute(select(func.count()).select_from(t)).scalar_one())
            for t in Base.metadata.sorted_tables
        }


#: Examples per dialect and how they ended, shown at the end of the module's run.
TALLY: dict[str, Counter[str]] = {}


class TallyReport:
    """A plugin that prints ``TALLY`` in the terminal summary (of a run without xdist workers;
    ``--hypothesis-show-statistics`` works under xdist too)."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.section("fuzzed values: examples per dialect")
        for dialect, counts in sorted(TALLY.items()):
            shown = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
            terminalreporter.write_line(f"{dialect:14} {sum(counts.values())} examples: {shown}")


@pytest.fixture(scope="module", autouse=True)
def report_tally(request: pytest.FixtureRequest) -> None:
    plugins = request.config.pluginmanager
    if not plugins.has_plugin("stabilize-fuzz-tally"):
        plugins.register(TallyReport(), "stabilize-fuzz-tally")


# -- the properties ------------------------------------------------------------------------------


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


@FUZZ_SETTINGS
@given(data=st.data())
def test_store_and_retrieve_fuzzed_workflows(
    dialect: str, store: SqlWorkflowStore, data: st.DataObject
) -> None:
    expect = Expectation()
    wf = draw_workflow(Fuzz(data), expect)
    tally = TALLY.setdefault(dialect, Counter())
    before = table_counts(store.engine)

    if expect.bad:
        with pytest.raises(ValidationError) as caught:
            store.store(wf)
        assert_refused(caught.value, expect)
        assert table_counts(store.engine) == before
        tally["store refused"] += 1
        return

    store.store(wf)
    assert_read_back(store.retrieve(wf.id), expect)
    tally["store round-tripped"] += 1


@FUZZ_SETTINGS
@given(data=st.data())
def test_store_stage_with_fuzzed_values(dialect: str, store: SqlWorkflowStore, data: st.DataObject) -> None:
    stage = StageExecution.create("t", "stage", "s")
    stage.add_task(TaskExecution.create("first", "tasks.First"))
    wf = Workflow.create("fuzz", "base", [stage])
    store.store(wf)
    before = rows_of_stage(store.engine, stage.id)
    tally = TALLY.setdefault(dialect, Counter())

    fuzz = Fuzz(data)
    expect = Expectation()
    stage.context, stage.outputs = fuzz.document(), fuzz.document()
    expect.document("stage.context", stage.context, lambda s: s.context)
    expect.document("stage.outputs", stage.outputs, lambda s: s.outputs)
    first = stage.tasks[0]
    first.task_exception_details = fuzz.document()
    first.name = fuzz.text(NAME_LIMIT)
    expect.document(
        "stage.tasks[0].task_exception_details",
        first.task_exception_details,
        attribute("tasks.0.task_exception_details"),
    )
    expect.column("stage.tasks[0].name", first.name, NAME_LIMIT, attribute("tasks.0.name"))
    if data.draw(st.booleans()):  # a task added since the stage was stored
        stage.add_task(draw_task(fuzz, expect, "stage.tasks[1]", "tasks.1"))

    if expect.bad:
        with pytest.raises(ValidationError) as caught:
            store.store_stage(stage)
        assert_refused(caught.value, expect)
        assert rows_of_stage(store.engine, stage.id) == before
        assert stage.version == 0
        tally["store_stage refused"] += 1
        return

    store.store_stage(stage)
    assert stage.version == 1
    loaded = store.retrieve_stage(stage.id)
    assert loaded.version == 1
    assert_read_back(loaded, expect)
    tally["store_stage round-tripped"] += 1


# -- the servers' own guard: over-long text is an error, never cut ------------------------------------


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"])
@pytest.mark.parametrize(("field", "length"), [("id", ID_LIMIT + 1), ("name", NAME_LIMIT + 1)])
def test_the_server_refuses_over_long_text_itself(store: SqlWorkflowStore, field: str, length: int) -> None:
    """Below the library's check, the column itself refuses (MariaDB in strict mode, as every
    connection sets it): nothing is ever truncated silently, even by a raw INSERT."""
    from sqlalchemy.exc import DataError, OperationalError

    values = {
        "id": new_id(),
        "type": "PIPELINE",
        "application": "app",
        "name": "wf",
        "status": "NOT_STARTED",
        "context": {},
        "trigger": {},
        "is_canceled": False,
        "is_limit_concurrent": False,
        "max_concurrent_executions": 0,
        "keep_waiting_pipelines": False,
        "origin": "unknown",
        "created_at": 0,
    }
    values[field] = "\U0001f680" * length  # characters, not bytes: 4 bytes each in UTF-8
    # Plain columns, without the row class's checking types: what the server itself does.
    raw = table("workflows", *(column(key) for key in values))
    with pytest.raises((DataError, OperationalError)), store.engine.begin() as connection:
        connection.execute(insert(raw), [{**values, "context": "{}", "trigger": "{}"}])
    with store.engine.connect() as connection:
        assert connection.execute(select(WorkflowRow.id)).all() == []
