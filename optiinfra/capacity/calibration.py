"""Correcting the public-table fit with what the fleet itself measured.

Each observation is turned into the **time factor** ``s`` that makes the model agree
with it exactly (every step time multiplied by ``s``): for a decode throughput at a
running batch ``s = predicted / observed`` tokens/s; for a p95 TTFT or ITL at a rate,
``s`` solves ``predicted(s) = observed`` (bisection on log s; the figures rise with s).
The factors of one (gpu, model) are pooled in log space and shrunk toward 1 as if the
public fit were worth ``PRIOR_WEIGHT`` observations of its own:

    log c = n / (n + PRIOR_WEIGHT) x mean(log s_i),  clipped to [log 1/2, log 2]

so one observation moves predictions a third of the way, ten observations most of the
way, and no amount of data moves them more than 2x (a bigger gap means a different
engine or a broken metric, which calibration should not paper over). Another GPU
serving the same model borrows ``BORROW`` (half) of that model's mean log correction:
engine version, sampling settings and prompt mix travel with the model, the GPU's own
efficiency does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

PRIOR_WEIGHT = 2.0
BORROW = 0.5
BOUNDS = (0.5, 2.0)
_SEARCH = (0.2, 5.0)


@dataclass(frozen=True)
class Correction:
    """The pooled correction of one (gpu, model): time factor and the evidence."""

    factor: float
    observations: int
    raw_factors: tuple[float, ...]

    @property
    def spread(self) -> float:
        """Standard deviation of the observations' log factors (0 with fewer than two)."""
        n = len(self.raw_factors)
        if n < 2:
            return 0.0
        logs = [math.log(f) for f in self.raw_factors]
        mean = sum(logs) / n
        return math.sqrt(sum((x - mean) ** 2 for x in logs) / (n - 1))


def pooled(raw_factors: list[float]) -> Correction:
    """Shrink and bound a list of per-observation time factors (see module docstring)."""
    n = len(raw_factors)
    mean = sum(math.log(f) for f in raw_factors) / n
    shrunk = n / (n + PRIOR_WEIGHT) * mean
    low, high = math.log(BOUNDS[0]), math.log(BOUNDS[1])
    return Correction(
        factor=math.exp(min(max(shrunk, low), high)),
        observations=n,
        raw_factors=tuple(raw_factors),
    )


def solve_factor(predicted: Callable[[float], float], observed: float) -> float:
    """The time factor ``s`` with ``predicted(s) == observed``, for a ``predicted`` that
    rises with ``s`` (may be inf when saturated); clipped to a wide search range."""
    low, high = math.log(_SEARCH[0]), math.log(_SEARCH[1])
    if predicted(math.exp(low)) >= observed:
        return _SEARCH[0]
    if predicted(math.exp(high)) <= observed:
        return _SEARCH[1]
    for _ in range(50):
        mid = (low + high) / 2.0
        if predicted(math.exp(mid)) < observed:
            low = mid
        else:
            high = mid
        if high - low < 1e-4:
            break
    return math.exp((low + high) / 2.0)
