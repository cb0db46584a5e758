"""How many probes it takes to see a quality drop, and what drop a sample can see.

The normal approximation for comparing two means (Chow, Shao & Wang, "Sample Size
Calculations in Clinical Research", ch. 3–4; Fleiss, "Statistical Methods for Rates and
Proportions", for proportions, without continuity correction):

    n = (z₁₋α + z_power)² · V / Δ²,    Δ = baseline_mean · relative_drop

where V is the variance of one difference: σ₀² + σ₁² for two independent samples
(n per arm), σ₀² + σ₁² − 2ρσ₀σ₁ for n paired items with correlation ρ.

Variances, when no ``sd`` is given, are the Bernoulli ones p(1 − p) at the baseline
mean and at the dropped mean. For exact match that is exact; for F1 and judge scores
(also in [0, 1]) it is the *largest* variance a score with that mean can have, so the
sample size errs on the side of too many probes, never too few.

Why this and not the rank tests' exact power: the tests used (Wilcoxon, Mann–Whitney,
sign) have asymptotic relative efficiency ≥ 0.864 against the t test and often above 1
on skewed scores (Hodges & Lehmann 1956); the t-based figure is the documented
approximation, and the test suite measures the real power by simulation.
"""

from __future__ import annotations

import math

from scipy import stats


def _check(baseline_mean: float, alpha: float, power: float, paired_correlation: float) -> None:
    if not 0.0 < baseline_mean <= 1.0:
        raise ValueError(f"baseline_mean: {baseline_mean!r} must lie in (0, 1]")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: {alpha!r} must lie strictly between 0 and 1")
    if not 0.0 < power < 1.0:
        raise ValueError(f"power: {power!r} must lie strictly between 0 and 1")
    if not -1.0 <= paired_correlation <= 1.0:
        raise ValueError(f"paired_correlation: {paired_correlation!r} must lie in [-1, 1]")


def z_sum(alpha: float, power: float, two_sided: bool = False) -> float:
    """z₁₋α (or z₁₋α/₂) + z_power: how many standard errors a detectable drop spans."""
    tail = alpha / 2.0 if two_sided else alpha
    return float(stats.norm.ppf(1.0 - tail) + stats.norm.ppf(power))


def _difference_variance(
    baseline_mean: float,
    relative_drop: float,
    paired: bool,
    sd: float | None,
    paired_correlation: float,
) -> float:
    dropped = baseline_mean * (1.0 - relative_drop)
    if sd is None:
        var0 = baseline_mean * (1.0 - baseline_mean)
        var1 = dropped * (1.0 - dropped)
    else:
        var0 = var1 = sd * sd
    rho = paired_correlation if paired else 0.0
    return max(var0 + var1 - 2.0 * rho * math.sqrt(var0 * var1), 0.0)


def _samples_exact(
    baseline_mean: float,
    relative_drop: float,
    alpha: float,
    power: float,
    paired: bool,
    sd: float | None,
    paired_correlation: float,
    two_sided: bool,
) -> float:
    delta = baseline_mean * relative_drop
    variance = _difference_variance(baseline_mean, relative_drop, paired, sd, paired_correlation)
    return (z_sum(alpha, power, two_sided) ** 2) * variance / (delta * delta)


def required_samples(
    baseline_mean: float,
    relative_drop: float,
    alpha: float = 0.05,
    power: float = 0.8,
    paired: bool = False,
    *,
    sd: float | None = None,
    paired_correlation: float = 0.5,
    two_sided: bool = False,
) -> int:
    """Items needed to detect a ``relative_drop`` (0.10 = 10%) from ``baseline_mean``.

    Unpaired: items *per sample* (baseline and candidate each). Paired: items asked of
    both. ``sd`` is the per-item score standard deviation if known (e.g. from a
    baseline); otherwise the Bernoulli bound is used (see the module docstring).
    ``paired_correlation`` is the correlation of an item's scores under the two
    configurations; 0.5 is a cautious default — golden-set items that differ in
    difficulty usually correlate more, and a :class:`RegressionResult` reports the
    observed value to plug in next time. At least 2.

    Example: ``required_samples(0.8, 0.10)`` → 350 per sample;
    ``required_samples(0.8, 0.10, paired=True)`` → 176 pairs (at ρ = 0.5).
    """
    _check(baseline_mean, alpha, power, paired_correlation)
    if not 0.0 < relative_drop <= 1.0:
        raise ValueError(f"relative_drop: {relative_drop!r} must lie in (0, 1]")
    if sd is not None and sd < 0:
        raise ValueError(f"sd: {sd!r} must not be negative")
    n = _samples_exact(
        baseline_mean, relative_drop, alpha, power, paired, sd, paired_correlation, two_sided
    )
    return max(2, math.ceil(n - 1e-9))


def minimum_detectable_drop(
    baseline_mean: float,
    n: int,
    alpha: float = 0.05,
    power: float = 0.8,
    paired: bool = False,
    *,
    sd: float | None = None,
    paired_correlation: float = 0.5,
    two_sided: bool = False,
) -> float:
    """The smallest relative drop that ``n`` items detect with ``power`` (planning form).

    The inverse of :func:`required_samples` under the same assumptions, found by
    bisection (n falls monotonically as the drop grows). ``math.inf`` when even a drop
    to zero is not detectable with ``n`` items.
    """
    _check(baseline_mean, alpha, power, paired_correlation)
    if n < 2:
        return math.inf

    def needed(drop: float) -> float:
        return _samples_exact(
            baseline_mean, drop, alpha, power, paired, sd, paired_correlation, two_sided
        )

    if needed(1.0) > n:
        return math.inf
    low, high = 1e-9, 1.0
    for _ in range(100):
        middle = (low + high) / 2.0
        if needed(middle) > n:
            low = middle
        else:
            high = middle
    return high
