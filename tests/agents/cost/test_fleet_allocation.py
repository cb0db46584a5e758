"""The fleet-wide allocation figure: GPU types and markets in one integer program."""

from __future__ import annotations

import re

from agents.cost.allocation import GpuOption
from agents.cost.detectors.fleet_allocation import DeploymentCandidates, fleet_allocation_notes
from optiinfra.catalog.prices import quote


def _chat(stateless: bool) -> DeploymentCandidates:
    l4 = quote("L4", 1, "aws", "us-east-1", "on-demand")
    current = GpuOption("current", "L4", 1, "on-demand", l4.usd_per_hour)
    return DeploymentCandidates(
        name="chat", cloud="aws", region="us-east-1", stateless=stateless, rate_rps=1.0,
        min_replicas=2, current_replicas=3, current_usd_per_hour=3 * l4.usd_per_hour,
        options=[current], capacities={"current": 0.5},
    )  # fmt: skip


def _figures(note: str) -> tuple[float, float, int]:
    found = re.search(r"\$([\d,.]+)/h against \$([\d,.]+)/h today.*; (\d+) deployment", note)
    assert found, note
    best, today, mixed = found.groups()
    return float(best.replace(",", "")), float(today.replace(",", "")), int(mixed)


def test_stateless_deployments_may_mix_spot_keeping_one_on_demand() -> None:
    [note] = fleet_allocation_notes([_chat(stateless=True)])
    best, today, mixed = _figures(note)
    on_demand = quote("L4", 1, "aws", "us-east-1", "on-demand").usd_per_hour
    spot = quote("L4", 1, "aws", "us-east-1", "spot").usd_per_hour
    assert today == round(3 * on_demand, 2)
    # 1.0 rps at 0.5 per replica: two replicas, one of them on spot.
    assert best == round(on_demand + spot, 2)
    assert mixed == 1
    assert "optimal" in note


def test_stateful_deployments_stay_on_demand() -> None:
    [note] = fleet_allocation_notes([_chat(stateless=False)])
    best, _, mixed = _figures(note)
    assert best == round(2 * quote("L4", 1, "aws", "us-east-1", "on-demand").usd_per_hour, 2)
    assert mixed == 0


def test_nothing_to_solve_says_nothing() -> None:
    assert fleet_allocation_notes([]) == []
