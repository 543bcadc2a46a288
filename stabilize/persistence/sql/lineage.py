"""Merging ancestor outputs in the order the Stabilize engine (0.33) uses.

The database finds the ancestors (a recursive CTE, ``queries.ANCESTOR_OUTPUTS_AND_EDGES``); this module only
orders the few rows it gets back and folds their outputs, so its cost follows the number of
ancestors, not the size of the workflow.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from contextlib import suppress
from typing import Any


def topological_order(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """Kahn's algorithm over ``nodes``, given ``(ref, requisite)`` edges (each once; edges that
    leave the node set are ignored), ties broken by ref id so the order never depends on hashing:
    the start queue holds the nodes with no requisite inside the set, sorted, and the nodes each
    step makes ready join the queue's end, sorted."""
    waiting = dict.fromkeys(nodes, 0)
    dependents: dict[str, list[str]] = {}
    for ref, requisite in edges:
        if ref != requisite and ref in waiting and requisite in waiting:
            waiting[ref] += 1
            found = dependents.get(requisite)
            if found is None:
                dependents[requisite] = [ref]
            else:
                found.append(ref)
    queue = deque(sorted(ref for ref, count in waiting.items() if not count))
    ordered: list[str] = []
    while queue:
        current = queue.popleft()
        ordered.append(current)
        ready = []
        for dependent in dependents.get(current, ()):
            left = waiting[dependent] - 1
            waiting[dependent] = left
            if not left:
                ready.append(dependent)
        if len(ready) > 1:
            ready.sort()
        queue.extend(ready)
    return ordered


def merge_outputs(ordered: list[str], outputs_of: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Fold outputs in order: a later value replaces an earlier one, except that a list onto a
    list appends the items not already present."""
    merged: dict[str, Any] = {}
    # The hashable items of each merged list, so "not already present" is a set lookup instead of
    # a scan of the list (quadratic over a long chain). Equal to the scan for JSON values: a
    # hashable item (str, number, bool, None) never equals an unhashable one (list, dict), and
    # those are still compared against the list itself.
    present: dict[str, set[Any]] = {}
    for ref in ordered:
        for key, value in outputs_of[ref].items():
            current = merged.get(key)
            if isinstance(current, list) and isinstance(value, list):
                seen = present[key]
                for item in value:
                    try:
                        if item in seen:
                            continue
                        seen.add(item)
                    except TypeError:  # unhashable: compare with the list's items
                        if item in current:
                            continue
                    current.append(item)
            elif isinstance(value, list):
                merged[key] = list(value)
                present[key] = _hashable(merged[key])
            else:
                merged[key] = value
    return merged


def _hashable(items: list[Any]) -> set[Any]:
    seen: set[Any] = set()
    for item in items:
        with suppress(TypeError):
            seen.add(item)
    return seen
