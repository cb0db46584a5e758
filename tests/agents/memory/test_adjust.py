"""Recalled outcomes adjust confidence, expected saving and the first rollout step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agents.common.proposals import Delta, Proposal, Risk
from agents.memory import DecisionFeatures, OutcomeRecord, RecalledOutcome, adjust_proposal
from agents.memory.adjust import adjust

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _proposal(confidence: float = 0.8) -> Proposal:
    return Proposal(
        agent="cost",
        kind="spot_migration",
        detector="spot",
        provider="fleet",
        target="chat",
        title="Move chat to spot",
        change={"market": "spot"},
        expected_deltas={
            "cost_usd_per_hour": Delta(
                value=-1.0, unit="USD/h", low=-1.2, high=-0.8, basis="price table"
            ),
            "cost_usd_per_month": Delta(value=-730.0, unit="USD/month"),
            "ttft_p95_s": Delta(value=0.01, unit="s"),
        },
        confidence=confidence,
        risk=Risk.LOW,
    )


def _recalled(
    similarity: float,
    *,
    kind: str = "spot_migration",
    expected: float | None = 730.0,
    realised: float | None = 730.0,
    rolled_back: bool = False,
    step: float = 10.0,
    days: int = 0,
    plan: str = "old",
) -> RecalledOutcome:
    return RecalledOutcome(
        similarity=similarity,
        record_id=f"outcome:{plan}:r",
        features=DecisionFeatures(kind=kind, expected_saving_usd_per_month=expected),
        outcome=OutcomeRecord(
            plan_id=plan,
            kind=kind,
            target="chat",
            saving_usd_per_month=realised,
            rolled_back=rolled_back,
            reason="interruptions broke the TTFT SLO" if rolled_back else "",
            first_step_percent=step,
            finished_at=T0 + timedelta(days=days),
        ),
    )


def test_nothing_recalled_changes_nothing() -> None:
    p = _proposal()
    assert adjust_proposal(p, []) == p
    assert adjust_proposal(p, [_recalled(0.99, kind="right_size")]) == p


def test_a_smaller_realised_saving_lowers_confidence_and_the_saving() -> None:
    p = _proposal()
    out = adjust_proposal(p, [_recalled(0.98, realised=365.0), _recalled(0.92, realised=365.0)])
    assert out is not None
    # α = 1.9 / 2.9; confidence moves toward 0.5 by α, the saving by the same share.
    alpha = 1.9 / 2.9
    assert out.confidence == pytest.approx((1 - alpha) * 0.8 + alpha * 0.5, abs=1e-3)
    factor = (1 - alpha) + alpha * 0.5
    month = out.expected_deltas["cost_usd_per_month"]
    assert month.value == pytest.approx(-730.0 * factor)
    hour = out.expected_deltas["cost_usd_per_hour"]
    assert (hour.value, hour.low, hour.high) == pytest.approx(
        (-factor, -1.2 * factor, -0.8 * factor)
    )
    assert "price table; × 0.67 from 2 similar past outcome(s)" in hour.basis
    assert out.expected_deltas["ttft_p95_s"] == p.expected_deltas["ttft_p95_s"]
    assert out.evidence["memory_adjustment"]["saving_factor"] == pytest.approx(factor, abs=1e-3)
    assert [s["similarity"] for s in out.evidence["similar_outcomes"]] == [0.98, 0.92]
    assert out.recalled == out.evidence["similar_outcomes"]
    assert "first_step_percent" not in out.evidence and out.risk == Risk.LOW


def test_a_saving_realised_in_full_raises_confidence_within_bounds() -> None:
    out = adjust_proposal(_proposal(0.6), [_recalled(0.99, realised=2000.0)] * 3)
    assert out is not None
    assert 0.6 < out.confidence <= 0.95
    # capped at 1.5 × expected
    assert out.expected_deltas["cost_usd_per_month"].value > -730.0 * 1.5


def test_a_rolled_back_similar_decision_halves_the_first_step() -> None:
    p = _proposal()
    out = adjust_proposal(p, [_recalled(0.97, realised=0.0, rolled_back=True)])
    assert out is not None
    assert out.evidence["first_step_percent"] == 5.0
    assert "rolled back at a first step of 10%" in out.evidence["first_step_reason"]
    assert out.risk == Risk.MEDIUM
    assert out.confidence < p.confidence  # a rollback realised nothing
    # the saving itself is not blamed on a rollback
    assert out.expected_deltas == p.expected_deltas
    after_five = adjust_proposal(p, [_recalled(0.97, rolled_back=True, step=5.0)])
    assert after_five is not None and after_five.evidence["first_step_percent"] == 2.0


def test_repeated_rollbacks_drop_the_proposal() -> None:
    twice = adjust(
        _proposal(),
        [
            _recalled(0.99, rolled_back=True, plan="a"),
            _recalled(0.96, rolled_back=True, step=5.0, plan="b", days=1),
        ],
    )
    assert twice.proposal is None
    assert "rolled back 2 times" in twice.reason and "a, b" in twice.reason
    at_bottom = adjust(_proposal(), [_recalled(0.91, rolled_back=True, step=2.0)])
    assert at_bottom.proposal is None and "first step of 2%" in at_bottom.reason


def test_a_later_success_answers_an_earlier_rollback() -> None:
    out = adjust_proposal(
        _proposal(),
        [
            _recalled(0.99, rolled_back=True, plan="a"),
            _recalled(0.98, rolled_back=True, plan="b", days=1),
            _recalled(0.97, plan="c", days=2),
        ],
    )
    assert out is not None
    assert "first_step_percent" not in out.evidence


def test_a_less_similar_rollback_only_informs_confidence() -> None:
    out = adjust_proposal(_proposal(), [_recalled(0.86, rolled_back=True)])
    assert out is not None
    assert "first_step_percent" not in out.evidence
    assert out.confidence < 0.8
