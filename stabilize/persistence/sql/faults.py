"""Database errors become the library's own, and transient losses are retried: in one place.

Classification is by driver error code (asked of the dialect profile), never by message text:
- *transient* (deadlock, serialization failure, busy): the transaction was rolled back, so the
  whole unit of work runs again, a bounded number of times with jittered back-off;
- *unreachable* (refused, shut down, connection lost): ``DatabaseUnavailableError`` at once, with
  the URL's password masked; the pool's pre-ping makes the next call work once the server is back;
- anything else propagates unchanged. A failed compare-and-set (``ConcurrencyError``) is the
  caller's business and is never retried here.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from stabilize.errors import DatabaseUnavailableError, TransientError
from stabilize.persistence.sql.engine import engine_profile, mask

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a unit of work that lost a race runs again."""

    attempts: int = 6
    base_delay: float = 0.01
    max_delay: float = 0.5

    def delay(self, attempt: int) -> float:
        """Full jitter: concurrent losers spread out instead of colliding again in step."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


class HasEngine(Protocol):
    engine: Engine
    retry_policy: RetryPolicy


S = TypeVar("S", bound=HasEngine)


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
            raise TransientError(f"transaction lost a race and was rolled back: {first_line}") from error
        if error.connection_invalidated or profile.is_unreachable(cause):
            raise DatabaseUnavailableError(
                f"database {mask(engine.url)} is unavailable: {first_line}"
            ) from error
        raise


def retry_transient(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Run a whole unit of work (one public method, one transaction) again on ``TransientError``."""

    @functools.wraps(method)
    def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        policy = self.retry_policy
        for attempt in range(1, policy.attempts + 1):
            try:
                return method(self, *args, **kwargs)
            except TransientError as error:
                if attempt == policy.attempts:
                    raise
                logger.info("retrying %s after a transient error (%s)", method.__name__, error)
                time.sleep(policy.delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    return run
