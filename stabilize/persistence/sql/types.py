"""Column types that carry the contract: each checks and encodes its values, the same on every dialect.

One ``TypeDecorator`` per idea (advanced-alchemy's ``types/``), each ``cache_ok``. A type refuses a
value the databases would store differently, or not at all, with a ``ValidationError`` naming the
value's place. The codec (``mapping``) calls ``coerce(value, path)`` on every field when a call is
made, so a bad value fails the call with its full path (``stages[1].context['when']``) before any
SQL runs; ``process_bind_param`` applies the same check to a value bound to a statement directly,
where the column's type is all that is known of its place.

``path`` is anything ``str()`` turns into the value's place; the codec passes the field's name and
puts the object's place in front when a value is refused, so no path is built for a valid value.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, Generic, TypeVar

from sqlalchemy import JSON, BigInteger, Boolean, Dialect, Integer, LargeBinary, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator, TypeEngine

from stabilize.persistence.errors import ValidationError
from stabilize.persistence.sql.dialects import profile_for
from stabilize.persistence.sql.values import CheckedDocument, check_text, encode_document

E = TypeVar("E", bound=Enum)

_INT64 = (-(2**63), 2**63 - 1)
_INT32 = (-(2**31), 2**31 - 1)


class Checked(TypeDecorator[Any]):
    """A type whose values are checked by ``coerce``; bound values are checked the same way."""

    impl: TypeEngine[Any] | type[TypeEngine[Any]] = String
    cache_ok = True
    #: The place named for a value bound to a statement directly (no codec, so no path).
    bound_path = "a bound value"

    def coerce(self, value: Any, path: object) -> Any:
        """The value as its column stores it, or ``ValidationError`` naming ``path``."""
        raise NotImplementedError

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Check a value bound to a statement directly with ``coerce``, named ``bound_path``; None is NULL."""
        return None if value is None else self.coerce(value, self.bound_path)


class BoundedText(Checked):
    """Text of at most ``length`` characters (None: unbounded, LONGTEXT on MySQL), valid Unicode
    without NUL: PostgreSQL refuses NUL, SQLite does not enforce lengths, MySQL may truncate.

    A value bound to a statement directly is checked for its characters only, not its length: a
    lookup of an over-long id is a miss on every dialect, not an error, and writes of the store's
    own go through ``coerce``, which checks the length too.
    """

    cache_ok = True

    def __init__(self, length: int | None = None, *, optional: bool = False) -> None:
        """A text column of ``length`` characters.

        Args:
            length: the most characters a value may have; None for unbounded text.
            optional: whether None is a valid value (stored as NULL) for ``coerce``.
        """
        super().__init__(length)
        self.length = length
        self.optional = optional

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """``VARCHAR(length)``; unbounded text is ``LONGTEXT`` on MySQL and MariaDB (whose ``TEXT``
        holds only 64 KiB) and ``TEXT`` elsewhere.
        """
        if self.length is None:
            return mysql.LONGTEXT() if dialect.name in _MYSQL else Text()
        return String(self.length)

    def coerce(self, value: Any, path: object) -> str | None:
        """The text to store (a ``str`` subclass becomes a plain ``str``); None where optional.

        Raises:
            ValidationError: naming ``path``, for a value that is not a string, holds a NUL or a lone
                surrogate, or is longer than ``length``.
        """
        if value is None and self.optional:
            return None
        text = _text(value, path)
        if self.length is not None and len(text) > self.length:
            raise ValidationError(str(path), f"is {len(text)} characters long, the limit is {self.length}")
        return text

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        """Check a directly bound value's characters only; its length is not checked (see the class)."""
        return None if value is None else _text(value, self.bound_path)

    @property
    def python_type(self) -> type[str]:
        """Values are ``str``."""
        return str


def _text(value: Any, path: object) -> str:
    if type(value) is not str:
        if not isinstance(value, str):
            raise ValidationError(str(path), f"must be a string, got {type(value).__name__}")
        value = str(value)
    if "\x00" in value or not value.isascii():
        check_text(value, path)
    text: str = value
    return text


