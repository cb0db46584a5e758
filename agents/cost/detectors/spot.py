"""Spot migration: stateless deployments with enough replicas move all but their
on-demand floor to spot, priced from the public spot tables.

Never the last on-demand replica: at least one stays on-demand so an interruption
(AWS gives two minutes' notice, GCP and Azure thirty seconds) degrades the deployment
instead of taking it down. The interruption risk is stated as the share of capacity an
interruption of every spot replica would remove, and whether the on-demand floor alone
carries the observed load (from the capacity model, when it can tell).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from agents.common.proposals import HOURS_PER_MONTH, Delta, Proposal, Risk
from agents.context import FleetContext
from agents.cost.thresholds import CostThresholds
from optiinfra.catalog import CatalogError
from optiinfra.catalog.prices import quote

AGENT = "cost"
NOTICE_SECONDS = {"aws": 120, "gcp": 30, "azure": 30}

#: (deployment row, stats row or None) -> requests/s one replica serves within the SLO.
ReplicaCapacity = Callable[[dict[str, Any], dict[str, Any] | None], float | None]


def detect_spot(
    context: FleetContext,
    thresholds: CostThresholds,
    replica_capacity: ReplicaCapacity | None = None,
) -> tuple[list[Proposal], list[str]]:
    proposals: list[Proposal] = []
    notes: list[str] = []
    for deployment, stats in context.deployment_rows():
        name = f"{deployment['provider']}/{deployment['deployment']}"
        if deployment["stateless"] is not True or deployment["on_demand"] < 1:
            continue
        replicas = int(deployment["replicas"])
        # Keep one on-demand replica; the rest may move (already-spot ones stay spot).
        movable = int(deployment["on_demand"]) - 1
        if replicas < thresholds.spot_min_replicas or movable < 1:
            continue
        if stats is not None and float(stats.get("request_rate") or 0) <= 0:
            continue  # idle: the idle detector's business, not spot's
        cloud = context.cloud_of(deployment)
        try:
            offer = quote(
                deployment["gpu"], int(deployment["gpu_count"]), cloud, deployment["region"], "spot"
            )
            on_demand = quote(
                deployment["gpu"],
                int(deployment["gpu_count"]),
                cloud,
                deployment["region"],
                "on-demand",
            )
        except CatalogError as exc:
            notes.append(f"{name}: no spot price ({exc})")
            continue
        # What a moved replica costs today: the on-demand replicas' price, not a median
        # that already includes spot ones.
        current = float(deployment["on_demand_price"])
        if math.isnan(current):
            current = on_demand.usd_per_hour
        per_replica = current - offer.usd_per_hour
        if per_replica <= 0:
            continue
        saving_h = per_replica * movable
        saving_m = saving_h * HOURS_PER_MONTH
        if saving_m < thresholds.min_saving_usd_per_month:
            continue
        spot_after = int(deployment["spot"]) + movable
        lost_share = spot_after / replicas
        floor_rps = None
        carried = None
        rate = float(stats["request_rate"]) if stats is not None else math.nan
        if replica_capacity is not None:
            per = replica_capacity(deployment, stats)
            if per is not None and not math.isnan(rate):
                floor_rps = per * (replicas - spot_after)
                carried = floor_rps >= rate
        risk = Risk.MEDIUM if carried is False else Risk.LOW
        notice = NOTICE_SECONDS.get(cloud)
        proposals.append(
            Proposal(
                agent=AGENT,
                kind="spot_migration",
                detector="spot",
                tenant=deployment["tenant"],
                provider=deployment["provider"],
                target=deployment["deployment"],
                title=f"Move {movable} of {replicas} {deployment['deployment']} replicas to spot",
                change={
                    "market": "spot",
                    "replicas_to_spot": movable,
                    "keep_on_demand": replicas - spot_after,
                    "instance_type": offer.instance_type,
                },
                expected_deltas={
                    "cost_usd_per_hour": Delta(
                        value=-saving_h,
                        unit="USD/h",
                        basis=f"{cloud} {offer.region} spot {offer.instance_type} "
                        f"${offer.usd_per_hour:.4f}/h vs ${current:.4f}/h",
                    ),
                    "cost_usd_per_month": Delta(
                        value=-saving_m, unit="USD/month", basis=f"{HOURS_PER_MONTH:g} h/month"
                    ),
                },
                confidence=0.8 if carried is not False else 0.6,
                risk=risk,
                evidence={
                    "cloud": cloud,
                    "region": deployment["region"],
                    "gpu": deployment["gpu"],
                    "replicas": replicas,
                    "on_demand_now": int(deployment["on_demand"]),
                    "spot_price_usd_per_hour": offer.usd_per_hour,
                    "spot_price_source": offer.source,
                    "spot_price_note": offer.note,
                    "current_usd_per_hour_per_replica": current,
                    "capacity_lost_if_all_spot_interrupted": round(lost_share, 3),
                    "interruption_notice_seconds": notice,
                    "request_rate_rps": rate,
                    "on_demand_floor_capacity_rps": floor_rps,
                    "on_demand_floor_carries_load": carried,
                },
                narrative=(
                    f"{deployment['deployment']} is stateless with {replicas} on-demand "
                    f"replicas of {deployment['gpu']}. Moving {movable} to spot "
                    f"({offer.instance_type} at ${offer.usd_per_hour:.3f}/h against "
                    f"${current:.3f}/h) saves ${saving_m:,.0f}/month. "
                    f"{replicas - spot_after} replica stays on-demand, so interrupting every "
                    f"spot replica removes {lost_share:.0%} of capacity"
                    + (f" with {notice} s notice" if notice else "")
                    + (
                        "; the on-demand floor alone would not carry the observed load"
                        if carried is False
                        else ""
                    )
                    + "."
                ),
            )
        )
    return proposals, notes
