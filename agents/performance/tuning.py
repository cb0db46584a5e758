"""Engine-argument proposals for the bottlenecks found, each with predicted deltas.

For every bottleneck the agent builds a few candidate argument changes, asks the
capacity model (corrected by the deployment's own measurements) what each would do at
the observed per-replica rate, and proposes the best candidate that is predicted to
relieve the bottleneck. The prediction's interval is the figure's uncertainty.

* kv_pressure → fp8 KV cache (twice the tokens in the same memory) and/or a
  ``max_num_seqs`` the KV cache can hold at the observed mean context, so running
  requests stop being preempted.
* queueing / batch_capped → a larger ``max_num_seqs`` where the KV cache has room.
* prefill_bound → chunked prefill with a larger ``max_num_batched_tokens``.
* decode_bound → FP8 weights on GPUs with FP8 tensor cores (a quantization: the
  application agent weighs its quality risk).
"""

from __future__ import annotations

import math
from typing import Any

from agents.common.proposals import Delta, Proposal, Risk
from agents.cost.detectors.capacity import ReplicaCapacityEstimator
from agents.performance.bottlenecks import Bottleneck
from optiinfra.catalog import CatalogError
from optiinfra.catalog.gpus import gpu_spec
from optiinfra.errors import OptiInfraError

AGENT = "performance"


def _candidates(
    bottleneck: Bottleneck, deployment: dict[str, Any], fit: Any, context_tokens: float
) -> list[tuple[str, dict[str, Any]]]:
    args = deployment.get("engine_args") or {}
    max_seqs = int(args.get("max_num_seqs") or 256)
    kv = str(args.get("kv_cache_dtype") or "auto")
    holds = fit.max_concurrent_sequences(context_tokens) if fit is not None else 0
    out: list[tuple[str, dict[str, Any]]] = []
    if bottleneck.kind == "kv_pressure":
        if holds >= 1 and holds < max_seqs:
            out.append(("engine_tuning", {"max_num_seqs": holds}))
        if kv == "auto":
            out.append(("engine_tuning", {"kv_cache_dtype": "fp8"}))
            if holds >= 1 and 2 * holds < max_seqs:
                out.append(("engine_tuning", {"kv_cache_dtype": "fp8", "max_num_seqs": 2 * holds}))
    elif bottleneck.kind in ("queueing", "batch_capped"):
        room = min(2 * max_seqs, holds)
        if room > max_seqs:
            out.append(("engine_tuning", {"max_num_seqs": room}))
    elif bottleneck.kind == "prefill_bound":
        batched = int(args.get("max_num_batched_tokens") or 2048)
        if batched < 8192:
            out.append(
                ("engine_tuning", {"enable_chunked_prefill": True, "max_num_batched_tokens": 8192})
            )
    elif bottleneck.kind == "decode_bound":
        quant = str(args.get("quantization") or "none")
        try:
            fp8 = bool(gpu_spec(deployment["gpu"]).fp8_tflops)
        except (CatalogError, AttributeError):
            fp8 = False
        if quant in ("none", "") and fp8:
            out.append(("quantization", {"quantization": "fp8"}))
    return out


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
    try:
        current = capacity.config(deployment)
    except OptiInfraError as exc:
        return [], [f"{name}: {exc}"]
    model = capacity.calibrated(deployment, stats)
    rate = capacity.rate_per_replica(deployment, stats)
    if not math.isfinite(rate) or rate <= 0:
        return [], []
    fit = model.memory(current)
    context_tokens = workload.prompt_tokens + workload.output_tokens
    try:
        before = model.predict(current, workload, rate)
    except OptiInfraError as exc:
        return [], [f"{name}: {exc}"]
    proposals: list[Proposal] = []
    notes: list[str] = []
    seen: set[str] = set()
    for bottleneck in bottlenecks:
        best: tuple[float, str, dict[str, Any], Any] | None = None
        for kind, change in _candidates(bottleneck, deployment, fit, context_tokens):
            try:
                cfg = capacity.config(deployment, engine_args=change)
                after = model.predict(cfg, workload, rate)
            except OptiInfraError as exc:
                notes.append(f"{name}: candidate {change} not evaluated ({exc})")
                continue
            if after.saturated:
                continue
            score = after.ttft_p95_s.value
            if best is None or score < best[0]:
                best = (score, kind, change, (cfg, after))
        if best is None:
            if bottleneck.kind != "low_occupancy":
                notes.append(
                    f"{name}: {bottleneck.kind} ({bottleneck.summary}); no engine "
                    "change predicted to relieve it"
                )
            continue
        _, kind, change, (cfg, after) = best
        key = repr(sorted(change.items()))
        if key in seen:
            continue
        seen.add(key)
        proposals.append(
            _proposal(
                deployment,
                stats,
                bottleneck,
                kind,
                change,
                cfg,
                after,
                before,
                model,
                context_tokens,
                fit,
            )
        )
    return proposals, notes


