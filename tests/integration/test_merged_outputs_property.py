"""``get_merged_ancestor_outputs`` against a plain-Python model of the contract (section 4).

The reference below is written from the contract's words only; it does not import the library's
lineage module. Ancestors: the transitive requisites, the stage itself excluded. Order: Kahn's
algorithm over the ancestor subgraph; the queue starts with the ancestors that have no requisite
inside the set, in ref-id order, and the stages each step makes ready join the queue's end in
ref-id order. Merge: a later value replaces an earlier one, except that a list onto a list
appends the items not already present.

The ``store`` fixture empties the database once per test, not per Hypothesis example, so every
example stores a workflow of its own (fresh ids) and only ever queries that workflow.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stabilize.models import StageExecution, Workflow
from stabilize.persistence.sql.store import SqlWorkflowStore

MAX_STAGES = 60
#: Targets checked per example besides the always-checked ones (keeps the module fast on servers).
SAMPLED_TARGETS = 15


@dataclass(frozen=True)
class StageSpec:
    ref_id: str
    requisites: frozenset[str]
    outputs: dict[str, Any]


# -- the reference model ---------------------------------------------------------------------


def ancestors_of(requisites: dict[str, frozenset[str]], ref_id: str) -> set[str]:
    """Every stage reachable through requisites from ``ref_id``, ``ref_id`` excluded."""
    found: set[str] = set()
    pending = list(requisites.get(ref_id, ()))
    while pending:
        ref = pending.pop()
        if ref in found or ref not in requisites:
            continue
        found.add(ref)
        pending.extend(requisites[ref])
    found.discard(ref_id)
    return found


def kahn_order(requisites: dict[str, frozenset[str]], nodes: set[str]) -> list[str]:
    """Kahn's algorithm over ``nodes`` only, ties broken by ref id, FIFO."""
    missing = {ref: len(requisites[ref] & nodes) for ref in nodes}
    queue = deque(sorted(ref for ref in nodes if missing[ref] == 0))
    order: list[str] = []
    while queue:
        done = queue.popleft()
        order.append(done)
        ready = []
        for ref in nodes:
            if done in requisites[ref]:
                missing[ref] -= 1
                if missing[ref] == 0:
                    ready.append(ref)
        queue.extend(sorted(ready))
    assert len(order) == len(nodes), "the generated graph must be acyclic"
    return order


