"""Many tests at once: false alarms add up, and Benjamini–Hochberg keeps them in check.

An agent that tests every deployment every hour at alpha = 0.05 raises a false alarm in
5% of the tests where nothing changed: one healthy deployment gets 24 × 0.05 = 1.2
false "regressions" a day on average, fifty deployments sixty. (Consecutive hourly
windows overlap, so the alarms come in runs rather than independently, but the
expected count is the same.) Two remedies, used together:

* in an hourly sweep over many deployments, control the **false discovery rate** of the
  batch with the Benjamini–Hochberg step-up procedure (Benjamini & Hochberg 1995):
  among the deployments flagged, the expected share of false alarms is at most ``q``
  (for independent or positively dependent p-values);
* keep the unadjusted alpha for a single planned test (one canary check of one rollout
  step), where there is no batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BHResult:
    """Benjamini–Hochberg on a batch, in the input order.

    ``adjusted`` are BH-adjusted p-values (``rejected[i]`` ⇔ ``adjusted[i] <= q``);
    ``cutoff`` is the largest raw p-value rejected (0 when none). NaN p-values (tests
    that could not run) are not counted as tests: adjusted NaN, never rejected.
    """

    adjusted: tuple[float, ...]
    rejected: tuple[bool, ...]
    q: float
    tests: int
    cutoff: float


def benjamini_hochberg(p_values: Sequence[float], q: float = 0.05) -> BHResult:
    """Which of a batch of p-values to call discoveries at false discovery rate ``q``.

    Step-up: sort the m p-values, find the largest k with p₍ₖ₎ ≤ k·q/m, reject the k
    smallest. Adjusted p-values are min over j ≥ k of (m/j)·p₍ⱼ₎, capped at 1, so a
    caller can compare them with any q later.

    Example: ``benjamini_hochberg([0.025, 0.001, 0.029, 0.5, 0.2]).rejected`` →
    (True, True, True, False, False): 0.025 fails its own step (0.02) but is carried by
    0.029 passing the next (0.03).
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q: {q!r} must lie strictly between 0 and 1")
    values = np.asarray(p_values, dtype=float)
    bad = values[np.isfinite(values) & ((values < 0) | (values > 1))]
    if len(bad):
        raise ValueError(f"p_values: {bad[0]!r} is not a probability")
    finite = np.flatnonzero(np.isfinite(values))
    m = len(finite)
    adjusted = np.full(len(values), math.nan)
    rejected = np.zeros(len(values), dtype=bool)
    if m == 0:
        return BHResult(tuple(adjusted.tolist()), tuple(rejected.tolist()), q, 0, 0.0)
    order = finite[np.argsort(values[finite], kind="stable")]
    ranked = values[order]
    scaled = ranked * m / np.arange(1, m + 1)
    adjusted[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    passing = np.flatnonzero(ranked <= np.arange(1, m + 1) * q / m)
    cutoff = float(ranked[passing[-1]]) if len(passing) else 0.0
    if len(passing):
        rejected[order[: passing[-1] + 1]] = True
    return BHResult(
        tuple(float(a) for a in adjusted), tuple(bool(r) for r in rejected), q, m, cutoff
    )


def expected_false_alarms(alpha: float, tests: int) -> float:
    """Expected false alarms among ``tests`` tests of unchanged deployments: alpha × tests."""
    return alpha * tests


def family_false_alarm_probability(alpha: float, tests: int) -> float:
    """Chance of at least one false alarm in ``tests`` independent tests: 1 − (1 − α)ᵗ."""
    return 1.0 - (1.0 - alpha) ** tests
