"""The runs listing's cursor and filters, without a database: a cursor says where a page ended
in the store's order (not started first, then start time and id descending)."""

from __future__ import annotations

import re

import pytest

from stabilize.models import Workflow, WorkflowStatus
from stabilize.ui.documents import ink
from stabilize.ui.listing import BadFilter, Cursor, RunFilters, parse_filters


def run(start: int | None, run_id: str) -> Workflow:
    made = Workflow.create("app", "run", [])
    made.id, made.start_time = run_id, start
    return made


def test_a_cursor_round_trips_through_its_text() -> None:
    for cursor in (Cursor(1_700_000_000_000, "01HZ"), Cursor(None, "01HZ"), Cursor(0, "a")):
        assert Cursor.parse(str(cursor)) == cursor
    with pytest.raises(BadFilter, match=re.escape("cursor: 'x.y.z' is not a cursor")):
        Cursor.parse("x.y.z")


def test_precedes_follows_the_stores_order() -> None:
    ordered = [run(None, "C"), run(None, "B"), run(30, "Z"), run(20, "B"), run(20, "A"), run(10, "Z")]
    for i, here in enumerate(ordered):
        cursor = Cursor.of(here)
        assert [w.id for w in ordered if cursor.precedes(w)] == [w.id for w in ordered[i + 1 :]]


def test_filters_parse_and_render_back_to_the_same_query() -> None:
    filters = parse_filters(
        {"app": "shop", "limit": "50", "since": "1000", "cursor": "5.AB"}, ["running,TERMINAL"]
    )
    assert filters == RunFilters(
        "shop", frozenset({WorkflowStatus.RUNNING, WorkflowStatus.TERMINAL}), 1000, None, 50, Cursor(5, "AB")
    )
    assert filters.query() == "app=shop&status=RUNNING&status=TERMINAL&since=1000&limit=50&cursor=5.AB"
    assert filters.query(cursor=None, app=None) == "status=RUNNING&status=TERMINAL&since=1000&limit=50"
    assert parse_filters({}, []) == RunFilters()


def test_status_text_is_dark_on_light_colours_and_light_on_dark() -> None:
    assert ink("#fbc02d") == "#111111" and ink("#9e9e9e") == "#111111"
    assert ink("#1e88e5") == "#ffffff" and ink("#e53935") == "#ffffff"
