"""The library's exception hierarchy: every error a caller may want to catch by type."""

from __future__ import annotations


class StabilizeError(Exception):
    """Base of every error this library raises on purpose."""


class ConcurrencyError(StabilizeError):
    """A compare-and-set lost: the row's version or status was not the one the caller read."""


class ValidationError(StabilizeError, ValueError):
    """A value cannot be stored; the message names the field (its path) and the problem.

    It is a ``ValueError`` so callers that already catch bad input that way keep working.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class DuplicateError(StabilizeError, ValueError):
    """An id that must be new is already stored."""


class SchemaError(StabilizeError):
    """The database schema is not the one this code expects (run the upgrade command)."""


class DatabaseUnavailableError(StabilizeError):
    """The database cannot be reached (down, restarting, wrong address). Nothing was written;
    the same call succeeds once the server is back, without rebuilding the store."""


class TransientError(StabilizeError):
    """A transaction lost to a deadlock, a serialization conflict or a busy database, and kept
    losing after the library's bounded retries. Nothing was written; retrying later is safe."""


class LockTimeoutError(StabilizeError):
    """A lock another client holds (a row, or SQLite's write lock) was not released within the
    call's bound. Nothing was written; the same call succeeds once the holder lets go."""


class OperationTimeoutError(DatabaseUnavailableError):
    """The database did not answer within the call's deadline (a statement the server is slow
    on, a network that stopped carrying packets). Nothing was written unless the message says the
    outcome is unknown; the store stays usable."""