def merge(ordered_outputs: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for outputs in ordered_outputs:
        for key, value in outputs.items():
            earlier = merged.get(key)
            if isinstance(earlier, list) and isinstance(value, list):
                for item in value:
                    if item not in earlier:
                        earlier.append(item)
            else:
                merged[key] = copy.deepcopy(value)
    return merged


def reference_merged_outputs(specs: list[StageSpec], ref_id: str) -> dict[str, Any]:
    requisites = {spec.ref_id: spec.requisites for spec in specs}
    outputs = {spec.ref_id: spec.outputs for spec in specs}
    if ref_id not in requisites:
        return {}
    order = kahn_order(requisites, ancestors_of(requisites, ref_id))
    return merge([outputs[ref] for ref in order])


def store_workflow(store: SqlWorkflowStore, specs: list[StageSpec]) -> Workflow:
    """A new workflow (new ids) holding ``specs`` in the given insertion order."""
    stages = []
    for spec in specs:
        stage = StageExecution.create(
            "t", f"stage {spec.ref_id}", spec.ref_id, requisite_stage_ref_ids=set(spec.requisites)
        )
        stage.outputs = copy.deepcopy(spec.outputs)
        stages.append(stage)
    workflow = Workflow.create("merge-property", "dag", stages)
    store.store(workflow)
    return workflow


# -- strategies --------------------------------------------------------------------------------

#: Letters of both cases and digits: their ref-id (code point) order is neither insertion order
#: nor what a case-insensitive collation would give. No spaces: PAD SPACE collations are not
#: the subject here.
REF_ALPHABET = "abcxyzABXZ0129_-"
SCALARS = st.one_of(st.integers(-3, 9), st.sampled_from(["x", "y", "z", "", "X"]), st.booleans(), st.none())
LIST_ITEMS = st.one_of(st.integers(0, 6), st.sampled_from(["p", "q", "r", "P"]))
VALUES = st.one_of(
    SCALARS,
    st.lists(LIST_ITEMS, max_size=4),
    st.lists(LIST_ITEMS, max_size=4),  # twice: lists meeting lists is the interesting case
    st.dictionaries(st.sampled_from(["m", "n"]), st.integers(0, 3), max_size=2),
)
OUTPUTS = st.dictionaries(st.sampled_from(["k1", "k2", "k3", "k4", "k5"]), VALUES, max_size=4)


@st.composite
def dags(draw: st.DrawFn) -> list[StageSpec]:
    """Stages in insertion order; each may require any earlier ones, so the graph is acyclic."""
    size = draw(st.integers(1, MAX_STAGES))
    refs = draw(
        st.lists(st.text(REF_ALPHABET, min_size=1, max_size=4), min_size=size, max_size=size, unique=True)
    )
    specs = []
    for position, ref in enumerate(refs):
        if position == 0:
            chosen: list[int] = []
        else:
            chosen = draw(st.lists(st.integers(0, position - 1), max_size=min(position, 4), unique=True))
        specs.append(StageSpec(ref, frozenset(refs[i] for i in chosen), draw(OUTPUTS)))
    return specs


# -- the property --------------------------------------------------------------------------------


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(specs=dags(), data=st.data())
def test_merged_ancestor_outputs_match_the_reference(
    store: SqlWorkflowStore, specs: list[StageSpec], data: st.DataObject
) -> None:
    workflow = store_workflow(store, specs)
    refs = [spec.ref_id for spec in specs]
    requisites = {spec.ref_id: spec.requisites for spec in specs}

    # Always the last-added stage and the one with the most ancestors; then a random sample.
    deepest = max(refs, key=lambda ref: (len(ancestors_of(requisites, ref)), ref))
    sampled = data.draw(
        st.lists(st.sampled_from(refs), max_size=SAMPLED_TARGETS, unique=True), label="targets"
    )
    targets = list(dict.fromkeys([refs[-1], deepest, *sampled]))

    for ref in targets:
        expected = reference_merged_outputs(specs, ref)
        actual = store.get_merged_ancestor_outputs(workflow.id, ref)
        assert actual == expected, f"ref {ref!r}: ancestors {sorted(ancestors_of(requisites, ref))}"

    unknown = data.draw(st.text(REF_ALPHABET, min_size=1, max_size=5).filter(lambda r: r not in requisites))
    assert store.get_merged_ancestor_outputs(workflow.id, unknown) == {}


# -- deterministic: a big workflow, a small ancestry ------------------------------------------------


#: Ten ancestors of "target" (requisites per stage). Kahn with ref-id ties and a FIFO queue gives
#: a, b, c, d, i, e, f, g, h, j, which is neither alphabetical nor depth-first nor insertion order.
ANCESTRY = {
    "a": set(),
    "b": set(),
    "c": set(),
    "d": {"a"},
    "e": {"c"},
    "f": {"b", "d"},
    "g": {"e"},
    "h": {"f", "g"},
    "i": {"a"},
    "j": {"h", "i"},
}
ANCESTRY_INSERTION_ORDER = ["j", "c", "h", "b", "g", "a", "i", "f", "e", "d"]
EXPECTED_ORDER = ["a", "b", "c", "d", "i", "e", "f", "g", "h", "j"]


def test_thousand_stage_workflow_with_ten_ancestors(store: SqlWorkflowStore) -> None:
    specs: list[StageSpec] = []
    ancestors = iter(ANCESTRY_INSERTION_ORDER)
    filler_count = 1000 - len(ANCESTRY) - 1
    for n in range(filler_count):
        # Fillers form a chain hanging below the ancestors and the target; none is an ancestor.
        requisites = {f"z{n - 1:04d}"} if n else {"target"}
        if n % 50 == 0:
            requisites |= {"a", "j"}
        specs.append(
            StageSpec(f"z{n:04d}", frozenset(requisites), {"trail": ["filler"], "last": "filler", "k": n})
        )
        if n % 90 == 0:
            ref = next(ancestors, None)
            if ref is not None:
                specs.append(StageSpec(ref, frozenset(ANCESTRY[ref]), {"trail": [ref], "last": ref}))
    specs.extend(StageSpec(ref, frozenset(ANCESTRY[ref]), {"trail": [ref], "last": ref}) for ref in ancestors)
    specs.append(StageSpec("target", frozenset({"j"}), {"trail": ["target"], "last": "target", "own": True}))
    # Lists that overlap: a's tags come first, d only adds what is new, h replaces with a scalar
    # and j starts a list again.
    by_ref = {spec.ref_id: spec for spec in specs}
    by_ref["a"].outputs["tags"] = ["x", "y"]
    by_ref["d"].outputs["tags"] = ["y", "z", "x"]
    by_ref["a"].outputs["swap"] = [1]
    by_ref["h"].outputs["swap"] = "scalar"
    by_ref["j"].outputs["swap"] = [2, 2]
    assert len(specs) == 1000

    workflow = store_workflow(store, specs)

    expected = {"trail": EXPECTED_ORDER, "last": "j", "tags": ["x", "y", "z"], "swap": [2, 2]}
    assert reference_merged_outputs(specs, "target") == expected
    assert store.get_merged_ancestor_outputs(workflow.id, "target") == expected
    assert store.get_merged_ancestor_outputs(workflow.id, "a") == {}
    assert store.get_merged_ancestor_outputs(workflow.id, "no-such-stage") == {}
