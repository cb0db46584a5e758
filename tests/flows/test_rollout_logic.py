"""The rollout's step logic, without Prefect or stores: steps and limits, what a canary
verdict leads to, orphans, merged changes, SLO limits and the realised cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from flows.rollout_logic import (
    RolloutRefused,
    cost_per_hour,
    expected_saving_usd_per_hour,
    max_percent,
    merge_changes,
    next_action,
    orphan_action,
    plan_steps,
    realised_deltas,
    slo_limits,
    window_problem,
)
from optiinfra.approvals import ApprovalLimits
from optiinfra.config import OptiInfraConfig


def test_steps_default_first_step_and_limits() -> None:
    assert plan_steps([10, 50, 100]) == [10, 50, 100]
    assert plan_steps([10, 50, 100], first_step=5) == [5, 50, 100]
    assert plan_steps([10, 50, 100], first_step=50) == [50, 100]
    assert plan_steps([10, 50, 100], max_percent=50) == [10, 50]
    assert plan_steps([10, 50, 100], max_percent=30) == [10, 30]
    assert plan_steps([10, 50, 100], max_percent=5) == [5]
    assert plan_steps([50, 10, 10, 100]) == [10, 50, 100]
    with pytest.raises(RolloutRefused, match="from 1 to 100"):
        plan_steps([0, 100])
    with pytest.raises(RolloutRefused, match="at least one step"):
        plan_steps([])


@pytest.mark.parametrize(
    ("verdict", "rounds", "expected"),
    [
        ("pass", 1, "next"),
        ("fail", 1, "rollback"),
        ("wait", 1, "extend"),
        ("wait", 2, "extend"),
        ("wait", 3, "rollback"),  # undecided after the longest bake
    ],
)
def test_a_verdict_leads_to(verdict: str, rounds: int, expected: str) -> None:
    assert next_action(verdict, rounds=rounds, max_rounds=3) == expected


def test_an_unknown_verdict_is_an_error() -> None:
    with pytest.raises(ValueError, match="maybe"):
        next_action("maybe", rounds=1, max_rounds=3)


def test_the_approval_window() -> None:
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    assert window_problem(ApprovalLimits(), now) is None
    later = ApprovalLimits(not_before=now + timedelta(hours=1))
    assert "no earlier than 2026-11-24 13:00:00" in (window_problem(later, now) or "")
    past = ApprovalLimits(not_after=now - timedelta(minutes=1))
    assert "no later than" in (window_problem(past, now) or "")
    inside = ApprovalLimits(not_before=now - timedelta(hours=1), not_after=now + timedelta(hours=1))
    assert window_problem(inside, now) is None


def test_the_tighter_of_approval_and_policy_caps_the_rollout() -> None:
    config = OptiInfraConfig(policies=[{"tenant": "default", "max_rollout_percent": 60}])
    assert max_percent(config, "default", ApprovalLimits()) == 60
    assert max_percent(config, "default", ApprovalLimits(max_rollout_percent=25)) == 25
    assert max_percent(OptiInfraConfig(), "default", ApprovalLimits()) == 100


def test_orphans_of_the_same_plan_resume_others_roll_back() -> None:
    assert orphan_action("p1", "p1", "resume") == "resume"
    assert orphan_action("p1", "p1", "rollback") == "rollback"
    assert orphan_action("p1", "p2", "resume") == "rollback"


def test_changes_of_one_plan_merge() -> None:
    merged = merge_changes(
        [
            {"engine_args": {"max_num_seqs": 64}, "market": "spot"},
            {"quantization": "fp8", "engine_args": {"max_num_seqs": 32}},
        ]
    )
    assert merged == {"engine_args": {"max_num_seqs": 32, "quantization": "fp8"}, "market": "spot"}


def test_slo_limits_prefer_the_deployment_then_star() -> None:
    config = OptiInfraConfig(
        slos=[
            {"deployment": "*", "ttft_p95_seconds": 2.0, "max_error_rate": 0.01},
            {"deployment": "chat", "ttft_p95_seconds": 0.5},
        ],
        policies=[{"tenant": "default", "max_quality_drop": 0.05}],
    )
    chat = slo_limits(config, "default", "chat")
    assert (chat.ttft_p95_s, chat.max_error_rate, chat.max_quality_drop) == (0.5, None, 0.05)
    other = slo_limits(config, "default", "rag")
    assert (other.ttft_p95_s, other.max_error_rate) == (2.0, 0.01)


def test_expected_saving_per_hour() -> None:
    assert expected_saving_usd_per_hour({"cost_usd_per_month": {"value": -730.0}}) == 1.0
    assert expected_saving_usd_per_hour({"cost_usd_per_hour": {"value": -2.5}}) == 2.5
    assert expected_saving_usd_per_hour({"gpus": {"value": -1}}) is None


def test_cost_is_each_instance_latest_price_summed() -> None:
    t0 = datetime(2026, 11, 24, tzinfo=UTC)
    prices = pd.DataFrame(
        {
            "instance": ["a", "a", "b"],
            "ts": [t0, t0 + timedelta(minutes=1), t0],
            "value": [10.0, 4.0, 6.0],
        }
    )
    assert cost_per_hour(prices) == 10.0
    assert cost_per_hour(prices.iloc[0:0]) is None
    deltas = realised_deltas(30.0, 20.0)
    assert deltas["cost_usd_per_hour"]["value"] == -10.0
    assert deltas["cost_usd_per_month"]["value"] == -7300.0
    assert realised_deltas(None, 1.0) == {}
