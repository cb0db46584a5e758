"""Commitments sized at a low percentile of 30+ days of on-demand instances per hour."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from agents.common.proposals import HOURS_PER_MONTH, Proposal
from agents.cost.commitments import DEFAULT_COMMITMENTS, CommitmentTerm
from agents.cost.detectors.reserved import detect_reserved
from agents.cost.thresholds import CostThresholds
from optiinfra.catalog.prices import quote
from tests.agents.fleets import NOW, Fleet, context

THRESHOLDS = CostThresholds()
START = pd.Timestamp(NOW - timedelta(days=30)).floor("h")


def hours_frame(
    counts: list[int],
    *,
    market: str = "on-demand",
    cloud: str = "aws",
    region: str = "us-east-1",
    gpu: str = "L4",
    gpu_count: int = 1,
    provider: str = "sandbox",
    skip_zero: bool = True,
) -> pd.DataFrame:
    """One row per hour from START with ``counts[h]`` running instances (zeros left out,
    as the inventory query leaves out hours with no instance)."""
    rows = [
        {
            "tenant": "default",
            "provider": provider,
            "cloud": cloud,
            "region": region,
            "gpu": gpu,
            "gpu_count": gpu_count,
            "market": market,
            "hour": START + pd.Timedelta(hours=h),
            "instances": n,
        }
        for h, n in enumerate(counts)
        if n or not skip_zero
    ]
    return pd.DataFrame(rows)


def run(
    fleet_hours: pd.DataFrame, commitments: dict[str, CommitmentTerm] | None = None
) -> tuple[list[Proposal], list[str]]:
    ctx = context([Fleet("chat")], fleet_hours=fleet_hours)
    return detect_reserved(ctx, THRESHOLDS, commitments)


def steady(days: float = 30) -> list[int]:
    """100 hours at 2 instances, the rest at 4: the 10th percentile is 2."""
    hours = round(days * 24)
    return [2] * 100 + [4] * (hours - 100)


def test_commitment_is_sized_at_the_10th_percentile_with_the_documented_saving() -> None:
    usage = steady()
    assert len(usage) == 720
    [p], notes = run(hours_frame(usage))
    assert notes == []
    p_od = quote("L4", 1, "aws", "us-east-1", "on-demand").usd_per_hour
    discount = DEFAULT_COMMITMENTS["aws"].discount
    # Sorted usage: 100 x 2 then 620 x 4; the 10th percentile sits at rank 71.9 -> 2.
    committed = 2
    assert p.change["count"] == committed
    assert p.change["instance_type"] == "g6.xlarge"
    assert p.change["term_months"] == 12
    # Per hour: without = u * p; with = c * p * (1 - d) + max(u - c, 0) * p.
    # Every hour has u >= 2, so the saving per hour is c * p * d = 2 * p * 0.30.
    saving_h = committed * p_od * discount
    assert p.expected_deltas["cost_usd_per_month"].value == pytest.approx(
        -saving_h * HOURS_PER_MONTH
    )
    assert p.expected_deltas["commitment_usd_per_month"].value == pytest.approx(
        committed * p_od * (1 - discount) * HOURS_PER_MONTH
    )
    assert p.evidence["history_hours"] == 720
    assert p.evidence["hours_commitment_fully_used"] == 1.0
    assert p.evidence["hourly_instances_min_median_max"] == [2.0, 4.0, 4.0]
    assert p.target == "aws/us-east-1/L4x1"
    assert (p.tenant, p.provider, p.kind) == ("default", "sandbox", "reserved_capacity")


def test_saving_counts_the_hours_a_commitment_sits_unused() -> None:
    # 30 hours at 1 instance, 690 at 3: the 10th percentile is 3 (rank 71.9 > 30), so in
    # 30 hours two of the three committed instances are paid for and unused.
    usage = [1] * 30 + [3] * 690
    [p], _ = run(hours_frame(usage))
    assert p.change["count"] == 3
    p_od = quote("L4", 1, "aws", "us-east-1", "on-demand").usd_per_hour
    d = DEFAULT_COMMITMENTS["aws"].discount
    without = sum(usage) * p_od
    with_commitment = 720 * 3 * p_od * (1 - d)  # nothing runs above the commitment
    expected_month = (without - with_commitment) / 720 * HOURS_PER_MONTH
    assert expected_month == pytest.approx((3 * 0.3 - 2 * 30 / 720) * p_od * HOURS_PER_MONTH)
    assert p.monthly_saving_usd() == pytest.approx(expected_month)
    assert p.evidence["hours_commitment_fully_used"] == pytest.approx(690 / 720, abs=1e-3)


def test_spot_hours_are_ignored() -> None:
    on_demand = hours_frame(steady())
    with_spot = pd.concat([on_demand, hours_frame([10] * 720, market="spot")], ignore_index=True)
    [alone], _ = run(on_demand)
    [mixed], _ = run(with_spot)
    assert mixed.change == alone.change
    assert mixed.monthly_saving_usd() == pytest.approx(alone.monthly_saving_usd())


def test_the_stores_on_demand_spelling_counts() -> None:
    [p], _ = run(hours_frame(steady(), market="on_demand"))
    assert p.change["count"] == 2


def test_only_spot_history_proposes_nothing() -> None:
    assert run(hours_frame([10] * 720, market="spot")) == ([], [])


def test_hours_without_on_demand_instances_count_as_zero() -> None:
    # 80 hours mid-window have no on-demand instance (absent rows): the 10th percentile
    # is 0, so nothing is committed.
    usage = [4] * 320 + [0] * 80 + [4] * 320
    proposals, notes = run(hours_frame(usage))
    assert proposals == [] and notes == []


@pytest.mark.parametrize("days", [1, 29])
def test_less_than_30_days_of_history_is_noted(days: int) -> None:
    proposals, notes = run(hours_frame(steady(days) if days > 5 else [3] * 24 * days))
    assert proposals == []
    [note] = notes
    assert note.startswith("commitments:")
    assert "30 needed" in note


def test_no_history_says_nothing() -> None:
    assert run(pd.DataFrame()) == ([], [])


def test_cloud_without_a_commitment_rate_is_noted() -> None:
    usage = [3] * 720
    proposals, notes = run(hours_frame(usage, cloud="azure", region="eastus", gpu="A100"))
    assert proposals == []
    assert notes == ["commitments: no commitment rate known for cloud 'azure'"]


def test_a_teams_own_commitment_table_replaces_the_defaults() -> None:
    usage = [3] * 720
    own = {
        "aws": CommitmentTerm(
            cloud="aws", name="negotiated", term_months=36, discount=0.5, source="contract"
        )
    }
    [p], _ = run(hours_frame(usage), own)
    p_od = quote("L4", 1, "aws", "us-east-1", "on-demand").usd_per_hour
    assert p.change["commitment"] == "negotiated"
    assert p.monthly_saving_usd() == pytest.approx(3 * p_od * 0.5 * HOURS_PER_MONTH)


def test_cloud_falls_back_to_the_provider_kind() -> None:
    frame = hours_frame([3] * 720, cloud="", provider="gcp-main", region="us-central1")
    ctx = context([Fleet("chat")], fleet_hours=frame)
    ctx.provider_kinds = {"gcp-main": "gcp"}
    [p], notes = detect_reserved(ctx, THRESHOLDS)
    assert notes == []
    assert p.target == "gcp/us-central1/L4x1"
    p_od = quote("L4", 1, "gcp", "us-central1", "on-demand").usd_per_hour
    assert p.monthly_saving_usd() == pytest.approx(
        3 * p_od * DEFAULT_COMMITMENTS["gcp"].discount * HOURS_PER_MONTH
    )


def test_percentile_matches_numpy_on_an_irregular_history() -> None:
    rng = np.random.default_rng(7)
    usage = list(rng.integers(3, 9, size=720))
    [p], _ = run(hours_frame([int(u) for u in usage]))
    assert p.change["count"] == int(np.floor(np.percentile(usage, 10)))
