"""The one JSON encoding of user values (contexts, outputs, trigger, exception details).

Every dialect stores the same document: the standard types the engine's tasks produce are
encoded one documented way (CONTRACT.md section 7), and anything a database would store
differently, or not at all, is refused with the path of the offending value, before any SQL runs.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any
from uuid import UUID

from stabilize.persistence.errors import ValidationError

#: Deepest nesting stored, counting the document itself: MariaDB's JSON_VALID check (its JSON
#: columns carry one) refuses deeper documents, so every dialect refuses them alike.
MAX_DEPTH = 31
#: Longest integer stored: Python's default ``sys.get_int_max_str_digits()``, beyond which
#: ``json.dumps`` (writing) and ``json.loads`` (reading) raise ValueError on every driver.
MAX_INT_DIGITS = 4300
_INT_BOUND = 10**MAX_INT_DIGITS


class CheckedDocument(dict[str, Any]):
    """A document ``encode_document`` made: plain JSON values only, in new containers that nothing
    else holds, with its JSON ``text`` (what the column stores: its size is checked before any SQL
    runs, and the driver is handed the same text, ``dump_document``). Column types bind it
    without checking it again."""

    __slots__ = ("_text",)

    @property
    def text(self) -> str:
        """The document as its column stores it (``compact_json``), encoded once."""
        try:
            return self._text
        except AttributeError:
            self._text: str = compact_json(self)
            return self._text


def encode_document(value: Any, path: object) -> CheckedDocument:
    """Encode a mapping for a JSON column, or raise ``ValidationError`` naming ``path[...]``.

    ``path`` is the document's place; ``str(path)`` is called only to name a refused value.
    """
    if not isinstance(value, dict):
        raise ValidationError(_render(path), f"must be a dict, got {type(value).__name__}")
    return CheckedDocument(_encode(value, path, 1)) if value else CheckedDocument()


def dump_document(value: object) -> str:
    """The engines' JSON encoder: a checked document's own text, else ``compact_json``."""
    if type(value) is CheckedDocument:
        return value.text
    return compact_json(value)


#: Where a value sits: the document's path, or (where its container sits, its key or index). The
#: path text is built only for an error message; building it for every value cost more than the
#: checks.
Where = Any


def _render(where: Where) -> str:
    parts = []
    while isinstance(where, tuple):
        where, key = where
        parts.append(f"[{key!r}]")
    return str(where) + "".join(reversed(parts))


def _encode(value: Any, where: Where, depth: int) -> Any:
    kind = type(value)
    if kind is str:
        check_text(value, where)
        return value
    if kind is int:
        return _check_int(value, where)
    if kind is bool or value is None:
        return value
    if kind is float:
        return _check_float(value, where)
    if depth > MAX_DEPTH and isinstance(value, dict | list | tuple | set | frozenset):
        raise ValidationError(
            _render(where), f"is nested deeper than {MAX_DEPTH} levels (or contains itself)"
        )
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                problem = f"keys must be strings, got {type(key).__name__}"
                raise ValidationError(_render((where, key)), problem)
            if "\x00" in key or not key.isascii():
                check_text(key, (where, key))
            out[key] = _plain(item, where, key, depth)
        return out
    if isinstance(value, list | tuple):
        return [_plain(item, where, i, depth) for i, item in enumerate(value)]
    if isinstance(value, set | frozenset):
        return [_encode(item, (where, i), depth + 1) for i, item in enumerate(_stable(value))]
    return _encode_standard(value, where, depth)


def _plain(item: Any, where: Where, key: Any, depth: int) -> Any:
    """``_encode`` of a container's item, with the commonest cases (plain text, a small int,
    a bool, None) settled here without building the item's place."""
    kind = type(item)
    if kind is str:
        if "\x00" in item or not item.isascii():
            check_text(item, (where, key))
        return item
    if kind is bool or item is None or (kind is int and -_INT_BOUND < item < _INT_BOUND):
        return item
    return _encode(item, (where, key), depth + 1)


def _stable(items: set[Any] | frozenset[Any]) -> list[Any]:
    """A set's items in sorted order where they sort, so the stored list does not depend on the
    process's hash seed."""
    try:
        return sorted(items)
    except TypeError:
        return list(items)


def _check_int(value: int, path: Where) -> int:
    if -_INT_BOUND < value < _INT_BOUND:
        return value
    raise ValidationError(
        _render(path),
        f"integer with more than {MAX_INT_DIGITS} digits is too long for JSON text (Python's int-to-text "
        "limit, which every driver's JSON encoder and decoder meets); store it as a string",
    )


def _check_float(value: float, path: Where) -> float:
    # Every finite float is stored as Python writes it (the shortest text that reads back as the
    # same float, -0.0 included), and every dialect keeps that text (``types.Document``).
    if not math.isfinite(value):
        raise ValidationError(_render(path), f"{value!r} is not a finite number and has no JSON form")
    return value


def _encode_standard(value: Any, path: Where, depth: int) -> Any:
    """The standard library types the contract gives a string form to."""
    if isinstance(value, Enum):
        return _encode(value.value, path, depth)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, PurePath | UUID):
        text = str(value)
        check_text(text, path)  # a Path may hold NUL, or surrogates from undecodable file names
        return text
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValidationError(_render(path), f"{value!r} is not a finite number and has no JSON form")
        return str(value)
    for base in (bool, int, float, str):  # subclasses of the JSON scalars store as the scalar
        if isinstance(value, base):
            return _encode(base(value), path, depth)
    raise ValidationError(_render(path), f"a {type(value).__name__} cannot be stored as JSON")


def check_text(text: str, path: Where) -> None:
    """Refuse text with a NUL character or a lone surrogate, naming ``path``."""
    if "\x00" in text:
        raise ValidationError(_render(path), "text contains a NUL character, which PostgreSQL cannot store")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(
                _render(path), "text contains a lone surrogate and is not valid Unicode"
            ) from None


#: Built once: ``json.dumps`` with options builds a new encoder per call, which costs more than
#: encoding a small document.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def compact_json(value: object) -> str:
    """JSON as the columns store it: UTF-8 text rather than ``\\u`` escapes (an astral character
    takes 4 bytes, not 12) and no spaces, so documents stay well inside packet and row limits.
    Values reach here already validated: no lone surrogates, no NaN."""
    return _COMPACT.encode(value)


def load_document(text: str | bytes) -> Any:
    """``json.loads`` for JSON columns: text on SQLite and MySQL, UTF-8 bytes from psycopg's
    JSON loader (decoded here: ``json.loads`` would first sniff the bytes' encoding). The
    commonest document, the empty object (outputs, exception details), is returned without
    parsing: a new dict each time, as ``json.loads`` gives."""
    if isinstance(text, bytes):
        text = text.decode()
    if text == "{}":
        return {}
    return json.loads(text)
