"""The runs listing: filters from a query string, and keyset pages over the store's own criteria.

The store lists workflows newest first (not started first, then start time descending, then id
descending) and takes a page size and an inclusive start-time window (``WorkflowCriteria``). It
has no offset, so a page after the first is asked for by a *cursor*, the position of the last run
shown: the next page is the window that ends at that run's start time, without the runs at or
before the cursor in the store's order (the window is inclusive, and runs that have not started
are inside every window). A page therefore reads the store once, or a few times with a doubled
page size when many skipped runs share the window, never every page before it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from stabilize.models.status import WorkflowStatus
from stabilize.models.workflow import Workflow
from stabilize.persistence.sql.store import SqlWorkflowStore
from stabilize.persistence.store.interface import WorkflowCriteria

#: Page sizes a person may pick; the API accepts any size from 1 to ``MAX_LIMIT``.
LIMITS = (20, 50, 100)
DEFAULT_LIMIT = 20
MAX_LIMIT = 500

_CURSOR = re.compile(r"(-|\d{1,18})\.([0-9A-Za-z_-]{1,64})")


class BadFilter(ValueError):
    """A query parameter that cannot be used; the message names the parameter and the problem."""

    def __init__(self, parameter: str, problem: str) -> None:
        """The message is ``"{parameter}: {problem}"``; both parts are kept as attributes."""
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the last run shown, by start time (None: not started) and id."""

    start_time: int | None
    id: str

    @classmethod
    def of(cls, workflow: Workflow) -> Cursor:
        """The cursor just after ``workflow``."""
        return cls(workflow.start_time, workflow.id)

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """``1733000000000.01J...`` (or ``-.01J...`` for a run not started) back to a cursor."""
        match = _CURSOR.fullmatch(text)
        if match is None:
            raise BadFilter("cursor", f"{text!r} is not a cursor of this listing")
        start, run_id = match.groups()
        return cls(None if start == "-" else int(start), run_id)

    def __str__(self) -> str:
        """The cursor as the URL carries it, ``"{start_time}.{id}"`` (``-`` for no start time); ``parse``
        reads it back.
        """
        return f"{'-' if self.start_time is None else self.start_time}.{self.id}"

    def precedes(self, workflow: Workflow) -> bool:
        """Whether ``workflow`` comes after this cursor in the store's order."""
        mine, theirs = _rank(self.start_time), _rank(workflow.start_time)
        return theirs > mine or (theirs == mine and workflow.id < self.id)


def _rank(start_time: int | None) -> tuple[bool, int]:
    # Not started first, then the latest start first: ascending in this key is the store's order.
    return (start_time is not None, -(start_time or 0))


@dataclass(frozen=True)
class RunFilters:
    """What the runs page and ``/api/runs`` were asked for."""

    application: str | None = None
    statuses: frozenset[WorkflowStatus] = frozenset()
    since: int | None = None
    """Inclusive lower bound of the start time (epoch ms)."""
    until: int | None = None
    """Inclusive upper bound of the start time (epoch ms)."""
    limit: int = DEFAULT_LIMIT
    cursor: Cursor | None = None

    def query(self, **changes: object) -> str:
        """This listing's query string, with ``changes`` (None drops a parameter)."""
        values: dict[str, object] = {
            "app": self.application,
            "status": sorted(s.name for s in self.statuses),
            "since": self.since,
            "until": self.until,
            "limit": self.limit if self.limit != DEFAULT_LIMIT else None,
            "cursor": str(self.cursor) if self.cursor else None,
        }
        values.update(changes)
        pairs: list[tuple[str, str]] = []
        for key, value in values.items():
            if isinstance(value, list):
                pairs.extend((key, str(v)) for v in value)
            elif value is not None and value != "":
                pairs.append((key, str(value)))
        return urlencode(pairs)

    def document(self) -> dict[str, object]:
        """The filters as ``/api/runs`` echoes them."""
        return {
            "application": self.application,
            "statuses": sorted(s.name for s in self.statuses),
            "since": self.since,
            "until": self.until,
            "limit": self.limit,
            "cursor": str(self.cursor) if self.cursor else None,
        }


def epoch_ms(parameter: str, text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time (UTC unless it names its offset), as epoch ms."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadFilter(parameter, f"{text!r} is neither epoch milliseconds nor an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_filters(params: Mapping[str, str], statuses: Sequence[str]) -> RunFilters:
    """The filters of a query string (``statuses``: every ``status`` parameter given).

    Raises:
        BadFilter: an unknown status, an unreadable time or cursor, a limit out of range.
    """
    chosen: set[WorkflowStatus] = set()
    for name in statuses:
        for part in filter(None, (p.strip() for p in name.split(","))):
            try:
                chosen.add(WorkflowStatus[part.upper()])
            except KeyError:
                known = ", ".join(s.name for s in WorkflowStatus)
                raise BadFilter("status", f"unknown status {part!r} (one of {known})") from None
    text = params.get("limit") or str(DEFAULT_LIMIT)
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadFilter("limit", f"{text!r} is not a number from 1 to {MAX_LIMIT}")
    since = params.get("since") or None
    until = params.get("until") or None
    cursor = params.get("cursor") or None
    return RunFilters(
        application=params.get("app") or None,
        statuses=frozenset(chosen),
        since=None if since is None else epoch_ms("since", since),
        until=None if until is None else epoch_ms("until", until),
        limit=int(text),
        cursor=None if cursor is None else Cursor.parse(cursor),
    )


@dataclass(frozen=True)
class Page:
    """One page of runs, and the cursor of the next one (None on the last page)."""

    runs: list[Workflow]
    next: Cursor | None


def fetch_page(store: SqlWorkflowStore, filters: RunFilters) -> Page:
    """The page of runs ``filters`` asks for, read through the store's listing calls."""
    cursor = filters.cursor
    before = filters.until
    if cursor is not None and cursor.start_time is not None:
        before = cursor.start_time if before is None else min(before, cursor.start_time)
    wanted = filters.limit + 1  # one more than shown says whether there is a next page
    asked = wanted if cursor is None else 2 * wanted
    read = _reader(store, filters.application)
    while True:
        criteria = WorkflowCriteria(
            page_size=asked,
            statuses=set(filters.statuses) or None,
            start_time_after=filters.since,
            start_time_before=before,
        )
        found = read(criteria)
        kept = found if cursor is None else [w for w in found if cursor.precedes(w)]
        if len(kept) >= wanted or len(found) < asked:
            break
        asked *= 2  # the window held more runs before the cursor than asked for: read further
    shown = kept[: filters.limit]
    return Page(shown, Cursor.of(shown[-1]) if len(kept) > filters.limit else None)


def _reader(store: SqlWorkflowStore, application: str | None) -> Callable[[WorkflowCriteria], list[Workflow]]:
    if application is None:
        return store.get_all_pending_workflows
    return lambda criteria: list(store.retrieve_by_application(application, criteria))
