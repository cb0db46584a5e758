"""What a simulated server really did: the ground truth a test or an evaluation checks
the product's measurements against.

Kept cheaply: running totals, the last few thousand finished requests (for windowed
percentiles), and GPU activity integrated per second of virtual time over the last
few minutes (for DCGM-style utilisation readings).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from optiinfra.sandbox.observations import FinishedRequest

_ACTIVITY_SECONDS = 600  # per-second activity buckets kept


class _Cost(Protocol):
    sm_active: float
    tensor_active: float
    dram_active: float
    power_watts: float


@dataclass(slots=True)
class _Second:
    second: int
    busy: float = 0.0
    sm: float = 0.0
    tensor: float = 0.0
    dram: float = 0.0
    energy_j: float = 0.0  # during iterations, per GPU


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


class GroundTruth:
    """Totals and recent history of one server."""

    def __init__(self, recent: int = 5000) -> None:
        self.arrived = 0
        self.finished = 0
        self.aborted = 0
        self.preemptions = 0
        self.steps = 0
        self.busy_seconds = 0.0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.cached_prompt_tokens = 0
        self.energy_joules = 0.0  # during iterations (idle power included), per GPU
        self.recent: deque[tuple[float, FinishedRequest]] = deque(maxlen=recent)
        self.seconds: deque[_Second] = deque(maxlen=_ACTIVITY_SECONDS)

    def record_step(self, seconds: float, cost: _Cost, end: float) -> None:
        self.steps += 1
        self.busy_seconds += seconds
        energy = seconds * cost.power_watts
        self.energy_joules += energy
        second = int(end)
        buckets = self.seconds
        if not buckets or buckets[-1].second != second:
            buckets.append(_Second(second))
        b = buckets[-1]
        b.busy += seconds
        b.sm += seconds * cost.sm_active
        b.tensor += seconds * cost.tensor_active
        b.dram += seconds * cost.dram_active
        b.energy_j += energy

    def record_finished(self, record: FinishedRequest, now: float) -> None:
        if record.finish_reason == "abort":
            self.aborted += 1
        else:
            self.finished += 1
        self.prompt_tokens += record.prompt_tokens
        self.generation_tokens += record.generation_tokens
        self.cached_prompt_tokens += record.cached_prompt_tokens
        self.recent.append((now, record))

    def activity(self, now: float, window: float = 10.0) -> dict[str, float]:
        """Mean activity fractions over the last ``window`` seconds of virtual time."""
        start = now - window
        busy = sm = tensor = dram = energy = 0.0
        for b in reversed(self.seconds):
            if b.second + 1 <= start:
                break
            busy += b.busy
            sm += b.sm
            tensor += b.tensor
            dram += b.dram
            energy += b.energy_j
        return {
            "busy": min(1.0, busy / window),
            "sm_active": min(1.0, sm / window),
            "tensor_active": min(1.0, tensor / window),
            "dram_active": min(1.0, dram / window),
            "mean_power_watts": energy / window,
        }

    def summary(self, now: float, window: float | None = None) -> dict[str, Any]:
        """Totals, and latency percentiles over the finished requests of the last
        ``window`` seconds (all recent ones when None)."""
        since = -math.inf if window is None else now - window
        rows = [r for t, r in self.recent if t >= since and r.finish_reason != "abort"]
        ttft = sorted(r.ttft_seconds for r in rows)
        e2e = sorted(r.e2e_seconds for r in rows)
        queue = sorted(r.queue_seconds for r in rows)
        itl = sorted(
            r.decode_seconds / (r.generation_tokens - 1) for r in rows if r.generation_tokens > 1
        )
        return {
            "arrived": self.arrived,
            "finished": self.finished,
            "aborted": self.aborted,
            "preemptions": self.preemptions,
            "steps": self.steps,
            "busy_seconds": self.busy_seconds,
            "prompt_tokens": self.prompt_tokens,
            "generation_tokens": self.generation_tokens,
            "cached_prompt_tokens": self.cached_prompt_tokens,
            "window_seconds": window,
            "window_requests": len(rows),
            "ttft_seconds": _quantiles(ttft),
            "itl_seconds": _quantiles(itl),
            "e2e_seconds": _quantiles(e2e),
            "queue_seconds": _quantiles(queue),
        }


def _quantiles(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": _percentile(values, 0.5),
        "p95": _percentile(values, 0.95),
        "p99": _percentile(values, 0.99),
        "mean": (sum(values) / len(values)) if values else None,
    }
