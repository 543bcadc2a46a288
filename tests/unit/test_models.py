"""The domain models' own rules: what upstream Stabilize's models also refuse or carry."""

from __future__ import annotations

import pytest

from stabilize.models import JoinType, MultiInstanceConfig, SplitType, StageExecution, Workflow


def test_a_workflow_refuses_two_stages_with_one_ref_id() -> None:
    stages = [StageExecution.create("t", "A", "a"), StageExecution.create("t", "B", "b")]
    stages.append(StageExecution.create("t", "A again", "a"))
    with pytest.raises(ValueError, match=r"stages\[2\]\.ref_id: 'a' is the ref id of stages\[0\] too"):
        Workflow.create("app", "name", stages)
    with pytest.raises(ValueError, match=r"stages\[2\]\.ref_id"):
        Workflow.create_orchestration("app", "name", stages)
    assert len(Workflow.create("app", "name", stages[:2]).stages) == 2


def test_control_flow_fields_default_as_upstreams_and_configs_round_trip() -> None:
    made = StageExecution.create("t", "A", "a")
    assert (made.join_type, made.split_type, made.join_threshold) == (JoinType.AND, SplitType.AND, 0)
    assert made.split_conditions == {} and made.mi_config is None and made.mutex_key is None
    config = MultiInstanceConfig(count=4, collection_from_context="items", cancel_remaining=True)
    assert MultiInstanceConfig.from_dict(config.to_dict()) == config
    # Missing keys take their defaults, unknown ones are ignored (a newer engine's document).
    assert MultiInstanceConfig.from_dict({"count": 2, "future_knob": 1}) == MultiInstanceConfig(count=2)
