"""Is the store usable, and how is its queue doing: answered truthfully, never by an exception.

``check_health`` opens one connection and runs a handful of small queries, each bounded by an
index and a ``LIMIT`` whatever the tables hold:

1. ``SELECT 1``: the database answers (else ``reachable=False`` and the driver error's first
   line; the report's ``url`` is rendered with its password hidden, and no message is edited:
   masking by substring once turned ``127.0.0.1`` into ``***27.0.0.***`` for the password ``1``);
2. the Alembic version table: the schema revision, against this code's head;
3. the queue's first ``count_limit + 1`` rows in id order: depth (shown as "more than
   ``count_limit``" beyond it) and the age of the oldest message still unacked among them;
4. the dead letters' first ``count_limit + 1`` rows: how many.

Healthy means reachable with the schema at this code's head, as issue #6 asks. A schema behind
head is unhealthy until ``stabilize db upgrade`` runs; one *ahead* of it (a newer release migrated
the database during a rolling deploy) is reported as ``ahead`` and unhealthy too, although the
store still works on it (``migrate.ensure_current`` accepts it): a probe should flag the mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text

from stabilize.persistence.errors import StabilizeError
from stabilize.persistence.ids import now_ms
from stabilize.persistence.sql import migrate
from stabilize.persistence.sql.engine import mask
from stabilize.persistence.sql.faults import RetryPolicy
from stabilize.persistence.sql.rows import DeadLetterRow, QueueMessageRow, table_of
from stabilize.persistence.sql.units import Database, Unit

#: Rows counted at most per table: a health probe must stay cheap on a queue of millions.
COUNT_LIMIT = 10_000

_QUEUE = table_of(QueueMessageRow)
_DEAD_LETTERS = table_of(DeadLetterRow)


@dataclass(frozen=True)
class HealthReport:
    """What ``SqlWorkflowStore.health()`` and ``stabilize health`` report.

    Counts stop at ``count_limit``: ``queue_depth == count_limit`` with ``queue_depth_capped``
    means "at least that many". Queue fields are None when they could not be measured (an
    unreachable database, or one with no schema yet).
    """

    url: str
    """The database URL with its password masked."""
    healthy: bool
    reachable: bool
    revision: str | None
    """The schema revision the database records; None for an empty database (or unreachable)."""
    head: str
    """The newest revision this code knows."""
    at_head: bool
    schema: str | None
    """``at head``, ``behind`` (unhealthy: run the upgrade) or ``ahead`` (a newer release's)."""
    queue_depth: int | None
    queue_depth_capped: bool
    oldest_message_age_ms: int | None
    """Age of the oldest unacked message (created_at against the app clock), None when empty."""
    dead_letters: int | None
    dead_letters_capped: bool
    count_limit: int
    error: str | None
    """Why the check failed: the first line of the database error (drivers never put the
    password in it)."""

    @property
    def problems(self) -> list[str]:
        """Why the report is unhealthy, one line each; empty when healthy."""
        found: list[str] = []
        if not self.reachable:
            found.append(f"database unreachable: {self.error}")
            return found
        if self.schema == "behind":
            found.append(
                f"schema at revision {self.revision or 'none (empty database)'}, this code needs "
                f"{self.head}: run `stabilize db upgrade`"
            )
        if self.schema == "ahead":
            found.append(
                f"schema at revision {self.revision}, newer than this code's {self.head}: upgrade the code"
            )
        if self.error is not None:
            found.append(f"check failed: {self.error}")
        return found


def check_health(engine: Engine | Database, *, count_limit: int = COUNT_LIMIT) -> HealthReport:
    """The report for the database behind ``engine`` (or a store's ``Database``), measured in one
    unit of work; never raises for a database problem."""
    if isinstance(engine, Database):
        database = engine
    else:
        database = Database(engine, RetryPolicy(attempts=1), owns_engine=False)
    engine = database.engine
    head = migrate.head()
    measured: dict[str, Any] = {
        "reachable": False,
        "revision": None,
        "schema": None,
        "queue_depth": None,
        "queue_depth_capped": False,
        "oldest_message_age_ms": None,
        "dead_letters": None,
        "dead_letters_capped": False,
        "error": None,
    }

    def measure(connection: Connection) -> None:
        connection.execute(text("SELECT 1"))
        measured["reachable"] = True
        revision = migrate.current_of(connection)
        measured["revision"] = revision
        measured["schema"] = migrate.schema_state(revision)
        if revision is not None:  # every revision has the queue tables
            measured.update(_queue_measures(connection, count_limit))

    try:
        database.run(measure, Unit.SNAPSHOT)
    except Exception as exc:  # the point: a probe reports, it does not raise
        # The database's own error, not the library's translation of it.
        cause = exc.__cause__ if isinstance(exc, StabilizeError) and exc.__cause__ is not None else exc
        measured["error"] = first_line(cause)
    healthy = measured["reachable"] and measured["error"] is None and measured["revision"] == head
    return HealthReport(
        url=mask(engine.url),
        healthy=healthy,
        head=head,
        at_head=measured["revision"] == head,
        count_limit=count_limit,
        **measured,
    )


def unreachable_report(url: str, error: str, *, count_limit: int = COUNT_LIMIT) -> HealthReport:
    """The report of a database that was not even tried (``url`` already shown without its
    password): a SQLite file that does not exist, say, which connecting would create."""
    return HealthReport(
        url=url,
        healthy=False,
        reachable=False,
        revision=None,
        head=migrate.head(),
        at_head=False,
        schema=None,
        queue_depth=None,
        queue_depth_capped=False,
        oldest_message_age_ms=None,
        dead_letters=None,
        dead_letters_capped=False,
        count_limit=count_limit,
        error=error,
    )


def database_is_healthy(engine: Engine | Database) -> bool:
    """True when the database answers and its schema is one this code can use; never raises."""
    try:
        return check_health(engine).healthy
    except Exception:  # e.g. the migration scripts themselves cannot be read
        return False


def _queue_measures(connection: Connection, count_limit: int) -> dict[str, Any]:
    first = select(_QUEUE.c.id, _QUEUE.c.created_at).order_by(_QUEUE.c.id).limit(count_limit + 1).subquery()
    depth, oldest = connection.execute(select(func.count(), func.min(first.c.created_at))).one()
    dead_rows = select(_DEAD_LETTERS.c.id).limit(count_limit + 1).subquery()
    dead = connection.execute(select(func.count()).select_from(dead_rows)).scalar_one()
    return {
        "queue_depth": min(int(depth), count_limit),
        "queue_depth_capped": int(depth) > count_limit,
        "oldest_message_age_ms": None if oldest is None else max(0, now_ms() - int(oldest)),
        "dead_letters": min(int(dead), count_limit),
        "dead_letters_capped": int(dead) > count_limit,
    }


def first_line(error: BaseException) -> str:
    """The error's first line: the driver's own message when there is one, as it wrote it."""
    cause = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
