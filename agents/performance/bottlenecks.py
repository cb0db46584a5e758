"""Bottleneck analysis from canonical serving metrics, one deployment at a time.

Each rule reads the deployment's window statistics (see :mod:`agents.context.stats`)
and its engine arguments; a bottleneck carries the figures it was read from.

* **kv_pressure** — the engine preempts running requests (KV cache full), the cache
  sits at ≥ 95% at the p95, or it reached 95% while requests waited to be admitted.
* **queueing** — requests wait for a slot: mean waiting ≥ 1, or the queue-time p95 is
  at least half the TTFT target.
* **batch_capped** — running requests reach ``max_num_seqs`` while others wait.
* **prefill_bound** — TTFT p95 misses its target while the inter-token latency meets
  its own: prompt processing, not generation, is slow.
* **decode_bound** — the inter-token latency p95 misses its target.
* **low_occupancy** — traffic, but under 5% of the batch slots used and nothing waiting
  (an over-provisioned deployment: the cost agent's business; reported, not tuned).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from agents.context import Targets

PREEMPTION_RATE_MIN = 1e-3  # preemptions/s: one every ~17 minutes
KV_FULL = 0.95


@dataclass(frozen=True)
class Bottleneck:
    kind: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)


def _f(stats: dict[str, Any], name: str) -> float:
    try:
        value = float(stats.get(name))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return value


def find_bottlenecks(
    deployment: dict[str, Any], stats: dict[str, Any] | None, targets: Targets
) -> list[Bottleneck]:
    """The bottlenecks a deployment shows; none when there is no data (never a guess)."""
    if stats is None:
        return []
    args = deployment.get("engine_args") or {}
    max_seqs = float(args.get("max_num_seqs") or 256)
    preempt = _f(stats, "preemptions_per_s")
    kv_p95 = _f(stats, "kv_usage_p95")
    waiting = _f(stats, "waiting_mean")
    waiting_p95 = _f(stats, "waiting_p95")
    running_p95 = _f(stats, "running_p95")
    running_mean = _f(stats, "running_mean")
    queue = _f(stats, "queue_p95_s")
    ttft = _f(stats, "ttft_p95_s")
    itl = _f(stats, "itl_p95_s")
    rate = _f(stats, "request_rate")
    found: list[Bottleneck] = []
    kv_max = _f(stats, "kv_usage_max")
    full_and_waiting = kv_max >= KV_FULL and waiting_p95 > 0
    if preempt >= PREEMPTION_RATE_MIN or kv_p95 >= KV_FULL or full_and_waiting:
        found.append(
            Bottleneck(
                "kv_pressure",
                f"{preempt:.3f} preemptions/s, KV cache p95 {kv_p95:.0%}",
                {
                    "preemptions_per_s": preempt,
                    "kv_usage_p95": kv_p95,
                    "kv_usage_max": _f(stats, "kv_usage_max"),
                    "running_p95": running_p95,
                    "max_num_seqs": max_seqs,
                },
            )
        )
    ttft_target = targets.ttft_p95_s
    if waiting >= 1 or (ttft_target and queue >= 0.5 * ttft_target):
        found.append(
            Bottleneck(
                "queueing",
                f"{waiting:.1f} requests waiting on average",
                {"waiting_mean": waiting, "waiting_p95": waiting_p95, "queue_p95_s": queue},
            )
        )
    if running_p95 >= 0.9 * max_seqs and waiting_p95 > 0:
        found.append(
            Bottleneck(
                "batch_capped",
                f"running p95 {running_p95:.0f} of "
                f"max_num_seqs {max_seqs:.0f} with requests waiting",
                {"running_p95": running_p95, "max_num_seqs": max_seqs},
            )
        )
    itl_target = targets.itl_p95_s
    itl_ok = not (itl_target and itl > itl_target)
    if ttft_target and ttft > ttft_target and itl_ok:
        found.append(
            Bottleneck(
                "prefill_bound",
                f"TTFT p95 {ttft:.2f} s over its {ttft_target:.2f} s target",
                {"ttft_p95_s": ttft, "mean_prompt_tokens": _f(stats, "mean_prompt_tokens")},
            )
        )
    if itl_target and itl > itl_target:
        found.append(
            Bottleneck(
                "decode_bound",
                f"inter-token p95 {itl * 1000:.0f} ms over its {itl_target * 1000:.0f} ms target",
                {"itl_p95_s": itl, "running_mean": running_mean},
            )
        )
    if rate > 0 and running_mean < 0.05 * max_seqs and not waiting_p95 > 0 and not found:
        found.append(
            Bottleneck(
                "low_occupancy",
                f"{running_mean:.1f} of {max_seqs:.0f} batch slots used on average",
                {"running_mean": running_mean, "max_num_seqs": max_seqs},
            )
        )
    return found
