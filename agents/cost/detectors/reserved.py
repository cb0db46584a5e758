"""Reserved capacity / savings plans sized from a low percentile of steady usage.

Over at least 30 days of inventory, count the on-demand instances of each (cloud,
region, GPU type and count) per hour. Commit to the ``p``-th percentile (default 10th)
of that count: the commitment is then in use in about 90% of hours. A commitment is
paid whether used or not, so per committed instance it breaks even when the instance
would have run at least ``1 - discount`` of the hours; the saving is computed on the
observed hours (what the last window would have cost with the commitment in place).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from agents.common.proposals import HOURS_PER_MONTH, Delta, Proposal, Risk
from agents.context import FleetContext
from agents.context.fleet import normal_market
from agents.cost.commitments import DEFAULT_COMMITMENTS, CommitmentTerm
from agents.cost.thresholds import CostThresholds
from optiinfra.catalog import CatalogError
from optiinfra.catalog.prices import quote

AGENT = "cost"
GROUP = ["tenant", "provider", "cloud", "region", "gpu", "gpu_count"]


def _hourly_counts(fleet_hours: pd.DataFrame) -> pd.DataFrame:
    """On-demand instances per group and hour, with hours of no instances as zeros."""
    markets = fleet_hours["market"].map(normal_market)
    rows = fleet_hours[markets == "on-demand"]
    if rows.empty:
        return rows
    counts = rows.groupby([*GROUP, "hour"], observed=True)["instances"].sum().reset_index()
    start, end = fleet_hours["hour"].min(), fleet_hours["hour"].max()
    hours = pd.date_range(start, end, freq="h")
    filled = []
    for key, group in counts.groupby(GROUP, observed=True):
        series = group.set_index("hour")["instances"].reindex(hours, fill_value=0)
        frame = pd.DataFrame({"hour": hours, "instances": series.to_numpy()})
        for column, value in zip(GROUP, key, strict=True):
            frame[column] = value
        filled.append(frame)
    return pd.concat(filled, ignore_index=True)


def detect_reserved(
    context: FleetContext,
    thresholds: CostThresholds,
    commitments: dict[str, CommitmentTerm] | None = None,
) -> tuple[list[Proposal], list[str]]:
    terms = DEFAULT_COMMITMENTS if commitments is None else commitments
    fleet_hours = context.fleet_hours
    if fleet_hours.empty:
        return [], []
    fleet_hours = fleet_hours.copy()
    fleet_hours["hour"] = pd.to_datetime(fleet_hours["hour"], utc=True)
    fleet_hours["cloud"] = [
        c or context.provider_kinds.get(p, "")
        for c, p in zip(fleet_hours["cloud"], fleet_hours["provider"], strict=True)
    ]
    span_days = (fleet_hours["hour"].max() - fleet_hours["hour"].min()).total_seconds() / 86400
    if span_days + 1 / 24 < thresholds.commitment_min_history_days:
        return [], [
            f"commitments: {span_days:.1f} days of inventory history; "
            f"{thresholds.commitment_min_history_days:g} needed before sizing one"
        ]
    proposals: list[Proposal] = []
    notes: list[str] = []
    counts = _hourly_counts(fleet_hours)
    if counts.empty:
        return [], []
    for key, group in counts.groupby(GROUP, observed=True):
        tenant, provider, cloud, region, gpu, gpu_count = key
        term = terms.get(str(cloud))
        if term is None:
            notes.append(f"commitments: no commitment rate known for cloud {cloud!r}")
            continue
        usage = group["instances"].to_numpy(dtype=float)
        committed = math.floor(np.percentile(usage, thresholds.commitment_percentile))
        if committed < 1:
            continue
        try:
            price = quote(str(gpu), int(gpu_count), str(cloud), str(region), "on-demand")
        except CatalogError as exc:
            notes.append(f"commitments: {cloud}/{region} {gpu}: no on-demand price ({exc})")
            continue
        p = price.usd_per_hour
        hours = len(usage)
        without = usage.sum() * p
        with_commitment = (
            hours * committed * p * (1 - term.discount) + np.maximum(usage - committed, 0).sum() * p
        )
        saving_per_hour = (without - with_commitment) / hours
        saving_m = saving_per_hour * HOURS_PER_MONTH
        if saving_m < thresholds.min_saving_usd_per_month:
            continue
        used_share = float((usage >= committed).mean())
        breakeven = 1 - term.discount
        proposals.append(
            Proposal(
                agent=AGENT,
                kind="reserved_capacity",
                detector="reserved",
                tenant=str(tenant),
                provider=str(provider),
                target=f"{cloud}/{region}/{gpu}x{int(gpu_count)}",
                title=f"Commit to {committed} × {price.instance_type} ({term.name})",
                change={
                    "commitment": term.name,
                    "instance_type": price.instance_type,
                    "count": committed,
                    "term_months": term.term_months,
                },
                expected_deltas={
                    "cost_usd_per_month": Delta(
                        value=-saving_m,
                        unit="USD/month",
                        basis=f"last {hours} h of inventory at ${p:.4f}/h, "
                        f"{term.discount:.0%} discount",
                    ),
                    "commitment_usd_per_month": Delta(
                        value=committed * p * (1 - term.discount) * HOURS_PER_MONTH,
                        unit="USD/month",
                    ),
                },
                confidence=round(min(0.9, used_share), 3),
                risk=Risk.MEDIUM,
                evidence={
                    "history_hours": hours,
                    "percentile": thresholds.commitment_percentile,
                    "committed_instances": committed,
                    "hourly_instances_min_median_max": [
                        float(usage.min()),
                        float(np.median(usage)),
                        float(usage.max()),
                    ],
                    "hours_commitment_fully_used": round(used_share, 3),
                    "break_even_utilisation": round(breakeven, 3),
                    "discount": term.discount,
                    "discount_source": term.source,
                    "on_demand_usd_per_hour": p,
                },
                narrative=(
                    f"Over the last {hours / 24:.0f} days at least {committed} on-demand "
                    f"{price.instance_type} ran in {used_share:.0%} of hours. A "
                    f"{term.term_months}-month commitment for {committed} at "
                    f"{term.discount:.0%} off saves ${saving_m:,.0f}/month; it breaks even "
                    f"when each committed instance runs {breakeven:.0%} of the time."
                ),
            )
        )
    return proposals, notes
