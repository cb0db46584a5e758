"""Engine-argument proposals for the bottlenecks found, each with predicted deltas.

For every bottleneck the agent builds a few candidate argument changes and asks the
capacity model (corrected by the deployment's own measurements) what the current
arguments and each candidate give at the observed per-replica rate. Because the model
is only roughly right in absolute terms near saturation, a candidate's effect is the
model's *ratio* after / before applied to the observed figure: "p95 TTFT 11.9 s
observed × 0.76 predicted = 9.0 s". A candidate is proposed only when it is predicted
not to make latency worse (ratio ≤ 1.05) and to relieve the bottleneck: a latency
ratio ≤ 0.9, or — for KV pressure — no more preemptions.

Preemptions are not in the capacity model; their cost is estimated from the metrics:
a preempted request's prompt and generated tokens are computed again, so
``preemptions/s × mean context`` tokens/s of prefill work are wasted.

* kv_pressure → a ``max_num_seqs`` the KV cache holds at the observed mean context (so
  running requests stop being preempted) and/or an fp8 KV cache.
* queueing / batch_capped → a larger ``max_num_seqs`` where the KV cache has room.
* prefill_bound → chunked prefill with a larger ``max_num_batched_tokens``.
* decode_bound → FP8 weights on GPUs with FP8 tensor cores (a quantization: the
  application agent weighs its quality risk).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agents.common.capacity import ReplicaCapacityEstimator
from agents.common.proposals import HOURS_PER_MONTH, Delta, Proposal, Risk
from agents.performance.bottlenecks import Bottleneck
from optiinfra.catalog import CatalogError
from optiinfra.catalog.gpus import gpu_spec
from optiinfra.errors import OptiInfraError

AGENT = "performance"
_TITLES = {
    "kv_pressure": "KV-cache relief",
    "queueing": "Queueing relief",
    "batch_capped": "Batch limit",
    "prefill_bound": "Prefill speed-up",
    "decode_bound": "Decode speed-up",
}
NOT_WORSE = 1.05
BETTER = 0.9


@dataclass(frozen=True)
class Candidate:
    kind: str
    change: dict[str, Any]
    config: Any
    prediction: Any
    ttft_ratio: float  # predicted after / before (0 when before was saturated)
    itl_ratio: float
    stops_preemption: bool


def _ratio(after: float, before: float) -> float:
    """after / before; 1 when both are unbounded (saturated either way), 0 when only
    ``before`` is (for ranking only: no figure is derived from it)."""
    if not math.isfinite(after):
        return 1.0 if not math.isfinite(before) else math.inf
    if not math.isfinite(before) or before <= 0:
        return 0.0
    return after / before


#: Candidate tiers, tried in order: the first tier with a relieving candidate wins.
#: Engine arguments cost nothing; more GPUs cost money (the cost agent weighs it);
#: quantization risks answer quality (the application agent weighs it).
SAFE, MORE_GPUS, QUANTIZE = 0, 1, 2


def _quantization(deployment: dict[str, Any]) -> dict[str, Any] | None:
    """FP8 weights where the GPU has FP8 tensor cores, else INT8 (W8A8); None when the
    weights are already quantized."""
    args = deployment.get("engine_args") or {}
    if str(args.get("quantization") or "none") not in ("none", ""):
        return None
    try:
        fp8 = bool(gpu_spec(deployment["gpu"]).fp8_tflops)
    except (CatalogError, AttributeError):
        fp8 = False
    return {"quantization": "fp8" if fp8 else "int8"}


def _candidates(
    bottleneck: Bottleneck, deployment: dict[str, Any], holds: int
) -> list[tuple[int, str, dict[str, Any]]]:
    """(tier, kind, engine-argument change) candidates for one bottleneck."""
    args = deployment.get("engine_args") or {}
    max_seqs = int(args.get("max_num_seqs") or 256)
    kv = str(args.get("kv_cache_dtype") or "auto")
    memory = float(args.get("gpu_memory_utilization") or 0.9)
    tp = int(args.get("tensor_parallel_size") or 1)
    out: list[tuple[int, str, dict[str, Any]]] = []
    kind = bottleneck.kind
    if kind == "kv_pressure":
        if 1 <= holds < max_seqs:
            out.append((SAFE, "engine_tuning", {"max_num_seqs": holds}))
        if memory < 0.9:
            out.append((SAFE, "engine_tuning", {"gpu_memory_utilization": 0.9}))
        if kv == "auto":
            out.append((SAFE, "engine_tuning", {"kv_cache_dtype": "fp8"}))
            if 1 <= 2 * holds < max_seqs:
                out.append(
                    (SAFE, "engine_tuning", {"kv_cache_dtype": "fp8", "max_num_seqs": 2 * holds})
                )
    if kind in ("queueing", "batch_capped"):
        room = min(2 * max_seqs, holds)
        if room > max_seqs:
            out.append((SAFE, "engine_tuning", {"max_num_seqs": room}))
    if kind in ("queueing", "prefill_bound") and args.get("enable_prefix_caching") is False:
        out.append((SAFE, "engine_tuning", {"enable_prefix_caching": True}))
    if kind == "prefill_bound":
        batched = int(args.get("max_num_batched_tokens") or 2048)
        if batched < 8192:
            out.append(
                (SAFE, "engine_tuning",
                 {"enable_chunked_prefill": True, "max_num_batched_tokens": 8192})
            )  # fmt: skip
    if kind in ("kv_pressure", "queueing", "prefill_bound", "decode_bound") and tp < 8:
        out.append((MORE_GPUS, "parallelism", {"tensor_parallel_size": 2 * tp}))
    if kind in ("kv_pressure", "decode_bound"):
        quant = _quantization(deployment)
        if quant is not None:
            out.append((QUANTIZE, "quantization", quant))
    return out


def _relieves(bottleneck: Bottleneck, c: Candidate) -> bool:
    if c.ttft_ratio > NOT_WORSE or c.itl_ratio > NOT_WORSE:
        return False
    if bottleneck.kind == "kv_pressure" and c.stops_preemption:
        return True
    if bottleneck.kind == "decode_bound":
        return c.itl_ratio <= BETTER
    return c.ttft_ratio <= BETTER


def tuning_proposals(
    deployment: dict[str, Any],
    stats: dict[str, Any],
    bottlenecks: list[Bottleneck],
    capacity: ReplicaCapacityEstimator,
) -> tuple[list[Proposal], list[str]]:
    name = f"{deployment['provider']}/{deployment['deployment']}"
    workload = capacity.workload(stats)
    if workload is None:
        return [], [f"{name}: no token counts; tuning effects cannot be predicted"]
    rate = capacity.rate_per_replica(deployment, stats)
    if not math.isfinite(rate) or rate <= 0:
        return [], []
    model = capacity.calibrated(deployment, stats)
    try:
        current = capacity.config(deployment)
        fit = model.memory(current)
        before = model.predict(current, workload, rate)
    except OptiInfraError as exc:
        return [], [f"{name}: {exc}"]
    context_tokens = workload.prompt_tokens + workload.output_tokens
    holds = fit.max_concurrent_sequences(context_tokens)
    notes: list[str] = []
    tp_now = int((deployment.get("engine_args") or {}).get("tensor_parallel_size") or 1)
    gpus_per_tp = max(1, int(deployment["gpu_count"] or 1) // tp_now)
    # One proposal per deployment: the bottlenecks usually share a cause (a full KV
    # cache queues requests and slows prefill), and a reviewer should weigh one change,
    # not several whose predictions each assumed the others were not made.
    found: list[tuple[int, Bottleneck, Candidate]] = []
    for bottleneck in bottlenecks:
        relieved = False
        for tier, kind, change in _candidates(bottleneck, deployment, holds):
            extra: dict[str, Any] = {}
            if kind == "parallelism":
                extra["gpu_count"] = int(change["tensor_parallel_size"]) * gpus_per_tp
            try:
                cfg = capacity.config(deployment, engine_args=change, **extra)
                after = model.predict(cfg, workload, rate)
                holds_after = model.memory(cfg).max_concurrent_sequences(context_tokens)
            except OptiInfraError as exc:
                notes.append(f"{name}: candidate {change} not evaluated ({exc})")
                continue
            candidate = Candidate(
                kind=kind,
                change=change,
                config=cfg,
                prediction=after,
                ttft_ratio=_ratio(after.ttft_p95_s.value, before.ttft_p95_s.value),
                itl_ratio=_ratio(after.itl_p95_s.value, before.itl_p95_s.value),
                stops_preemption=int(cfg.max_num_seqs) <= holds_after,
            )
            if (not after.saturated or before.saturated) and _relieves(bottleneck, candidate):
                found.append((tier, bottleneck, candidate))
                relieved = True
        if not relieved:
            notes.append(
                f"{name}: {bottleneck.kind} ({bottleneck.summary}); no change is predicted "
                "to relieve it without making latency worse"
            )
    if not found:
        return [], notes
    # Free changes before paid ones before quality risks; then the best predicted TTFT.
    tier, bottleneck, best = min(
        found, key=lambda f: (f[0], f[2].ttft_ratio, f[2].itl_ratio, len(f[2].change))
    )
    made = _proposal(deployment, stats, bottleneck, best, before, fit, model, context_tokens)
    made.evidence["bottlenecks_found"] = [b.kind for b in bottlenecks]
    if best.kind == "parallelism":
        hardware, cost = _more_gpus(deployment, best.config, capacity)
        made = made.model_copy(
            update={
                "change": {**made.change, **hardware},
                "expected_deltas": {**made.expected_deltas, **cost},
            }
        )
    proposals = [made]
    return proposals, notes


def _more_gpus(
    deployment: dict[str, Any], config: Any, capacity: ReplicaCapacityEstimator
) -> tuple[dict[str, Any], dict[str, Delta]]:
    """The hardware change and cost of a larger tensor-parallel size: an instance with
    that many GPUs of the same type, priced from the public table."""
    from optiinfra.catalog.prices import quote

    count = int(config.gpu_count or config.tensor_parallel)
    replicas = int(deployment["replicas"])
    added = (count - int(deployment["gpu_count"] or 1)) * replicas
    hardware: dict[str, Any] = {"gpu_count": count}
    deltas = {"gpus": Delta(value=float(added), unit="GPUs")}
    market = "spot" if int(deployment["spot"]) == replicas else "on-demand"
    cloud = capacity.context.cloud_of(deployment)
    try:
        offer = quote(deployment["gpu"], count, cloud, deployment["region"], market)
    except CatalogError:
        return hardware, deltas
    hardware["instance_type"] = offer.instance_type
    if offer.gpu_count != count:
        # The smallest instance with enough GPUs has more: all of them are paid for.
        hardware["gpu_count"] = offer.gpu_count
        deltas["gpus"] = Delta(
            value=float((offer.gpu_count - int(deployment["gpu_count"] or 1)) * replicas),
            unit="GPUs",
            basis=f"{offer.instance_type} has {offer.gpu_count} GPUs",
        )
    now = float(deployment["price_per_replica"])
    if math.isfinite(now):
        per_hour = (offer.usd_per_hour - now) * replicas
        deltas["cost_usd_per_hour"] = Delta(
            value=per_hour,
            unit="USD/h",
            basis=f"{offer.instance_type} ${offer.usd_per_hour:.4f}/h vs ${now:.4f}/h × {replicas}",
        )
        deltas["cost_usd_per_month"] = Delta(value=per_hour * HOURS_PER_MONTH, unit="USD/month")
    return hardware, deltas


def _scaled(observed: Any, ratio_low: float, ratio: float, ratio_high: float,
            unit: str) -> Delta | None:  # fmt: skip
    """The model's relative change applied to an observed figure, as a delta."""
    try:
        now = float(observed)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(now) or not math.isfinite(ratio):
        return None
    high = now * ratio_high - now if math.isfinite(ratio_high) else math.inf
    return Delta(
        value=now * ratio - now,
        unit=unit,
        low=now * ratio_low - now,
        high=high,
        basis=f"observed {now:.3g} {unit} × the capacity model's predicted ratio {ratio:.2f}",
    )