def _delta(after: Any, observed: float, unit: str, basis: str) -> Delta | None:
    if not math.isfinite(observed) or not math.isfinite(after.value):
        return None
    high = after.high - observed if math.isfinite(after.high) else None
    return Delta(
        value=after.value - observed, unit=unit, low=after.low - observed, high=high, basis=basis
    )


def _proposal(
    deployment: dict[str, Any],
    stats: dict[str, Any],
    bottleneck: Bottleneck,
    kind: str,
    change: dict[str, Any],
    cfg: Any,
    after: Any,
    before: Any,
    model: Any,
    context_tokens: float,
    fit_now: Any,
) -> Proposal:
    fit_after = model.memory(cfg)
    holds_after = fit_after.max_concurrent_sequences(context_tokens)
    args = dict(deployment.get("engine_args") or {})
    preempt = float(stats.get("preemptions_per_s") or 0.0)
    basis = "capacity model, corrected by this deployment's metrics, vs observed p95"
    deltas: dict[str, Delta] = {}
    for name, est, observed in (
        ("ttft_p95_s", after.ttft_p95_s, float(stats.get("ttft_p95_s") or math.nan)),
        ("itl_p95_s", after.itl_p95_s, float(stats.get("itl_p95_s") or math.nan)),
    ):
        delta = _delta(est, observed, "s", basis)
        if delta is not None:
            deltas[name] = delta
    deltas["throughput_tokens_per_s"] = Delta(
        value=after.output_tokens_per_s.value - before.output_tokens_per_s.value,
        unit="tokens/s",
        basis="capacity model, same rate before and after",
    )
    if bottleneck.kind == "kv_pressure" and int(cfg.max_num_seqs) <= holds_after:
        deltas["preemptions_per_s"] = Delta(
            value=-preempt,
            unit="preemptions/s",
            basis="max_num_seqs within the KV cache's capacity at the mean context",
        )
    described = ", ".join(f"{k}={v}" for k, v in change.items())
    was = ", ".join(f"{k}={args.get(k, 'default')}" for k in change)
    return Proposal(
        agent=AGENT,
        kind=kind,
        detector=bottleneck.kind,
        tenant=deployment["tenant"],
        provider=deployment["provider"],
        target=deployment["deployment"],
        title=f"{bottleneck.kind.replace('_', ' ').capitalize()} on "
        f"{deployment['deployment']}: {described}",
        change={"engine_args": change},
        expected_deltas=deltas,
        confidence=0.6 if kind == "engine_tuning" else 0.5,
        risk=Risk.HIGH if kind == "quantization" else Risk.LOW,
        evidence={
            "bottleneck": bottleneck.kind,
            "bottleneck_figures": bottleneck.evidence,
            "engine_args_now": args,
            "kv_capacity_tokens_now": fit_now.kv_capacity_tokens if fit_now else None,
            "kv_capacity_tokens_after": fit_after.kv_capacity_tokens,
            "sequences_kv_holds_after": holds_after,
            "mean_context_tokens": round(context_tokens, 1),
            "predicted_ttft_p95_s": [
                after.ttft_p95_s.low,
                after.ttft_p95_s.value,
                after.ttft_p95_s.high,
            ],
            "predicted_itl_p95_s": [
                after.itl_p95_s.low,
                after.itl_p95_s.value,
                after.itl_p95_s.high,
            ],
            "capacity_correction": after.correction,
        },
        narrative=(
            f"{deployment['deployment']} shows {bottleneck.kind.replace('_', ' ')}: "
            f"{bottleneck.summary}. Changing {was} to {described} is predicted to give a "
            f"p95 TTFT of {after.ttft_p95_s.value:.2f} s (range {after.ttft_p95_s.low:.2f}-"
            f"{after.ttft_p95_s.high:.2f}) and a p95 inter-token latency of "
            f"{after.itl_p95_s.value * 1000:.0f} ms at today's load; the KV cache then holds "
            f"{holds_after} sequences of the mean length ({context_tokens:.0f} tokens)."
        ),
    )
