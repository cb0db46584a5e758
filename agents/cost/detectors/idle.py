"""Idle deployments: near-zero traffic over the window → scale to zero.

Evidence of use is engine activity (requests served, tokens generated, requests
running or waiting), never GPU memory: engines preallocate most of it at start, so a
server that nobody calls still shows its memory "used". Too little data is "unknown",
never "idle".
"""

from __future__ import annotations

import math
from typing import Any

from agents.common.proposals import HOURS_PER_MONTH, Delta, Proposal, Risk
from agents.context import FleetContext
from agents.cost.thresholds import CostThresholds

AGENT = "cost"


def _num(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def detect_idle(
    context: FleetContext, thresholds: CostThresholds
) -> tuple[list[Proposal], list[str]]:
    """Proposals to scale idle deployments to zero, and notes on the undecidable ones."""
    proposals: list[Proposal] = []
    notes: list[str] = []
    for deployment, stats in context.deployment_rows():
        name = f"{deployment['provider']}/{deployment['deployment']}"
        if deployment["replicas"] < 1:
            continue
        if stats is None:
            notes.append(f"{name}: no engine metrics in the window; idleness unknown")
            continue
        rate = _num(stats["request_rate"])
        span = _num(stats["engine_span_seconds"])
        samples = _num(stats["engine_samples"])
        samples = int(samples) if math.isfinite(samples) else 0
        span = span if math.isfinite(span) else 0.0
        if math.isnan(rate):
            notes.append(f"{name}: no request-rate metric; idleness unknown")
            continue
        if span < thresholds.idle_min_span_seconds or samples < thresholds.idle_min_samples:
            if rate <= thresholds.idle_max_request_rate:
                notes.append(
                    f"{name}: no traffic seen, but only {span:.0f} s of data "
                    f"(needs {thresholds.idle_min_span_seconds:.0f} s); idleness unknown"
                )
            continue
        running = _num(stats["running_max"])
        waiting = _num(stats["waiting_p95"])
        tokens = _num(stats["generation_tokens_per_s"])
        busy = any(v > 0 for v in (running, waiting, tokens) if not math.isnan(v))
        if rate > thresholds.idle_max_request_rate or busy:
            continue
        price = _num(deployment["usd_per_hour"])
        if math.isnan(price):
            notes.append(f"{name}: idle, but its price is unknown; no saving can be stated")
            continue
        saving = price * HOURS_PER_MONTH
        if saving < thresholds.min_saving_usd_per_month:
            continue
        stateless = deployment["stateless"] is True
        hours = span / 3600
        proposals.append(
            Proposal(
                agent=AGENT,
                kind="idle_shutdown",
                detector="idle",
                tenant=deployment["tenant"],
                provider=deployment["provider"],
                target=deployment["deployment"],
                title=f"Scale idle {deployment['deployment']} to zero",
                change={"replicas": 0, "from_replicas": int(deployment["replicas"])},
                expected_deltas={
                    "cost_usd_per_hour": Delta(value=-price, unit="USD/h", basis="inventory price"),
                    "cost_usd_per_month": Delta(
                        value=-saving, unit="USD/month", basis=f"{HOURS_PER_MONTH:g} h/month"
                    ),
                    "gpus": Delta(
                        value=-float(deployment["replicas"] * deployment["gpu_count"]), unit="GPUs"
                    ),
                },
                # More hours of silence → more confidence; a day of it is near-certain.
                confidence=round(min(0.95, 0.5 + 0.45 * min(1.0, hours / 24)), 3),
                risk=Risk.LOW if stateless else Risk.MEDIUM,
                evidence={
                    "window_seconds": round(span),
                    "samples": samples,
                    "request_rate_rps": rate,
                    "generation_tokens_per_s": tokens,
                    "requests_running_max": running,
                    "gpu": deployment["gpu"],
                    "gpu_count": int(deployment["gpu_count"]),
                    "replicas": int(deployment["replicas"]),
                    "usd_per_hour": price,
                    "gpu_memory_note": "GPU memory is preallocated by the engine and not "
                    "taken as a sign of use",
                },
                narrative=(
                    f"{deployment['deployment']} served {rate:.4f} requests/s over the last "
                    f"{hours:.1f} h ({samples} samples) on {int(deployment['replicas'])} × "
                    f"{deployment['gpu']}. Scaling it to zero saves ${price:.2f}/h "
                    f"(${saving:,.0f}/month)."
                    + (
                        ""
                        if stateless
                        else " It is not marked stateless: check that nothing "
                        "depends on it before it is stopped."
                    )
                ),
            )
        )
    return proposals, notes
