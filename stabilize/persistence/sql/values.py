"""The one JSON encoding of user values (contexts, outputs, trigger, exception details).

Every dialect stores the same document: the standard types the engine's tasks produce are
encoded one documented way (CONTRACT.md section 7), and anything a database would store
differently, or not at all, is refused with the path of the offending value, before any SQL runs.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any
from uuid import UUID

from stabilize.errors import ValidationError


def encode_document(value: dict[str, Any], path: str) -> dict[str, Any]:
    """Encode a mapping for a JSON column, or raise ``ValidationError`` naming ``path[...]``."""
    if not isinstance(value, dict):
        raise ValidationError(path, f"must be a dict, got {type(value).__name__}")
    encoded: dict[str, Any] = _encode(value, path)
    return encoded


def _encode(value: Any, path: str) -> Any:
    kind = type(value)
    if kind is str:
        _check_text(value, path)
        return value
    if kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise ValidationError(path, f"{value!r} is not a finite number and has no JSON form")
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(f"{path}[{key!r}]", f"keys must be strings, got {type(key).__name__}")
            _check_text(key, f"{path}[{key!r}]")
            out[key] = _encode(item, f"{path}[{key!r}]")
        return out
    if isinstance(value, list | tuple):
        return [_encode(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, set | frozenset):
        return [_encode(item, f"{path}[{i}]") for i, item in enumerate(value)]
    return _encode_standard(value, path)


def _encode_standard(value: Any, path: str) -> Any:
    """The standard library types the contract gives a string form to."""
    if isinstance(value, Enum):
        return _encode(value.value, path)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, PurePath | UUID):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValidationError(path, f"{value!r} is not a finite number and has no JSON form")
        return str(value)
    for base in (bool, int, float, str):  # subclasses of the JSON scalars store as the scalar
        if isinstance(value, base):
            return _encode(base(value), path)
    raise ValidationError(path, f"a {type(value).__name__} cannot be stored as JSON")


def _check_text(text: str, path: str) -> None:
    if "\x00" in text:
        raise ValidationError(path, "text contains a NUL character, which PostgreSQL cannot store")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(path, "text contains a lone surrogate and is not valid Unicode") from None
