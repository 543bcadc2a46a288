"""Database errors become the library's own: in one place, by driver error code.

Classification is asked of the dialect profile, never decided by message text:
- *transient* (deadlock, serialization failure, busy): the transaction was rolled back, so the
  whole unit of work may run again (``units.Database`` does, within its ``RetryPolicy``);
- *unreachable* (refused, shut down, connection lost): ``DatabaseUnavailableError``, with the URL
  rendered without its password;
- anything else propagates unchanged. A failed compare-and-set (``ConcurrencyError``) is the
  caller's business and is never retried.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from stabilize.persistence.errors import (
    DatabaseUnavailableError,
    LockTimeoutError,
    OperationTimeoutError,
    TransientError,
)
from stabilize.persistence.sql.engine import engine_profile, mask


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a unit of work that lost a race runs again.

    Attributes:
        attempts: runs in all, the first included.
        base_delay: seconds of the first back-off; each later one may be twice as long.
        max_delay: the longest back-off, in seconds.
    """

    attempts: int = 6
    base_delay: float = 0.01
    max_delay: float = 0.5

    def delay(self, attempt: int) -> float:
        """Full jitter: concurrent losers spread out instead of colliding again in step."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


class RaceLost(TransientError):
    """The transaction lost a race (a deadlock, a serialization failure) and was rolled back: the
    unit of work runs again (``units.Database``), and raises this when it keeps losing."""


@contextmanager
def translated(engine: Engine) -> Iterator[None]:
    """Re-raise DBAPI errors of the enclosed block as the library's own where they have a meaning."""
    try:
        yield
    except DBAPIError as error:
        profile = engine_profile(engine)
        cause = error.orig if error.orig is not None else error
        first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        if profile.is_transient(cause):
            raise RaceLost(f"transaction lost a race and was rolled back: {first_line}") from error
        if profile.is_lock_timeout(cause):
            raise LockTimeoutError(
                f"database {mask(engine.url)}: a lock held by another client was not released in time: "
                f"{first_line}"
            ) from error
        if profile.is_statement_timeout(cause):
            raise OperationTimeoutError(
                f"database {mask(engine.url)} did not finish a statement in time: {first_line}"
            ) from error
        if error.connection_invalidated or profile.is_unreachable(cause):
            raise DatabaseUnavailableError(
                f"database {mask(engine.url)} is unavailable: {first_line}"
            ) from error
        raise
