"""Idle detector: scale to zero only on enough evidence of no use, and say why not."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pandas as pd
import pytest

from agents.common.proposals import HOURS_PER_MONTH, Proposal, Risk
from agents.context import FleetContext
from agents.cost.detectors.idle import detect_idle
from agents.cost.thresholds import CostThresholds
from tests.agents.fleets import NOW, Fleet, context, inventory_rows, recent_rows

THRESHOLDS = CostThresholds()


def idle_fleet(**changes: object) -> Fleet:
    """A deployment that served nothing for an hour, 12 scrapes per series."""
    base = Fleet(
        "legacy",
        model="mistralai/Mistral-7B-v0.1",
        gpu="A10G",
        price=1.006,
        instance_type="g5.xlarge",
        replicas=2,
        stateless=True,
        rate=0.0,
        running=0.0,
        waiting=0.0,
        ttft_p95=None,
        itl_p95=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def run(*fleets: Fleet) -> tuple[list[Proposal], list[str]]:
    return detect_idle(context(list(fleets)), THRESHOLDS)


def test_zero_traffic_over_enough_data_is_proposed_for_shutdown() -> None:
    proposals, notes = run(idle_fleet())
    assert notes == []
    [p] = proposals
    assert (p.kind, p.detector, p.target, p.provider) == (
        "idle_shutdown",
        "idle",
        "legacy",
        "sandbox",
    )
    assert p.change == {"replicas": 0, "from_replicas": 2}
    # Two replicas at $1.006/h: the whole deployment's price, 730 h a month.
    assert p.expected_deltas["cost_usd_per_hour"].value == pytest.approx(-2.012)
    assert p.expected_deltas["cost_usd_per_month"].value == pytest.approx(-2.012 * HOURS_PER_MONTH)
    assert p.monthly_saving_usd() == pytest.approx(1468.76)
    assert p.expected_deltas["gpus"].value == -2.0
    assert p.evidence["samples"] >= THRESHOLDS.idle_min_samples
    assert p.evidence["window_seconds"] == 3600


def test_risk_is_low_for_stateless_and_medium_otherwise() -> None:
    [stateless] = run(idle_fleet())[0]
    [stateful] = run(idle_fleet(stateless=False))[0]
    assert stateless.risk is Risk.LOW
    assert stateful.risk is Risk.MEDIUM
    assert "not marked stateless" in stateful.narrative
    assert "not marked stateless" not in stateless.narrative


def test_confidence_grows_with_the_hours_of_silence() -> None:
    [hour] = run(idle_fleet())[0]
    [day] = run(idle_fleet(span=timedelta(hours=24)))[0]
    assert hour.confidence == pytest.approx(round(0.5 + 0.45 / 24, 3))
    assert day.confidence == pytest.approx(0.95)


@pytest.mark.parametrize(
    ("span", "samples"),
    [
        (timedelta(minutes=5), 12),  # short span, plenty of scrapes
        (timedelta(0), 1),  # one scrape: first and last sample coincide
    ],
)
def test_too_little_data_is_unknown_not_idle(span: timedelta, samples: int) -> None:
    proposals, notes = run(idle_fleet(span=span, samples=samples))
    assert proposals == []
    [note] = notes
    assert "sandbox/legacy" in note and "unknown" in note


def test_two_scrapes_are_too_few_samples_to_say_idle() -> None:
    # Two scrapes an hour apart: enough span, but fewer scrapes than idle_min_samples (3).
    proposals, notes = run(idle_fleet(replicas=1, samples=2))
    assert proposals == []
    assert any("unknown" in n for n in notes)


def test_span_of_engine_metrics_decides_not_the_gpu_exporters() -> None:
    fleet = idle_fleet(replicas=1)
    engine = {
        "request_success_per_second",
        "prompt_tokens_per_second",
        "generation_tokens_per_second",
        "requests_running",
        "requests_waiting",
        "kv_cache_usage_ratio",
        "preemptions_per_second",
    }
    recent = pd.DataFrame(recent_rows(fleet))
    is_engine = recent["metric"].isin(engine)
    recent.loc[is_engine, "first_ts"] = pd.Timestamp(NOW - timedelta(minutes=2))
    recent.loc[is_engine, "n"] = 5
    ctx = FleetContext.from_frames(
        now=NOW,
        window_seconds=3600,
        inventory=pd.DataFrame(inventory_rows(fleet)),
        recent=recent,
    )
    proposals, notes = detect_idle(ctx, THRESHOLDS)
    assert proposals == []
    assert any("unknown" in n for n in notes)


def test_missing_request_rate_is_unknown() -> None:
    proposals, notes = run(idle_fleet(rate=None))
    assert proposals == []
    [note] = notes
    assert "no request-rate metric" in note


def test_no_engine_metrics_at_all_is_unknown() -> None:
    proposals, notes = run(idle_fleet(metrics=False))
    assert proposals == []
    [note] = notes
    assert "no engine metrics" in note


def test_traffic_above_the_threshold_is_not_idle() -> None:
    proposals, notes = run(idle_fleet(rate=0.01, output_tokens=0.0))
    assert proposals == [] and notes == []


def test_traffic_at_the_threshold_is_idle() -> None:
    # 1e-3 requests/s is "at or below"; no tokens generated, nothing running.
    proposals, _ = run(idle_fleet(rate=THRESHOLDS.idle_max_request_rate, output_tokens=0.0))
    assert len(proposals) == 1


@pytest.mark.parametrize(
    "activity",
    [
        {"running": 0.5},  # requests in flight, none completed in the window
        {"waiting": 1.0},  # requests queued
    ],
)
def test_engine_activity_without_completed_requests_is_not_idle(
    activity: dict[str, float],
) -> None:
    proposals, notes = run(idle_fleet(**activity))
    assert proposals == [] and notes == []


def test_tokens_generated_without_completed_requests_is_not_idle() -> None:
    fleet = idle_fleet(replicas=1)
    recent = pd.DataFrame(recent_rows(fleet))
    recent.loc[recent["metric"] == "generation_tokens_per_second", "mean"] = 12.0
    ctx = FleetContext.from_frames(
        now=NOW, window_seconds=3600, inventory=pd.DataFrame(inventory_rows(fleet)), recent=recent
    )
    assert detect_idle(ctx, THRESHOLDS) == ([], [])


def test_gpu_memory_in_use_is_not_evidence_of_use() -> None:
    fleet = idle_fleet(replicas=1)
    recent = pd.DataFrame(recent_rows(fleet))
    memory = recent["metric"] == "gpu_memory_used_bytes"
    assert memory.any()
    recent.loc[memory, ["mean", "p95", "max", "last"]] = 22.5e9  # 94% of an A10G's 24 GB
    recent.loc[recent["metric"] == "kv_cache_usage_ratio", ["mean", "p95", "max"]] = 0.9
    ctx = FleetContext.from_frames(
        now=NOW, window_seconds=3600, inventory=pd.DataFrame(inventory_rows(fleet)), recent=recent
    )
    [p] = detect_idle(ctx, THRESHOLDS)[0]
    assert p.kind == "idle_shutdown"
    assert "gpu_memory_note" in p.evidence


def test_unknown_price_is_noted_and_no_saving_is_invented() -> None:
    proposals, notes = run(idle_fleet(price=None))
    assert proposals == []
    [note] = notes
    assert "price is unknown" in note


def test_saving_below_the_review_threshold_is_dropped() -> None:
    # $0.01/h x 2 x 730 = $14.60/month < $25.
    proposals, notes = run(idle_fleet(price=0.01))
    assert proposals == [] and notes == []


def test_only_the_idle_deployment_of_a_fleet_is_proposed() -> None:
    busy = Fleet("chat", replicas=2, rate=1.0)
    proposals, _ = run(busy, idle_fleet())
    assert [p.target for p in proposals] == ["legacy"]
