"""Consolidation: under-used single-GPU deployments packed onto fewer GPUs.

A small model on a whole GPU at a trickle of traffic pays for a GPU it barely uses, and
right-sizing cannot help when it already has one replica on the cheapest GPU that holds
it. Two such deployments of one tenant, on one GPU type in one place, can share a GPU
(each engine started with its share of ``gpu_memory_utilization``) when:

* **memory**: the weights, activation reserve and KV cache each needs — the KV for its
  busiest concurrency (p95 running sequences of the window, scaled to the busiest hour
  of the week) and never less than one request at its ``max_model_len`` — fit together in
  the GPU's usable memory (90 %);
* **time**: the GPU's time is shared, so the sum of each deployment's *load share* — its
  busiest hour's request rate over what it serves alone on the whole GPU within its SLO
  (the capacity model's central estimate) — stays at or under :data:`MAX_SHARED_LOAD`.

Utilisation here is engine activity and serving load, not preallocated memory: an idle
vLLM shows a full GPU memory. Deployments are packed first-fit by decreasing load share;
each group of two or more becomes one proposal: the largest member keeps its instance,
the others' instances are released.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agents.common.capacity import ReplicaCapacityEstimator
from agents.common.proposals import HOURS_PER_MONTH, Delta, Proposal, Risk
from agents.context import FleetContext
from optiinfra.errors import OptiInfraError

AGENT = "resource"
#: Largest summed load share of deployments sharing one GPU.
MAX_SHARED_LOAD = 0.6
#: A deployment whose load share is at or above this is not under-used.
UNDER_USED = 0.3
#: Share of GPU memory the engines may take together.
USABLE_MEMORY = 0.9
#: Below this request rate a deployment is idle (the cost agent's idle detector's case).
IDLE_RPS = 0.01
GIB = 1024**3


@dataclass(frozen=True)
class Tenant:
    """One deployment that could share a GPU, with the figures packing needs."""

    deployment: dict[str, Any]
    peak_rps: float
    capacity_rps: float
    memory_gib: float
    gpu_memory_gib: float

    @property
    def name(self) -> str:
        return str(self.deployment["deployment"])

    @property
    def load_share(self) -> float:
        return self.peak_rps / self.capacity_rps

    @property
    def group(self) -> tuple[str, str, str, str, str]:
        d = self.deployment
        return (d["tenant"], d["provider"], d["region"], d["gpu"], _market(d))


def _market(deployment: dict[str, Any]) -> str:
    for market in ("spot", "reserved", "on_demand"):
        if int(deployment.get(market) or 0) == int(deployment["replicas"]):
            return market
    return "mixed"


def sharing_candidates(
    context: FleetContext, capacity: ReplicaCapacityEstimator
) -> tuple[list[Tenant], list[str]]:
    """Single-replica, single-GPU deployments under :data:`UNDER_USED`, with their
    memory needs; notes name each under-used one and its utilisation."""
    found: list[Tenant] = []
    notes: list[str] = []
    for deployment, stats in context.deployment_rows():
        if (
            stats is None
            or int(deployment["replicas"]) != 1
            or int(deployment["gpu_count"] or 1) != 1
            or deployment["mixed_hardware"]
            or not deployment["model"]
            or math.isnan(float(deployment["price_per_replica"]))
        ):
            continue
        window = float(stats.get("request_rate") or math.nan)
        peak = context.peak_request_rate(deployment)
        rate = max(window, peak) if math.isfinite(peak) else window
        if not math.isfinite(rate) or rate < IDLE_RPS:
            continue
        alone = capacity.current_replica_rps(deployment, stats)
        workload = capacity.workload(stats)
        if not alone or alone <= 0 or workload is None:
            continue
        if rate / alone >= UNDER_USED:
            continue
        try:
            config = capacity.config(deployment)
            fit = capacity.model.memory(config)
        except OptiInfraError:
            continue
        if not fit.fits:
            continue
        concurrency = float(stats.get("running_p95") or stats.get("running_mean") or 1.0)
        if math.isfinite(window) and window > 0:
            concurrency *= max(1.0, rate / window)
        tokens = max(
            concurrency * (workload.prompt_tokens + workload.output_tokens),
            float(fit.max_model_len),
        )
        kv_gib = tokens * fit.kv_bytes_per_token / GIB
        memory = fit.weights_gib + fit.activation_reserve_gib + kv_gib
        tenant = Tenant(deployment, rate, alone, memory, fit.gpu_memory_gib)
        found.append(tenant)
        occupancy = float(stats.get("running_mean") or math.nan) / int(config.max_num_seqs)
        notes.append(
            f"{deployment['provider']}/{tenant.name}: under-used — its busiest hour "
            f"({rate:.2f} requests/s) is {tenant.load_share:.0%} of what one "
            f"{deployment['gpu']} serves within its SLO, batch occupancy {occupancy:.0%}; "
            f"it needs {memory:.1f} of {fit.gpu_memory_gib:.0f} GiB"
        )
    return found, notes


def pack(tenants: list[Tenant]) -> list[list[Tenant]]:
    """First-fit by decreasing load share into GPUs of the group's type; only groups
    of two or more are returned (a deployment alone keeps its GPU)."""
    bins: list[list[Tenant]] = []
    for tenant in sorted(tenants, key=lambda t: (-t.load_share, t.name)):
        for shared in bins:
            load = sum(t.load_share for t in shared) + tenant.load_share
            memory = sum(t.memory_gib for t in shared) + tenant.memory_gib
            if load <= MAX_SHARED_LOAD and memory <= USABLE_MEMORY * tenant.gpu_memory_gib:
                shared.append(tenant)
                break
        else:
            bins.append([tenant])
    return [b for b in bins if len(b) > 1]


def detect_consolidation(
    context: FleetContext, capacity: ReplicaCapacityEstimator
) -> tuple[list[Proposal], list[str]]:
    """Consolidation proposals and the under-used notes."""
    tenants, notes = sharing_candidates(context, capacity)
    groups: dict[tuple[str, str, str, str, str], list[Tenant]] = {}
    for tenant in tenants:
        if tenant.group[4] != "mixed":
            groups.setdefault(tenant.group, []).append(tenant)
    proposals = [_proposal(shared) for members in groups.values() for shared in pack(members)]
    return proposals, notes


def _proposal(shared: list[Tenant]) -> Proposal:
    host = max(shared, key=lambda t: (t.memory_gib, t.name))
    gpu_memory = host.gpu_memory_gib
    spare = USABLE_MEMORY * gpu_memory - sum(t.memory_gib for t in shared)
    # each engine gets what it needs plus an equal part of what is left
    shares = {t.name: round((t.memory_gib + spare / len(shared)) / gpu_memory, 3) for t in shared}
    released = [t for t in shared if t is not host]
    saving_h = sum(float(t.deployment["price_per_replica"]) for t in released)
    d = host.deployment
    names = ", ".join(sorted(t.name for t in shared))
    load = sum(t.load_share for t in shared)
    return Proposal(
        agent=AGENT,
        kind="consolidation",
        detector="consolidation",
        tenant=d["tenant"],
        provider=d["provider"],
        target=host.name,
        title=f"Consolidate {names} onto one {d['gpu']} ({len(shared)} → 1 GPUs)",
        change={
            "consolidate": {
                "host": host.name,
                "members": sorted(t.name for t in released),
                "gpu_memory_utilization": shares,
            }
        },
        expected_deltas={
            "cost_usd_per_hour": Delta(
                value=-saving_h,
                unit="USD/h",
                basis=f"{len(released)} instance(s) released at their current price",
            ),
            "cost_usd_per_month": Delta(value=-saving_h * HOURS_PER_MONTH, unit="USD/month"),
            "gpus": Delta(value=-float(len(released)), unit="GPUs"),
        },
        confidence=0.5,
        risk=Risk.MEDIUM,
        evidence={
            "members": {
                t.name: {
                    "peak_request_rate_rps": t.peak_rps,
                    "alone_capacity_rps": t.capacity_rps,
                    "load_share": round(t.load_share, 3),
                    "memory_gib": round(t.memory_gib, 2),
                }
                for t in shared
            },
            "summed_load_share": round(load, 3),
            "max_shared_load": MAX_SHARED_LOAD,
            "gpu_memory_gib": gpu_memory,
        },
        narrative=(
            f"{names} each use a small part of a whole {d['gpu']}: together their busiest "
            f"hours take {load:.0%} of one GPU's time (at most {MAX_SHARED_LOAD:.0%} allowed) "
            f"and {sum(t.memory_gib for t in shared):.1f} of {gpu_memory:.0f} GiB. Serving "
            f"them on {host.name}'s GPU, each engine with its share of GPU memory, releases "
            f"{len(released)} GPU(s), about ${saving_h * HOURS_PER_MONTH:,.0f}/month. "
            "Their latencies rise when both are busy at once: the rollout's canary "
            "checks the SLO on the shared GPU."
        ),
    )
