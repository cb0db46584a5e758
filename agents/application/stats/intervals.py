"""Confidence intervals for quality scores, analytic rather than bootstrapped.

Why analytic: the agent runs these every hour on every deployment and feeds the bounds
into gating decisions. An analytic interval is deterministic (the same data give the
same verdict on a re-run, which a bootstrap does not), costs O(n), and for a mean of
scores bounded in [0, 1] the central limit theorem holds quickly (finite variance, no
heavy tails). The one place where the normal picture is poor — proportions near 0 or 1
and small n — gets the Wilson score interval, which stays inside [0, 1] and keeps near
nominal coverage there (Wilson 1927; Newcombe 1998, "Two-sided confidence intervals for
the single proportion", compares it with the Wald interval).

Degenerate samples: 30 items all scored 1.0 have a sample variance of 0, which would
make a t interval collapse to a point and a power calculation claim any drop is
detectable. :func:`variance_floor` keeps every variance at least that of a sample with
one odd value out (the same spirit as the "rule of three" for zero events).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: {confidence!r} must lie strictly between 0 and 1")
    return float(stats.norm.ppf(0.5 + confidence / 2.0))


def variance_floor(n: int) -> float:
    """Smallest variance assumed for n scores in [0, 1]: n−1 alike and one off by 1.

    That is (1/n)(1 − 1/n). It shrinks with n, so it only matters when the data
    themselves show (almost) no spread — exactly when trusting them is riskiest.
    """
    return (1.0 / n) * (1.0 - 1.0 / n) if n > 0 else math.inf


def floored_variance(values: np.ndarray) -> float:
    """Sample variance (ddof=1) of ``values``, never below :func:`variance_floor`."""
    n = len(values)
    if n < 2:
        return math.inf
    return max(float(np.var(values, ddof=1)), variance_floor(n))


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``successes / n``.

    ``successes`` may be fractional (per-item means of exact match over repeated asks);
    the formula is the same. ``n == 0`` gives (0, 1): nothing is known.

    Example: 0 successes in 10 gives (0, 0.2775) at 95% — the upper end is
    z² / (n + z²), not the Wald interval's 0.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"wilson_interval: need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return (0.0, 1.0)
    z = _z(confidence)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean of scores in [0, 1], clipped to [0, 1].

    Uses :func:`floored_variance`, so a spread-free sample still gets an honest width.
    Fewer than two values: (NaN, NaN) — no interval can be formed.
    """
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    _z(confidence)
    mean = float(np.mean(values))
    t = float(stats.t.ppf(0.5 + confidence / 2.0, df=n - 1))
    half = t * math.sqrt(floored_variance(values) / n)
    return (max(0.0, mean - half), min(1.0, mean + half))


def newcombe_interval(
    successes_a: float, n_a: float, successes_b: float, n_b: float, confidence: float = 0.95
) -> tuple[float, float]:
    """Interval for the difference of two independent proportions ``p_b − p_a``.

    Newcombe's hybrid score method (method 10 of Newcombe 1998, "Interval estimation for
    the difference between independent proportions"): it combines the two Wilson
    intervals, so it inherits their good behaviour near 0 and 1 and at small n, where
    the Wald difference interval under-covers.
    """
    p_a, p_b = successes_a / n_a, successes_b / n_b
    low_a, high_a = wilson_interval(successes_a, n_a, confidence)
    low_b, high_b = wilson_interval(successes_b, n_b, confidence)
    diff = p_b - p_a
    low = diff - math.sqrt((p_b - low_b) ** 2 + (high_a - p_a) ** 2)
    high = diff + math.sqrt((high_b - p_b) ** 2 + (p_a - low_a) ** 2)
    return (max(-1.0, low), min(1.0, high))


def welch_interval(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Welch interval for ``mean(b) − mean(a)`` of independent samples.

    Welch rather than the pooled t: a degraded configuration often changes the spread
    of scores as well as their mean, and Welch does not assume equal variances
    (Welch 1947; degrees of freedom by Welch–Satterthwaite).
    """
    var_a, var_b = floored_variance(a) / len(a), floored_variance(b) / len(b)
    se = math.sqrt(var_a + var_b)
    df = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    t = float(stats.t.ppf(0.5 + confidence / 2.0, df=df))
    diff = float(np.mean(b) - np.mean(a))
    return (max(-1.0, diff - t * se), min(1.0, diff + t * se))


def paired_interval(differences: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean of per-item differences (paired samples)."""
    n = len(differences)
    t = float(stats.t.ppf(0.5 + confidence / 2.0, df=n - 1))
    half = t * math.sqrt(floored_variance(differences) / n)
    mean = float(np.mean(differences))
    return (max(-1.0, mean - half), min(1.0, mean + half))
