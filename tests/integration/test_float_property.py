"""Every finite float comes back as the same float, bit for bit, on every dialect (issue 11,
CONTRACT.md section 7); NaN and infinity are refused, naming the value's place.

"The same float" is compared on the IEEE 754 bits (``struct``), so -0.0 is not 0.0 and a float
of integral value (1e16, 6.02214076e23) is still a float, not an int. Each example puts a list of
floats in a stage's outputs and context and the workflow's context, at the top level and nested,
then reads them back through ``retrieve``, through ``retrieve_stage`` after ``store_stage``, and
through the merge of a downstream stage's ancestors.
"""

from __future__ import annotations

import math
import os
import struct
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stabilize.models import StageExecution, Workflow
from stabilize.persistence.errors import ValidationError
from stabilize.persistence.sql.store import SqlWorkflowStore
from tests.integration.builders import stage, workflow

#: Examples per dialect and test: enough to hit every region below, few enough that the module
#: stays a few seconds on PostgreSQL and MariaDB. STABILIZE_FLOAT_EXAMPLES asks for more.
EXAMPLES = int(os.environ.get("STABILIZE_FLOAT_EXAMPLES", "60"))
#: Floats per example.
PER_EXAMPLE = 12

#: Floats that have broken JSON stores: signed zero, the subnormals and their edges, the normal
#: range's ends, integral floats beyond 2**53 (which NUMERIC columns turn into ints), and
#: values whose shortest text is long.
EDGES = [
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    sys.float_info.min,  # the smallest normal
    sys.float_info.min - 5e-324,  # the largest subnormal
    sys.float_info.max,
    -sys.float_info.max,
    sys.float_info.epsilon,
    6.02214076e23,
    1e16,
    -1e16,
    2.0**53,
    2.0**53 + 2,
    1e22,
    1e23,
    1e300,
    1e-300,
    0.1,
    1 / 3,
    -2.5e-310,
    123456789.12345679,
    9.999999999999998e15,
    1.7976931348623155e308,
]

FLOATS = st.one_of(
    st.sampled_from(EDGES),
    st.floats(allow_nan=False, allow_infinity=False),  # the whole range, weighted to odd corners
    st.floats(min_value=1e290, max_value=sys.float_info.max),  # huge magnitudes
    st.floats(min_value=0.0, max_value=1e-300, exclude_min=True),  # tiny and subnormal
    st.floats(max_value=-1e290, min_value=-sys.float_info.max),
    st.integers(-(2**62), 2**62).map(float),  # integral floats
)

SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


def assert_same_floats(actual: Any, expected: list[float], where: str) -> None:
    assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r}"
    for i, (got, want) in enumerate(zip(actual, expected, strict=True)):
        assert type(got) is float, f"{where}[{i}]: {want!r} came back as {type(got).__name__} {got!r}"
        assert bits(got) == bits(want), f"{where}[{i}]: {want!r} came back as {got!r}"


def documents(floats: list[float]) -> dict[str, Any]:
    """The floats at the top level, as scalars in a list, and nested two levels down."""
    return {"floats": list(floats), "first": floats[0], "nested": {"deeper": [{"values": list(floats)}]}}


def assert_documents(document: dict[str, Any], floats: list[float], where: str) -> None:
    assert_same_floats(document["floats"], floats, f"{where}['floats']")
    assert_same_floats([document["first"]], floats[:1], f"{where}['first']")
    assert_same_floats(document["nested"]["deeper"][0]["values"], floats, f"{where}['nested']")


def _two_stages(floats: list[float]) -> Workflow:
    producer = stage("producer", context=documents(floats), outputs=documents(floats))
    consumer = stage("consumer", {"producer"})
    return workflow(producer, consumer, context=documents(floats))


@SETTINGS
@given(floats=st.lists(FLOATS, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
def test_every_finite_float_comes_back_the_same(store: SqlWorkflowStore, floats: list[float]) -> None:
    wf = _two_stages(floats)
    store.store(wf)

    loaded = store.retrieve(wf.id)
    producer = loaded.stage_by_ref_id("producer")
    assert producer is not None
    assert_documents(loaded.context, floats, "workflow.context")
    assert_documents(producer.context, floats, "producer.context")
    assert_documents(producer.outputs, floats, "producer.outputs")
    assert_documents(store.get_merged_ancestor_outputs(wf.id, "consumer"), floats, "merged")


@SETTINGS
@given(floats=st.lists(FLOATS, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
def test_every_finite_float_comes_back_the_same_after_store_stage(
    store: SqlWorkflowStore, floats: list[float]
) -> None:
    wf = _two_stages([1.0])
    store.store(wf)
    producer = wf.stage_by_ref_id("producer")
    assert producer is not None
    producer.outputs, producer.context = documents(floats), documents(list(reversed(floats)))

    store.store_stage(producer)

    loaded = store.retrieve_stage(producer.id)
    assert_documents(loaded.outputs, floats, "producer.outputs")
    assert_documents(loaded.context, list(reversed(floats)), "producer.context")
    assert_documents(store.get_merged_ancestor_outputs(wf.id, "consumer"), floats, "merged")


NOT_FINITE = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("value", NOT_FINITE, ids=repr)
@pytest.mark.parametrize(
    ("place", "path"),
    [
        ("outputs", "stages[0].outputs['blob']"),
        ("context", "stages[0].context['blob']"),
        ("nested", "stages[0].outputs['deep'][0]['blob'][1]"),
        ("workflow", "workflow.context['blob']"),
    ],
)
def test_nan_and_infinity_are_refused_naming_their_place(
    store: SqlWorkflowStore, value: float, place: str, path: str
) -> None:
    producer: StageExecution = stage("producer")
    wf = workflow(producer, stage("consumer", {"producer"}))
    if place == "outputs":
        producer.outputs = {"fine": 1.5, "blob": value}
    elif place == "context":
        producer.context = {"blob": value}
    elif place == "nested":
        producer.outputs = {"deep": [{"blob": [0.5, value]}]}
    else:
        wf.context = {"blob": value}

    with pytest.raises(ValidationError) as refused:
        store.store(wf)

    assert refused.value.path == path
    assert "not a finite number" in str(refused.value)
    assert not store.exists(wf.id)  # nothing written


@pytest.mark.parametrize("value", NOT_FINITE, ids=repr)
def test_store_stage_refuses_nan_and_infinity_and_writes_nothing(
    store: SqlWorkflowStore, value: float
) -> None:
    wf = _two_stages([2.5])
    store.store(wf)
    producer = wf.stage_by_ref_id("producer")
    assert producer is not None
    producer.outputs = {"blob": [1.0, value]}

    with pytest.raises(ValidationError) as refused:
        store.store_stage(producer)

    assert refused.value.path == "stage.outputs['blob'][1]"
    loaded = store.retrieve_stage(producer.id)
    assert loaded.version == 0
    assert_documents(loaded.outputs, [2.5], "producer.outputs")  # as it was