class EnumName(Checked, Generic[E]):
    """An enum member, stored by its name (``WorkflowStatus.RUNNING`` -> ``'RUNNING'``): member
    values may be tuples, and names are what an operator reads in the table."""

    cache_ok = True

    def __init__(self, enum: type[E], *, optional: bool = False, length: int = 32) -> None:
        """A column of the names of ``enum``'s members.

        Args:
            enum: the enum class whose members the column holds.
            optional: whether None is a valid value (stored as NULL) for ``coerce``.
            length: the column's width in characters; the longest member name must fit.
        """
        super().__init__(length)
        self.enum = enum
        self.optional = optional
        self._members = enum.__members__

    def coerce(self, value: Any, path: object) -> str | None:
        """The member's name; None where optional.

        Raises:
            ValidationError: naming ``path``, for anything but a member of ``enum`` (a member of
                another enum with the same name, a name given as a string, None unless optional).
        """
        if value is None and self.optional:
            return None
        name = value.name if isinstance(value, Enum) else None
        if name is not None and self._members.get(name) is value:
            return name
        raise ValidationError(str(path), f"{value!r} is not a {self.enum.__name__}")

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        """Bind a member as its name; a string that already is a member's name (what the codec
        made) binds as it is, anything else is checked by ``coerce``.
        """
        if isinstance(value, str) and value in self._members:  # a name the codec already made
            return value
        return None if value is None else self.coerce(value, self.bound_path)

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], E | None]:
        """The function each read value goes through: a stored name to its member, NULL to None.

        It replaces ``TypeDecorator``'s own processor, so no ``process_result_value`` runs.

        Raises:
            ValueError: from the returned function, for a stored name that is no member's,
                naming the enum and the stored value.
        """
        # A dict's own lookup (C code): a read of a thousand rows maps thousands of names;
        # only a miss (None, or a name no member has) reaches Python, in ``__missing__``.
        lookup: Callable[[Any], E | None] = _StoredNames(self.enum).__getitem__
        return lookup

    @property
    def python_type(self) -> type[E]:
        """Values are members of ``enum``."""
        return self.enum


class _StoredNames(dict[Any, Any]):
    """An enum's members by name, for reading a column: None reads as None, and a name that is no
    member's (a row written by other code, or by a version that had another member) is an error
    rather than a silent None."""

    def __init__(self, enum: type[Enum]) -> None:
        super().__init__(enum.__members__)
        self.enum = enum

    def __missing__(self, name: Any) -> None:
        if name is None:
            return None
        known = ", ".join(self.enum.__members__)
        what = self.enum.__name__
        raise ValueError(f"a {what} column holds {name!r}, which is not a {what} name (one of {known})")


class Millis(Checked):
    """Epoch milliseconds (or a duration in ms): an int in BIGINT range; None where optional."""

    cache_ok = True

    impl = BigInteger

    def __init__(self, *, optional: bool = True) -> None:
        """An epoch-milliseconds (or duration) column.

        Args:
            optional: whether None is a valid value (stored as NULL); most times are unset until
                they happen, so it is the default.
        """
        super().__init__()
        self.optional = optional

    def coerce(self, value: Any, path: object) -> int | None:
        """The integer itself; None where optional.

        Raises:
            ValidationError: naming ``path``, for anything but an ``int`` (a bool, a float or an
                ``int`` subclass too) or an int outside the signed 64-bit range.
        """
        if value is None and self.optional:
            return None
        if type(value) is not int or not _INT64[0] <= value <= _INT64[1]:
            raise ValidationError(str(path), _integer_problem(value, _INT64, "an integer (epoch ms)"))
        return value

    @property
    def python_type(self) -> type[int]:
        """Values are ``int``."""
        return int


class Count(Checked):
    """A 32-bit integer: positions, versions, attempts, limits."""

    cache_ok = True

    impl = Integer

    def coerce(self, value: Any, path: object) -> int:
        """The integer itself (never None).

        Raises:
            ValidationError: naming ``path``, for anything but an ``int`` (a bool or a float too) or
                an int outside the signed 32-bit range.
        """
        if type(value) is not int or not _INT32[0] <= value <= _INT32[1]:
            raise ValidationError(str(path), _integer_problem(value, _INT32, "an integer"))
        return value

    @property
    def python_type(self) -> type[int]:
        """Values are ``int``."""
        return int


def _integer_problem(value: Any, bounds: tuple[int, int], what: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value} is out of range for a {64 if bounds is _INT64 else 32}-bit integer column"
    return f"must be {what}, got {value!r}"


class Flag(Checked):
    """A boolean; a number or a string is refused rather than read as true."""

    cache_ok = True

    impl = Boolean

    def coerce(self, value: Any, path: object) -> bool:
        """The boolean itself.

        Raises:
            ValidationError: naming ``path``, for anything but True or False (1, 0, "yes" too).
        """
        if value is True or value is False:
            return value
        raise ValidationError(str(path), f"must be True or False, got {value!r}")

    @property
    def python_type(self) -> type[bool]:
        """Values are ``bool``."""
        return bool


