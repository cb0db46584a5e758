"""Spot detector: all but one on-demand replica of a stateless deployment go to spot."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pandas as pd
import pytest

from agents.common.proposals import HOURS_PER_MONTH, Proposal, Risk
from agents.context import FleetContext
from agents.cost.detectors.spot import ReplicaCapacity, detect_spot
from agents.cost.thresholds import CostThresholds
from optiinfra.catalog.prices import quote
from tests.agents.fleets import NOW, Fleet, context, inventory_rows, recent_rows

THRESHOLDS = CostThresholds()
ON_DEMAND_L4 = 0.8048  # g6.xlarge, aws us-east-1 (the price table's on-demand figure)


def chat(**changes: Any) -> Fleet:
    """Three stateless on-demand L4 replicas on AWS us-east-1 serving 0.9 requests/s."""
    base = Fleet("chat", replicas=3, stateless=True, rate=0.9, price=ON_DEMAND_L4)
    return replace(base, **changes)


def run(fleet: Fleet, capacity: ReplicaCapacity | None = None) -> tuple[list[Proposal], list[str]]:
    return detect_spot(context([fleet]), THRESHOLDS, capacity)


def run_markets(
    fleet: Fleet, markets: list[str], prices: list[float], capacity: ReplicaCapacity | None = None
) -> tuple[list[Proposal], list[str]]:
    """The same deployment with each replica's market and price set one by one."""
    inventory = pd.DataFrame(inventory_rows(fleet))
    assert len(inventory) == len(markets) == len(prices)
    inventory["market"] = markets
    inventory["price_usd_per_hour"] = prices
    ctx = FleetContext.from_frames(
        now=NOW,
        window_seconds=3600,
        inventory=inventory,
        recent=pd.DataFrame(recent_rows(fleet)),
    )
    return detect_spot(ctx, THRESHOLDS, capacity)


def test_moves_all_but_one_on_demand_replica_priced_from_the_spot_table() -> None:
    spot = quote("L4", 1, "aws", "us-east-1", "spot")
    [p], notes = run(chat())
    assert notes == []
    assert (p.kind, p.detector, p.target) == ("spot_migration", "spot", "chat")
    assert p.change == {
        "market": "spot",
        "replicas_to_spot": 2,
        "keep_on_demand": 1,
        "instance_type": spot.instance_type,
    }
    saving_h = (ON_DEMAND_L4 - spot.usd_per_hour) * 2
    assert p.expected_deltas["cost_usd_per_hour"].value == pytest.approx(-saving_h)
    assert p.expected_deltas["cost_usd_per_month"].value == pytest.approx(
        -saving_h * HOURS_PER_MONTH
    )
    assert p.evidence["spot_price_usd_per_hour"] == spot.usd_per_hour
    assert p.evidence["capacity_lost_if_all_spot_interrupted"] == pytest.approx(0.667, abs=1e-3)
    assert p.evidence["interruption_notice_seconds"] == 120
    # No capacity callback: whether the floor carries the load is unknown, not "yes".
    assert p.evidence["on_demand_floor_carries_load"] is None
    assert p.risk is Risk.LOW


@pytest.mark.parametrize("replicas", [2, 5])
def test_never_the_last_on_demand_replica(replicas: int) -> None:
    [p], _ = run(chat(replicas=replicas))
    assert p.change["replicas_to_spot"] == replicas - 1
    assert p.change["keep_on_demand"] == 1


def test_unknown_inventory_price_falls_back_to_the_on_demand_table() -> None:
    spot = quote("L4", 1, "aws", "us-east-1", "spot")
    on_demand = quote("L4", 1, "aws", "us-east-1", "on-demand")
    [p], _ = run(chat(price=None))
    expected = (on_demand.usd_per_hour - spot.usd_per_hour) * 2
    assert p.expected_deltas["cost_usd_per_hour"].value == pytest.approx(-expected)


def test_not_stateless_is_left_alone() -> None:
    assert run(chat(stateless=False)) == ([], [])


def test_a_single_replica_is_left_alone() -> None:
    assert run(chat(replicas=1)) == ([], [])


def test_an_idle_deployment_is_the_idle_detectors_business() -> None:
    assert run(chat(rate=0.0)) == ([], [])


def test_already_all_spot_but_one_gives_nothing() -> None:
    spot = quote("L4", 1, "aws", "us-east-1", "spot").usd_per_hour
    proposals, notes = run_markets(
        chat(), ["on-demand", "spot", "spot"], [ON_DEMAND_L4, spot, spot]
    )
    assert proposals == [] and notes == []


def test_some_already_on_spot_moves_only_the_remaining_on_demand_ones() -> None:
    spot = quote("L4", 1, "aws", "us-east-1", "spot").usd_per_hour
    [p], _ = run_markets(
        chat(replicas=4),
        ["on-demand", "on-demand", "on-demand", "spot"],
        [ON_DEMAND_L4, ON_DEMAND_L4, ON_DEMAND_L4, spot],
    )
    assert p.change["replicas_to_spot"] == 2
    assert p.change["keep_on_demand"] == 1
    assert p.evidence["capacity_lost_if_all_spot_interrupted"] == pytest.approx(0.75)


def test_saving_is_from_the_on_demand_price_of_the_replicas_that_move() -> None:
    spot = quote("L4", 1, "aws", "us-east-1", "spot").usd_per_hour
    [p], _ = run_markets(
        chat(replicas=4),
        ["on-demand", "on-demand", "spot", "spot"],
        [ON_DEMAND_L4, ON_DEMAND_L4, spot, spot],
    )
    assert p.change["replicas_to_spot"] == 1
    assert p.expected_deltas["cost_usd_per_hour"].value == pytest.approx(-(ON_DEMAND_L4 - spot))


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"region": "mars-1"}, "unknown region"),
        ({"cloud": "gcp", "region": "us-central1", "gpu": "A10G"}, "no spot offering"),
    ],
)
def test_unknown_region_or_gpu_price_is_noted(changes: dict[str, Any], needle: str) -> None:
    proposals, notes = run(chat(**changes))
    assert proposals == []
    [note] = notes
    assert note.startswith("sandbox/chat: no spot price")
    assert needle in note


def test_floor_too_small_for_the_load_is_medium_risk() -> None:
    seen: list[tuple[dict[str, Any], dict[str, Any] | None]] = []

    def small(deployment: dict[str, Any], stats: dict[str, Any] | None) -> float:
        seen.append((deployment, stats))
        return 0.1  # one replica serves 0.1 requests/s; the deployment gets 0.9

    [p], _ = run(chat(), small)
    assert seen and seen[0][0]["deployment"] == "chat" and seen[0][1] is not None
    assert p.evidence["on_demand_floor_carries_load"] is False
    assert p.evidence["on_demand_floor_capacity_rps"] == pytest.approx(0.1)
    assert p.risk is Risk.MEDIUM
    assert p.confidence == pytest.approx(0.6)
    assert "would not carry the observed load" in p.narrative


@pytest.mark.parametrize(
    ("capacity", "carried"),
    [(lambda d, s: 5.0, True), (lambda d, s: None, None), (lambda d, s: 0.9, True)],
)
def test_floor_that_carries_the_load_or_unknown_is_low_risk(
    capacity: Callable[[dict[str, Any], dict[str, Any] | None], float | None],
    carried: bool | None,
) -> None:
    [p], _ = run(chat(), capacity)
    assert p.evidence["on_demand_floor_carries_load"] is carried
    assert p.risk is Risk.LOW
    assert p.confidence == pytest.approx(0.8)