def _proposal(
    deployment: dict[str, Any],
    stats: dict[str, Any],
    bottleneck: Bottleneck,
    best: Candidate,
    before: Any,
    fit: Any,
    model: Any,
    context_tokens: float,
) -> Proposal:
    after = best.prediction
    fit_after = model.memory(best.config)
    holds_after = fit_after.max_concurrent_sequences(context_tokens)
    args = dict(deployment.get("engine_args") or {})
    preempt = float(stats.get("preemptions_per_s") or 0.0)
    prompt_rate = float(stats.get("prompt_tokens_per_s") or 0.0)
    deltas: dict[str, Delta] = {}
    for name, est, prev in (
        ("ttft_p95_s", after.ttft_p95_s, before.ttft_p95_s.value),
        ("itl_p95_s", after.itl_p95_s, before.itl_p95_s.value),
    ):
        if not (math.isfinite(prev) and math.isfinite(est.value)):
            continue  # saturated before or after: no ratio to apply to the observation
        delta = _scaled(stats.get(name), _ratio(est.low, prev), _ratio(est.value, prev),
                        _ratio(est.high, prev), "s")  # fmt: skip
        if delta is not None:
            deltas[name] = delta
    wasted = preempt * context_tokens
    if bottleneck.kind == "kv_pressure" and best.stops_preemption and preempt > 0:
        deltas["preemptions_per_s"] = Delta(
            value=-preempt, unit="preemptions/s",
            basis=f"max_num_seqs {best.config.max_num_seqs} ≤ the {holds_after} sequences "
            f"of {context_tokens:.0f} tokens the KV cache holds",
        )  # fmt: skip
        deltas["recomputed_prefill_tokens_per_s"] = Delta(
            value=-wasted, unit="tokens/s",
            basis="preemptions/s × mean context: prompt and generated tokens computed again",
        )  # fmt: skip
    described = ", ".join(f"{k}={v}" for k, v in best.change.items())
    was = ", ".join(f"{k}={args.get(k, 'default')}" for k in best.change)
    share = wasted / prompt_rate if prompt_rate > 0 else math.nan
    ttft = deltas.get("ttft_p95_s")
    predicted = f" and a p95 TTFT change of {ttft.value:+.2f} s" if ttft is not None else ""
    return Proposal(
        agent=AGENT,
        kind=best.kind,
        detector=bottleneck.kind,
        tenant=deployment["tenant"],
        provider=deployment["provider"],
        target=deployment["deployment"],
        title=f"{_TITLES.get(bottleneck.kind, bottleneck.kind)} on "
        f"{deployment['deployment']}: {described}",
        change={"engine_args": best.change},
        expected_deltas=deltas,
        confidence=0.6 if best.kind == "engine_tuning" else 0.5,
        risk=Risk.HIGH if best.kind == "quantization" else Risk.LOW,
        evidence={
            "bottleneck": bottleneck.kind,
            "bottleneck_figures": bottleneck.evidence,
            "engine_args_now": args,
            "kv_capacity_tokens_now": fit.kv_capacity_tokens,
            "kv_capacity_tokens_after": fit_after.kv_capacity_tokens,
            "sequences_kv_holds_now": fit.max_concurrent_sequences(context_tokens),
            "sequences_kv_holds_after": holds_after,
            "mean_context_tokens": round(context_tokens, 1),
            "recomputed_share_of_prefill": None if math.isnan(share) else round(share, 3),
            "predicted_ttft_ratio": round(best.ttft_ratio, 3),
            "predicted_itl_ratio": round(best.itl_ratio, 3),
            "capacity_correction": after.correction,
            "predicted_saturated_before_after": [before.saturated, after.saturated],
        },
        narrative=(
            f"{deployment['deployment']} shows {bottleneck.kind.replace('_', ' ')}: "
            f"{bottleneck.summary}. Changing {was} to {described} lets the KV cache hold "
            f"{holds_after} sequences of the mean length ({context_tokens:.0f} tokens) for "
            f"at most {best.config.max_num_seqs} running"
            + (
                f", ending about {preempt:.3f} preemptions/s whose recomputation adds "
                f"{share:.0%} to prefill work"
                if "preemptions_per_s" in deltas and share == share
                else ""
            )
            + (
                "; the capacity model predicts this rate saturates the replica with or "
                "without the change: it needs more capacity as well"
                if before.saturated and after.saturated
                else f"; the capacity model predicts a p95 TTFT ratio of {best.ttft_ratio:.2f} "
                f"and a p95 inter-token ratio of {best.itl_ratio:.2f}{predicted} at today's load"
            )
            + "."
        ),
    )