class Document(Checked):
    """A JSON object (contexts, outputs, trigger, exception details, payloads) in the one encoding
    of CONTRACT.md section 7 (``values.encode_document``), kept as the text written on every
    dialect: ``json`` on PostgreSQL, not ``jsonb``, whose NUMERIC numbers would turn the float
    1e16 into an int and -0.0 into 0.0 (migration 0003).

    ``coerce`` returns a ``CheckedDocument``, which binds without a second check; the driver's
    JSON encoder (``values.compact_json`` on this package's engines) writes it. Optional documents
    store None as SQL NULL, not JSON null, so ``IS NULL`` finds them.
    """

    cache_ok = True

    impl = JSON

    def __init__(self, *, optional: bool = False, json_null: bool = False) -> None:
        """A JSON document column.

        Args:
            optional: whether None is a valid value, stored as SQL NULL (the column is nullable).
            json_null: whether None is a valid value, stored as the JSON value null (the column
                is NOT NULL).
        """
        super().__init__(none_as_null=optional)
        self.optional = optional
        #: None stored as the JSON value null (the column itself is NOT NULL).
        self.json_null = json_null

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Plain ``JSON`` on every dialect (``json``, never ``jsonb``, on PostgreSQL), None as SQL
        NULL where optional.
        """
        return JSON(none_as_null=self.optional)

    def coerce(self, value: Any, path: object) -> CheckedDocument | None:
        """The document, encoded once as a ``CheckedDocument``; None where optional or ``json_null``.

        Raises:
            ValidationError: naming the refused value's place under ``path`` (``path['key'][0]``):
                a value that is not a dict, a key that is not a string, a NUL or lone surrogate, an
                integer beyond 64 bits, NaN or an infinity, nesting too deep, a type the contract
                gives no JSON form.
        """
        if value is None and (self.optional or self.json_null):
            return None
        return encode_document(value, path)

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Bind a ``CheckedDocument`` or None as it is; any other value is checked by ``coerce`` first."""
        if value is None or type(value) is CheckedDocument:
            return value
        return self.coerce(value, self.bound_path)

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        """Decode a read value: the engine's JSON decoder on SQLite's and MySQL's text; None (no
        processor) where the driver decodes the value itself (psycopg).
        """
        # Text from SQLite and MySQL goes straight to the engine's JSON decoder (one call per
        # value, not three layers of processors). psycopg decodes the ``json`` column itself, with
        # the engine's decoder installed as its JSON loader, so SQLAlchemy gives no processor (None).
        impl: Callable[[Any], Any] | None = (
            self.load_dialect_impl(dialect).dialect_impl(dialect).result_processor(dialect, coltype)
        )
        loads = getattr(dialect, "_json_deserializer", None)
        if impl is None or loads is None:
            return impl
        decode: Callable[[Any], Any] = loads

        def process(value: Any) -> Any:
            return None if value is None else decode(value)

        return process

    @property
    def python_type(self) -> type[dict[str, Any]]:
        """Values are ``dict``."""
        return dict


class StoredText(TypeDecorator[str | bytes]):
    """A column read as the database holds it, whatever that is, for ``cast(column, StoredText())``:
    a row a foreign writer filled (the queue's poison rows) is read like any other instead of
    failing the statement. Text, or ``bytes`` where the column held bytes that are not valid
    UTF-8: on a dialect whose text columns may hold any (``text_holds_any_bytes``, SQLite) the
    column is read as a BLOB, and valid UTF-8 is given back as text."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """A BLOB where text columns may hold any bytes, else text."""
        return LargeBinary() if profile_for(dialect).text_holds_any_bytes else Text()

    def process_result_value(self, value: Any, dialect: Dialect) -> str | bytes | None:
        """Bytes that are valid UTF-8 as text; others as they are."""
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return value
        text: str | None = value
        return text

    @property
    def python_type(self) -> type[str]:
        """Text, mostly (bytes only where they are not UTF-8)."""
        return str


_MYSQL = frozenset({"mysql", "mariadb"})


def checker(column: Any) -> Callable[[Any, object], Any]:
    """The ``coerce`` of ``column``'s type, which must be a ``Checked`` type."""
    checked = column.type
    if not isinstance(checked, Checked):
        raise TypeError(f"column {column} has type {checked!r}, which does not check its values")
    return checked.coerce


__all__ = [
    "BoundedText",
    "Checked",
    "Count",
    "Document",
    "EnumName",
    "Flag",
    "Millis",
    "StoredText",
    "checker",
]
