"""Right-sizing: the cheapest GPU type and replica count that still serve the observed
load within the targets, chosen by the allocation integer program.

Candidates are the offerings of the deployment's own cloud, region and market in the
public price tables (one replica per instance, tensor-parallel over the instance's
GPUs), limited to GPUs with bf16 support (Ampere and newer, which current engines'
kernels need). Each candidate's capacity is the capacity model's estimate of the
requests/s one replica serves within the targets (central estimate: every option on
the same footing; the headroom and the performance agent's check of the chosen
option's pessimistic end are the safety margin), after correcting the model by the
deployment's own measurements. The current allocation is one of the options, at the
price the inventory reports, so "keep it" is always available.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import cache
from typing import Any

from agents.common.capacity import ReplicaCapacityEstimator
from agents.common.proposals import HOURS_PER_MONTH, Delta, Proposal, Risk
from agents.context import FleetContext
from agents.cost.allocation import Demand, GpuOption, solve_allocation
from agents.cost.detectors.fleet_allocation import DeploymentCandidates
from agents.cost.thresholds import CostThresholds
from optiinfra.catalog import CatalogError
from optiinfra.catalog.gpus import gpu_spec
from optiinfra.catalog.prices import price_table, quote
from optiinfra.errors import OptiInfraError

__all__ = ["ReplicaCapacityEstimator", "candidate_quotes", "detect_right_size"]

AGENT = "cost"
CURRENT = "current"


def _serving_gpu(name: str) -> bool:
    try:
        spec = gpu_spec(name)
    except CatalogError:
        return False
    return bool(spec.bf16_tflops)


@cache
def candidate_quotes(cloud: str, region: str, market: str) -> tuple[Any, ...]:
    """The cheapest offering of each (GPU type, count) in a region and market.

    Cached: the price tables never change while a process runs, and every deployment of
    a region asks the same question (``price_table()`` copies the whole table)."""
    table = price_table()
    column = "spot_usd_per_hour" if market == "spot" else "on_demand_usd_per_hour"
    rows = table[(table["cloud"] == cloud) & (table["region"] == region) & table[column].notna()]
    quotes = []
    for gpu, count in sorted(set(zip(rows["gpu"], rows["gpu_count"], strict=True))):
        if int(count) not in (1, 2, 4, 8) or not _serving_gpu(str(gpu)):
            continue
        try:
            offer = quote(str(gpu), int(count), cloud, region, market)
        except CatalogError:
            continue
        if offer.gpu_count == int(count) and offer.region == region:
            quotes.append(offer)
    return tuple(quotes)


def context_cap(cfg: Any, workload: Any, model: Any) -> int | None:
    """A ``max_model_len`` that lets ``cfg`` fit, when the configured one does not.

    Engines refuse to start unless one sequence of ``max_model_len`` fits, and with none
    set they take the model's whole context (131k tokens for Llama 3.1). A smaller GPU
    often serves the observed requests with a shorter limit: four times the observed
    mean context, rounded up to a power of two, at least 8,192 tokens. None when the
    configuration fits as it is, or when even the cap does not fit.
    """
    if model.memory(cfg).fits:
        return None
    mean = workload.prompt_tokens + workload.output_tokens
    cap = max(8192, 1 << math.ceil(math.log2(max(4 * mean, 2))))
    configured = cfg.max_model_len or model.memory(cfg).max_model_len
    if cap >= configured:
        return None
    return cap if model.memory(replace(cfg, max_model_len=cap)).fits else None


def _market(deployment: dict[str, Any]) -> str | None:
    replicas = int(deployment["replicas"])
    for market, column in (("on-demand", "on_demand"), ("spot", "spot")):
        if int(deployment[column]) == replicas:
            return market
    return None


def detect_right_size(
    context: FleetContext,
    thresholds: CostThresholds,
    capacity: ReplicaCapacityEstimator,
    collect: list[DeploymentCandidates] | None = None,
) -> tuple[list[Proposal], list[str]]:
    """Right-sizing proposals; ``collect`` (when given) receives every solved
    deployment's candidates for the fleet-wide allocation figure."""
    proposals: list[Proposal] = []
    notes: list[str] = []
    for deployment, stats in context.deployment_rows():
        name = f"{deployment['provider']}/{deployment['deployment']}"
        replicas = int(deployment["replicas"])
        price = float(deployment["price_per_replica"])
        if replicas < 1 or stats is None or math.isnan(price) or deployment["mixed_hardware"]:
            continue
        window_rate = float(stats.get("request_rate") or math.nan)
        # Size for the busiest hour of the last week, not the hour this run happens at.
        peak = context.peak_request_rate(deployment)
        busier = math.isfinite(peak) and not peak <= window_rate * 1.01
        rate = peak if busier else window_rate
        sized_for = "busiest hour of the last 7 days" if busier else "recent window"
        if not math.isfinite(rate) or rate <= thresholds.idle_max_request_rate:
            continue
        market = _market(deployment)
        workload = capacity.workload(stats)
        if market is None or workload is None or not deployment["model"]:
            notes.append(
                f"{name}: right-sizing skipped (mixed markets, no model or no token counts)"
            )
            continue
        model = capacity.calibrated(deployment, stats)
        try:
            current_cfg = capacity.config(deployment)
        except OptiInfraError as exc:
            notes.append(f"{name}: right-sizing skipped ({exc})")
            continue
        cloud = context.cloud_of(deployment)
        options = [
            GpuOption(CURRENT, deployment["gpu"], int(deployment["gpu_count"]) or 1, market, price)
        ]
        current_rate = capacity.central_rate(deployment, stats, current_cfg, model)
        capacities = {CURRENT: current_rate or 0.0}
        configs: dict[str, Any] = {CURRENT: current_cfg}
        floor = min(replicas, 2) if deployment["stateless"] else 1
        # A candidate whose floor of replicas already costs too much to save enough
        # cannot win: skip it before asking the capacity model (the expensive part).
        ceiling = price * replicas * (1 - thresholds.min_saving_ratio)
        for offer in candidate_quotes(cloud, deployment["region"], market):
            if offer.usd_per_hour * max(floor, 1) >= ceiling:
                continue
            same = offer.gpu == deployment["gpu"] and offer.gpu_count == int(
                deployment["gpu_count"]
            )
            if same:
                continue
            try:
                cfg = capacity.config(
                    deployment,
                    gpu=offer.gpu,
                    gpu_count=offer.gpu_count,
                    tensor_parallel=offer.gpu_count,
                    pipeline_parallel=1,
                )
                cap = context_cap(cfg, workload, model)
                if cap is not None:
                    cfg = replace(cfg, max_model_len=cap)
            except OptiInfraError:
                continue
            estimate = capacity.central_rate(deployment, stats, cfg, model)
            if estimate is None or not estimate > 0:
                continue
            option = GpuOption.from_quote(offer)
            options.append(option)
            capacities[option.key] = estimate
            configs[option.key] = cfg
        demand = Demand(
            deployment=deployment["deployment"],
            rate_rps=rate * thresholds.headroom,
            capacity_rps=capacities,
            min_replicas=floor,
            current={CURRENT: replicas},
        )
        allocation = solve_allocation([demand], options)
        if collect is not None:
            collect.append(
                DeploymentCandidates(
                    name=deployment["deployment"], cloud=cloud, region=deployment["region"],
                    stateless=deployment["stateless"] is True,
                    rate_rps=rate * thresholds.headroom, min_replicas=floor,
                    current_replicas=replicas, current_usd_per_hour=price * replicas,
                    options=options, capacities=capacities,
                )
            )  # fmt: skip
        chosen = allocation.replicas.get(deployment["deployment"])
        if not chosen:
            continue
        new_cost = allocation.usd_per_hour
        current_cost = price * replicas
        saving_h = current_cost - new_cost
        if (
            saving_h * HOURS_PER_MONTH < thresholds.min_saving_usd_per_month
            or saving_h < thresholds.min_saving_ratio * current_cost
        ):
            continue
        if len(chosen) != 1:
            mix = " + ".join(f"{n} × {next(o for o in options if o.key == k).gpu}"
                             for k, n in sorted(chosen.items()))  # fmt: skip
            notes.append(
                f"{name}: the allocation program's optimum mixes GPU types ({mix}, "
                f"${new_cost:.2f}/h against ${current_cost:.2f}/h); mixed allocations are "
                "reported, not proposed, until a rollout can apply them"
            )
            continue
        key, new_replicas = next(iter(chosen.items()))
        option = next(o for o in options if o.key == key)
        cfg = configs[key]
        per_replica = rate / new_replicas
        try:
            predicted = model.predict(cfg, workload, per_replica)
        except OptiInfraError as exc:
            notes.append(f"{name}: no prediction for {option.gpu} ({exc})")
            continue
        targets = capacity.targets(deployment)
        deltas = {
            "cost_usd_per_hour": Delta(
                value=-saving_h,
                unit="USD/h",
                basis=f"{option.instance_type or option.gpu} "
                f"${option.usd_per_hour:.4f}/h × {new_replicas} vs "
                f"${price:.4f}/h × {replicas}",
            ),
            "cost_usd_per_month": Delta(value=-saving_h * HOURS_PER_MONTH, unit="USD/month"),
            "ttft_p95_s": _latency_delta(predicted.ttft_p95_s, stats.get("ttft_p95_s")),
            "itl_p95_s": _latency_delta(predicted.itl_p95_s, stats.get("itl_p95_s")),
        }
        change: dict[str, Any] = {
            "gpu": option.gpu,
            "gpu_count": option.gpu_count,
            "replicas": new_replicas,
            "market": market,
        }
        if option.instance_type:
            change["instance_type"] = option.instance_type
        engine_changes: dict[str, Any] = {}
        if key != CURRENT and option.gpu_count > 1:
            engine_changes["tensor_parallel_size"] = option.gpu_count
        if cfg.max_model_len != current_cfg.max_model_len:
            engine_changes["max_model_len"] = cfg.max_model_len
        if engine_changes:
            change["engine_args"] = engine_changes
        what = f"{new_replicas} × {option.gpu}" if key != CURRENT else f"{new_replicas} replicas"
        proposals.append(
            Proposal(
                agent=AGENT,
                kind="right_size",
                detector="right_size",
                tenant=deployment["tenant"],
                provider=deployment["provider"],
                target=deployment["deployment"],
                title=f"Right-size {deployment['deployment']}: {replicas} × "
                f"{deployment['gpu']} → {what}",
                change=change,
                expected_deltas={k: v for k, v in deltas.items() if v is not None},
                confidence=0.75 if key == CURRENT else 0.7,
                risk=Risk.MEDIUM,
                evidence={
                    "request_rate_rps": window_rate,
                    "sized_for_rps": rate,
                    "sized_for": sized_for,
                    "headroom": thresholds.headroom,
                    "mean_prompt_tokens": workload.prompt_tokens,
                    "mean_output_tokens": workload.output_tokens,
                    "targets": {
                        "ttft_p95_s": targets.ttft_p95_s,
                        "itl_p95_s": targets.itl_p95_s,
                        "source": ", ".join(targets.sources),
                    },
                    "replica_capacity_rps": {o.key: capacities[o.key] for o in options},
                    "observed_ttft_p95_s": stats.get("ttft_p95_s"),
                    "observed_itl_p95_s": stats.get("itl_p95_s"),
                    "predicted_ttft_p95_s": _estimate(predicted.ttft_p95_s),
                    "predicted_itl_p95_s": _estimate(predicted.itl_p95_s),
                    "capacity_correction": predicted.correction,
                    "allocation_status": allocation.status,
                    "same_hardware": key == CURRENT,
                    "max_model_len_now": current_cfg.max_model_len,
                    "max_model_len_after": cfg.max_model_len,
                },
                narrative=(
                    f"{deployment['deployment']} serves {window_rate:.2f} requests/s now"
                    + (f" and {rate:.2f} in its {sized_for}" if busier else "")
                    + " "
                    f"({workload.prompt_tokens:.0f} prompt / {workload.output_tokens:.0f} "
                    f"output tokens on average) on {replicas} × {deployment['gpu']} at "
                    f"${current_cost:.2f}/h. {what} at ${new_cost:.2f}/h serves it with "
                    f"{thresholds.headroom - 1:.0%} headroom, with a predicted p95 TTFT of "
                    f"{predicted.ttft_p95_s.value:.2f} s and p95 inter-token latency of "
                    f"{predicted.itl_p95_s.value * 1000:.0f} ms (targets "
                    f"{targets.ttft_p95_s} s / {(targets.itl_p95_s or 0) * 1000:.0f} ms, "
                    f"{', '.join(targets.sources)}); it saves "
                    f"${saving_h * HOURS_PER_MONTH:,.0f}/month."
                    + (
                        f" It needs max_model_len {cfg.max_model_len} (now "
                        f"{current_cfg.max_model_len or 'the model maximum'}): longer requests "
                        "would be refused."
                        if cfg.max_model_len != current_cfg.max_model_len
                        else ""
                    )
                ),
            )
        )
    return proposals, notes


def _estimate(estimate: Any) -> dict[str, float]:
    return {"value": estimate.value, "low": estimate.low, "high": estimate.high}


def _latency_delta(predicted: Any, observed: Any) -> Delta | None:
    try:
        now = float(observed)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(now) or not math.isfinite(predicted.value):
        return None
    high = predicted.high - now if math.isfinite(predicted.high) else math.inf
    return Delta(
        value=predicted.value - now,
        unit="s",
        low=predicted.low - now,
        high=high,
        basis="capacity model vs observed p95",
    )
