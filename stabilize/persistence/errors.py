"""The persistence layer's errors: each names what went wrong and whether anything was written.

They subclass the engine's own bases (``stabilize.errors``: ``StabilizeError``, ``TransientError``),
and import nothing else of the package, so an engine that keeps its own ``stabilize.errors`` (an
adopter of this store, see the README) sees them under its own hierarchy: a ``TransientError`` of
ours is one of its ``TransientError``s, to retry.
"""

from __future__ import annotations

from stabilize.errors import ConcurrencyError, StabilizeError, TransientError


class ValidationError(StabilizeError, ValueError):
    """A value cannot be stored; the message names the field (its path) and the problem.

    It is a ``ValueError`` so callers that already catch bad input that way keep working.

    Args:
        path: where the value is, e.g. ``stages[1].context['when']``.
        problem: what is wrong with it.
    """

    def __init__(self, path: str, problem: str) -> None:
        """The message is ``"{path}: {problem}"``; both parts are kept as attributes."""
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class DuplicateError(StabilizeError, ValueError):
    """An id that must be new is already stored. Nothing was written."""


class SchemaError(StabilizeError):
    """The database schema is not the one this code expects (run the upgrade command)."""


class DatabaseUnavailableError(TransientError):
    """The database cannot be reached (down, restarting, wrong address, silent). Nothing was
    written; the same call succeeds once the server is back, without rebuilding the store."""


class OperationTimeoutError(DatabaseUnavailableError):
    """The database did not answer within the call's deadline (a statement the server is slow
    on, a network that stopped carrying packets). Nothing was written; the store stays usable."""


class CommitUnknownError(DatabaseUnavailableError):
    """The connection was lost while a write may have been committing: it may or may not have
    committed. Read the state again before deciding (a processed mark tells a redelivery)."""


class LockTimeoutError(TransientError):
    """A lock another client holds (a row, or SQLite's write lock) was not released within the
    call's bound. Nothing was written; the same call succeeds once the holder lets go."""


__all__ = [
    "CommitUnknownError",
    "ConcurrencyError",
    "DatabaseUnavailableError",
    "DuplicateError",
    "LockTimeoutError",
    "OperationTimeoutError",
    "SchemaError",
    "StabilizeError",
    "TransientError",
    "ValidationError",
]
