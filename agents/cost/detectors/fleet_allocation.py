"""The fleet's allocation as one integer program over GPU types *and* markets, compared
with today's: a figure for the report, not a proposal.

Right-sizing solves each deployment alone, in its own market, and the spot detector
moves replicas market by market; each yields a change a person can approve and a
rollout can apply. This solve answers the question behind both, in the spirit of
Mélange: what would the cheapest mix of GPU types and markets that serves every
deployment's observed rate within its targets cost, next to what the fleet costs now?
It reuses the candidates and capacities right-sizing computed, and adds each
candidate's spot twin (same capacity, public spot price) for stateless deployments,
which keep at least one on-demand replica. (Candidates right-sizing skipped because
their on-demand price could not save enough are not here either, so the figure is a
bound on what approving today's proposals can reach, not a global optimum.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.common.proposals import HOURS_PER_MONTH
from agents.cost.allocation import Demand, GpuOption, solve_allocation
from optiinfra.catalog import CatalogError
from optiinfra.catalog.prices import quote


@dataclass
class DeploymentCandidates:
    """What right-sizing computed for one deployment, kept for the fleet-wide solve."""

    name: str
    cloud: str
    region: str
    stateless: bool
    rate_rps: float
    min_replicas: int
    current_replicas: int
    current_usd_per_hour: float
    options: list[GpuOption] = field(default_factory=list)
    capacities: dict[str, float] = field(default_factory=dict)


def _spot_twin(option: GpuOption, cloud: str, region: str) -> GpuOption | None:
    try:
        offer = quote(option.gpu, option.gpu_count, cloud, region, "spot")
    except CatalogError:
        return None
    if offer.gpu_count != option.gpu_count or offer.region != region:
        return None
    return GpuOption.from_quote(offer)


def fleet_allocation_notes(candidates: list[DeploymentCandidates]) -> list[str]:
    """One note comparing the fleet-wide optimum with today's cost (none when empty)."""
    if not candidates:
        return []
    options: dict[str, GpuOption] = {}
    demands: list[Demand] = []
    for c in candidates:
        capacity: dict[str, float] = {}
        for option in c.options:
            key = f"current:{c.name}" if option.key == "current" else option.key
            own = GpuOption(key, option.gpu, option.gpu_count, option.market,
                            option.usd_per_hour)  # fmt: skip
            options.setdefault(key, own)
            capacity[key] = c.capacities[option.key]
            if c.stateless and option.market == "on-demand":
                twin = _spot_twin(option, c.cloud, c.region)
                if twin is not None:
                    options.setdefault(twin.key, twin)
                    capacity[twin.key] = c.capacities[option.key]
        demands.append(
            Demand(
                deployment=c.name,
                rate_rps=c.rate_rps,
                capacity_rps=capacity,
                min_replicas=c.min_replicas,
                min_on_demand=1,
                allow_spot=c.stateless,
                current={f"current:{c.name}": c.current_replicas},
            )
        )
    allocation = solve_allocation(demands, list(options.values()))
    served = [c for c in candidates if c.name in allocation.replicas]
    if not served:
        return []
    today = sum(c.current_usd_per_hour for c in served)
    best = sum(
        options[k].usd_per_hour * n for c in served for k, n in allocation.replicas[c.name].items()
    )
    mixed = sum(
        1 for c in served
        if len({(options[k].gpu, options[k].market) for k in allocation.replicas[c.name]}) > 1
    )  # fmt: skip
    status = "optimal" if allocation.optimal else allocation.status
    return [
        f"fleet allocation (integer program over {len(served)} deployments and "
        f"{len(options)} GPU-type × market options, {status}, "
        f"{allocation.solve_seconds:.2f} s): ${best:,.2f}/h against ${today:,.2f}/h today "
        f"(${(today - best) * HOURS_PER_MONTH:,.0f}/month, {1 - best / today:.0%} less if "
        f"every change were made; {mixed} deployment(s) would mix GPU types or markets)"
    ]
