"""The application agent's assessments: quality risk against the measured margin."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from agents.common.agent import AgentDeps
from agents.common.proposals import Proposal, Verdict
from agents.coordinator import coordinate
from agents.registry import all_agents, get_agent
from optiinfra.config import OptiInfraConfig
from optiinfra.config.schema import Policy
from optiinfra.models import QualityEvent
from tests.agents.fleets import NOW, context, default_like


def _events(deployment: str, config_id: str, f1: np.ndarray) -> pd.DataFrame:
    rows = [
        QualityEvent(ts=NOW - timedelta(minutes=len(f1) - k), provider="sandbox",
                     deployment=deployment, config_id=config_id, item_id=f"q{k}",
                     exact_match=float(v > 0.5), f1=float(v))
        for k, v in enumerate(f1)
    ]  # fmt: skip
    return QualityEvent.to_frame(rows)


def _quantize(target: str, how: str = "fp8") -> Proposal:
    return Proposal(agent="performance", kind="quantization", detector="decode_bound",
                    provider="sandbox", target=target, title=f"{how} weights on {target}",
                    change={"engine_args": {"quantization": how}}, confidence=0.5)  # fmt: skip


def _assess(quality: pd.DataFrame, proposal: Proposal, drop: float = 0.10):
    config = OptiInfraConfig(policies=[Policy(max_quality_drop=drop)])
    ctx = context(default_like(), config=config, quality=quality)
    return get_agent("application").assess(proposal, ctx, AgentDeps()), ctx


def test_quantization_with_a_thin_margin_is_blocked_and_the_plan_says_why() -> None:
    rng = np.random.default_rng(1)
    # 60 probes, F1 spread over the whole range: the lower bound sits near the floor.
    quality = _events("rag-8b", "c1", rng.uniform(0.3, 1.0, 60))
    assessment, ctx = _assess(quality, _quantize("rag-8b"), drop=0.10)
    assert assessment is not None and assessment.verdict == Verdict.BLOCK
    assert "margin" in assessment.reason and "10%" in assessment.reason
    result = coordinate([_quantize("rag-8b")], all_agents(), ctx, AgentDeps())
    assert result.plans == []
    [decision] = result.decisions
    assert decision.status == "discarded" and "blocked by application" in decision.reason


def test_quantization_with_room_to_spare_is_ok() -> None:
    rng = np.random.default_rng(2)
    quality = _events("rag-8b", "c1", np.clip(rng.normal(0.9, 0.02, 400), 0, 1))
    assessment, _ = _assess(quality, _quantize("rag-8b", "fp8"), drop=0.10)
    assert assessment is not None and assessment.verdict == Verdict.OK
    assert assessment.predicted_deltas["quality_relative"].value == pytest.approx(-0.01)


def test_too_few_probes_is_a_concern_never_fine() -> None:
    quality = _events("rag-8b", "c1", np.full(5, 0.9))
    assessment, _ = _assess(quality, _quantize("rag-8b"))
    assert assessment is not None and assessment.verdict == Verdict.CONCERN
    assert "unknown" in assessment.reason


def test_no_probes_at_all_is_a_concern() -> None:
    quality = _events("chat-8b", "c1", np.full(50, 0.9))  # another deployment's probes
    assessment, _ = _assess(quality, _quantize("rag-8b"))
    assert assessment is not None and assessment.verdict == Verdict.CONCERN
    assert "no quality probes" in assessment.reason


@pytest.mark.parametrize(
    "change",
    [{"gpu": "L4", "replicas": 1}, {"market": "spot"}, {"engine_args": {"max_num_seqs": 8}}],
)
def test_changes_that_keep_the_numerics_are_ok(change: dict) -> None:
    proposal = Proposal(agent="cost", kind="right_size", detector="right_size",
                        provider="sandbox", target="rag-8b", title="x", change=change,
                        confidence=0.7)  # fmt: skip
    assessment, _ = _assess(_events("rag-8b", "c1", np.full(50, 0.9)), proposal)
    assert assessment is not None and assessment.verdict == Verdict.OK


def test_a_regression_between_configurations_is_reported_with_its_effect_size() -> None:
    rng = np.random.default_rng(3)
    before = _events("rag-8b", "c1", np.clip(rng.normal(0.8, 0.1, 200), 0, 1))
    after = _events("rag-8b", "c2", np.clip(rng.normal(0.6, 0.1, 200), 0, 1))
    after["ts"] = after["ts"] + pd.Timedelta(hours=1)
    ctx = context(default_like(), quality=pd.concat([before, after], ignore_index=True))
    _, notes = get_agent("application").run(ctx, AgentDeps())
    [finding] = [n for n in notes if n.startswith("rag-8b: quality of configuration c2")]
    assert "regression" in finding and "c1" in finding
