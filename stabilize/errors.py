"""The library's base exceptions, shaped as the Stabilize engine's own (``stabilize.errors``).

An engine catches these by type: a failed compare-and-set is a ``ConcurrencyError``, which is a
``TransientError`` (retry the step on fresh state), as in upstream Stabilize. The persistence
layer's own errors (``ValidationError``, ``DatabaseUnavailableError``, ...) live in
``stabilize.persistence.errors`` and subclass these; they are importable from here too.
"""

from __future__ import annotations

from typing import Any


class StabilizeError(Exception):
    """Base of every error this library raises on purpose."""


class TransientError(StabilizeError):
    """A temporary condition: the same call may succeed later (a lost race, an unreachable or
    busy database). Nothing was written."""


class ConcurrencyError(TransientError):
    """A compare-and-set lost: the row's version or status was not the one the caller read.
    Read again and retry."""


#: The persistence layer's errors, re-exported here on first use (``stabilize.persistence.errors``
#: imports this module for its bases, so a plain import would be a cycle).
_PERSISTENCE_ERRORS = frozenset(
    {
        "CommitUnknownError",
        "DatabaseUnavailableError",
        "DuplicateError",
        "LockTimeoutError",
        "OperationTimeoutError",
        "SchemaError",
        "ValidationError",
    }
)


def __getattr__(name: str) -> Any:
    if name in _PERSISTENCE_ERRORS:
        from stabilize.persistence import errors

        return getattr(errors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ConcurrencyError", "StabilizeError", "TransientError", *sorted(_PERSISTENCE_ERRORS)]
