"""The Jinja2 environment of the pages: autoescaping on for every template, the command line's
renderings of times and durations as filters, and the status colours as one stylesheet."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from stabilize.cli import render
from stabilize.cli.errors import first_line
from stabilize.ui.documents import ink


def pretty_json(value: Any) -> str:
    """A document as indented JSON for a ``<pre>`` (escaped by the template, like all text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


@cache
def asset_version() -> str:
    """A short hash of the static files, so a browser never keeps an old script after an upgrade."""
    digest = hashlib.sha256()
    folders = [files("stabilize.ui") / "static"]
    while folders:
        for entry in sorted(folders.pop().iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                folders.append(entry)
            else:
                digest.update(entry.name.encode() + entry.read_bytes())
    return digest.hexdigest()[:12]


def input_time(ms: int | None) -> str:
    """Epoch ms as the value of a ``datetime-local`` input (UTC), or "" for None."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def status_css() -> str:
    """One class per status (``status-RUNNING``...) in the colours of the terminal and the DAG."""
    return "".join(
        f".status-{status.name}{{background:{colour};color:{ink(colour)}}}\n"
        for status, colour in render.COLOURS.items()
    )


def environment() -> Environment:
    """The environment every page is rendered with (autoescape on: user text is always data)."""
    env = Environment(
        loader=PackageLoader("stabilize.ui", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=render.when,
        duration=lambda stage: render.duration(stage.start_time, stage.end_time),
        age=render.age,
        tasks=render.task_progress,
        waits_for=render.waits_for,
        pretty_json=pretty_json,
        input_time=input_time,
        first_line=first_line,
    )
    env.globals["static"] = lambda name: f"/static/{name}?v={asset_version()}"
    return env
