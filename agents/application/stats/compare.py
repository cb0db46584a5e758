"""Verdicts: did the candidate regress (one-sided), and which A/B variant is better.

The rule that matters most: **"not significant" is not "fine"**. A comparison says
``no_regression`` only when the samples were big enough to have caught a drop of the
size asked about (``threshold``, relative, e.g. 0.10): the *minimum detectable drop*
at the samples' size, ``alpha`` and ``power`` is

    MDE = (z₁₋α + z_power) · SE / baseline_mean

where SE is the observed standard error of the difference (per-item differences when
paired; both samples' variances when not; each variance floored, see
``intervals.variance_floor``). This is the normal approximation of the power of a
one-sided test of a mean difference (Chow, Shao & Wang, ch. 3); the rank and sign tests
used have at least 86% of the t test's efficiency, and the test suite measures the real
power by simulation. When the MDE exceeds ``threshold`` the verdict is ``unknown``, with
the number of items that would be enough (MDE shrinks as 1/√n).

Verdict order for :func:`detect_regression`: fewer than 2 scored items on a side →
``unknown``; one-sided p (candidate worse) < alpha → ``regression``; one-sided p
(candidate better) < alpha → ``improvement``; MDE > threshold → ``unknown``; else
``no_regression``. ``regression`` means *significantly worse*, however little:
``exceeds_threshold`` says whether the observed drop is also at least ``threshold``
(DESIGN.md's canary rule, "roll back when quality drops more than 10%", is
``verdict == "regression" and exceeds_threshold``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from agents.application.stats.evidence import Evidence, gather_evidence
from agents.application.stats.power import z_sum
from agents.application.stats.samples import Metric, SampleLike, check_metric

Verdict = Literal["regression", "no_regression", "improvement", "unknown"]
ABVerdict = Literal["a_better", "b_better", "no_difference", "unknown"]


@dataclass(frozen=True)
class RegressionResult:
    """Candidate vs baseline on one metric. Differences are candidate − baseline.

    ``n_candidate`` / ``n_baseline`` count scored items (after NaN scores were dropped,
    ``n_nan_*`` of them, and repeats of an item averaged); when ``paired`` the test,
    the means and the interval use only the ``n_pairs`` items in both samples.
    ``p_value`` is one-sided (H₁: candidate worse); ``p_value_improvement`` the other
    side. ``min_detectable_drop`` is relative, like ``threshold``; ``items_needed`` is
    how many items (per sample, or pairs) would bring it down to ``threshold``.
    """

    metric: Metric
    verdict: Verdict
    reason: str
    test: str
    paired: bool
    n_candidate: int
    n_baseline: int
    n_pairs: int
    n_nan_candidate: int
    n_nan_baseline: int
    mean_candidate: float
    mean_baseline: float
    diff: float
    relative_diff: float
    diff_low: float
    diff_high: float
    confidence: float
    effect_size: float
    effect_size_name: str
    p_value: float
    p_value_improvement: float
    min_detectable_drop: float
    items_needed: int | None
    threshold: float
    exceeds_threshold: bool
    alpha: float
    power: float
    pair_correlation: float


@dataclass(frozen=True)
class ABResult:
    """Variant A vs variant B on one metric, two-sided. Differences are B − A.

    ``p_value`` is two-sided (twice the smaller one-sided p, capped at 1 — exact for
    the z test, the usual convention for the exact and rank tests); ``diff_low`` /
    ``diff_high`` bound B − A at ``confidence``; ``min_detectable_diff`` is the
    smallest relative difference (either way) the samples detect with ``power``.
    """

    metric: Metric
    verdict: ABVerdict
    reason: str
    test: str
    paired: bool
    n_a: int
    n_b: int
    n_pairs: int
    n_nan_a: int
    n_nan_b: int
    mean_a: float
    mean_b: float
    diff: float
    relative_diff: float
    diff_low: float
    diff_high: float
    confidence: float
    effect_size: float
    effect_size_name: str
    p_value: float
    min_detectable_diff: float
    items_needed: int | None
    threshold: float
    alpha: float
    power: float
    pair_correlation: float


def _check(threshold: float, alpha: float, power: float, min_pairs: int, confidence: float) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold: {threshold!r} must lie in (0, 1] (a relative drop)")
    for name, value in (("alpha", alpha), ("power", power), ("confidence", confidence)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name}: {value!r} must lie strictly between 0 and 1")
    if min_pairs < 2:
        raise ValueError(f"min_pairs: {min_pairs!r} must be at least 2")


def _detectable(evidence: Evidence, threshold: float, z: float) -> tuple[float, int | None]:
    """(relative MDE, items needed to bring it to ``threshold``)."""
    if not evidence.usable or not evidence.mean_baseline > 0:
        return math.inf, None
    mde = z * evidence.standard_error / evidence.mean_baseline
    e = evidence
    current = e.n_pairs if e.paired else min(e.n_candidate, e.n_baseline)
    return mde, math.ceil(current * (mde / threshold) ** 2)


def _relative(diff: float, reference: float) -> float:
    return diff / reference if reference > 0 else math.nan


def _percent(relative: float) -> str:
    return f"{relative:+.1%}" if math.isfinite(relative) else "relative change undefined"


def detect_regression(
    candidate: SampleLike,
    baseline: SampleLike,
    metric: Metric = "f1",
    *,
    threshold: float = 0.10,
    alpha: float = 0.05,
    power: float = 0.8,
    paired: bool | None = None,
    min_pairs: int = 20,
    confidence: float = 0.95,
) -> RegressionResult:
    """Is ``candidate`` worse than ``baseline``? (canary vs stable, after vs before).

    Samples are quality-event frames (``item_id`` + the metric's column), Series of
    scores indexed by item id, or bare scores. ``paired=None`` pairs by item id when at
    least ``min_pairs`` items are in both; ``True`` forces a paired test, ``False`` an
    unpaired one. ``threshold`` is the relative drop that matters (the tenant's
    ``Policy.max_quality_drop``). See the module docstring for the verdict rules.
    """
    check_metric(metric)
    _check(threshold, alpha, power, min_pairs, confidence)
    e = gather_evidence(
        candidate, baseline, metric, paired=paired, min_pairs=min_pairs, confidence=confidence
    )
    diff = e.mean_candidate - e.mean_baseline
    relative = _relative(diff, e.mean_baseline)
    mde, needed = _detectable(e, threshold, z_sum(alpha, power))
    summary = (
        f"candidate {metric} {e.mean_candidate:.3f} vs baseline {e.mean_baseline:.3f}"
        f" ({_percent(relative)}), {e.test}"
    )
    verdict: Verdict
    if not e.usable:
        verdict, reason = "unknown", e.reason
    elif not e.mean_baseline > 0:
        verdict = "improvement" if e.p_greater < alpha else "unknown"
        reason = f"{summary}; the baseline mean is 0, so a relative drop is undefined"
    elif e.p_less < alpha:
        verdict, reason = "regression", f"{summary}: worse, p = {e.p_less:.2g} < {alpha}"
    elif e.p_greater < alpha:
        verdict, reason = "improvement", f"{summary}: better, p = {e.p_greater:.2g} < {alpha}"
    elif mde > threshold:
        verdict = "unknown"
        reason = (
            f"{summary}: no significant drop, but these samples only detect a drop of"
            f" {mde:.1%} or more (power {power:.0%}, alpha {alpha}), above the {threshold:.0%}"
            f" asked about; about {needed} items would do"
        )
    else:
        verdict = "no_regression"
        reason = (
            f"{summary}: no significant drop (p = {e.p_less:.2g}), and a drop of"
            f" {threshold:.0%} would have been detected with power >= {power:.0%}"
            f" (detectable: {mde:.1%})"
        )
    return RegressionResult(
        metric=metric,
        verdict=verdict,
        reason=reason,
        test=e.test,
        paired=e.paired,
        n_candidate=e.n_candidate,
        n_baseline=e.n_baseline,
        n_pairs=e.n_pairs,
        n_nan_candidate=e.n_nan_candidate,
        n_nan_baseline=e.n_nan_baseline,
        mean_candidate=e.mean_candidate,
        mean_baseline=e.mean_baseline,
        diff=diff,
        relative_diff=relative,
        diff_low=e.diff_low,
        diff_high=e.diff_high,
        confidence=confidence,
        effect_size=e.effect_size,
        effect_size_name=e.effect_size_name,
        p_value=e.p_less,
        p_value_improvement=e.p_greater,
        min_detectable_drop=mde,
        items_needed=needed,
        threshold=threshold,
        exceeds_threshold=bool(relative <= -threshold),
        alpha=alpha,
        power=power,
        pair_correlation=e.pair_correlation,
    )


def compare_ab(
    a: SampleLike,
    b: SampleLike,
    metric: Metric = "f1",
    *,
    threshold: float = 0.10,
    alpha: float = 0.05,
    power: float = 0.8,
    paired: bool | None = None,
    min_pairs: int = 20,
    confidence: float = 0.95,
) -> ABResult:
    """Which of two variants answers better, two-sided, with the difference's interval.

    The same tests as :func:`detect_regression` (B in the candidate's place). Verdict:
    ``b_better`` / ``a_better`` when the two-sided p < ``alpha``; ``no_difference`` when
    not significant *and* a relative difference of ``threshold`` either way would have
    been detected with ``power``; otherwise ``unknown``.
    """
    check_metric(metric)
    _check(threshold, alpha, power, min_pairs, confidence)
    e = gather_evidence(
        b, a, metric, paired=paired, min_pairs=min_pairs, confidence=confidence, names=("B", "A")
    )
    diff = e.mean_candidate - e.mean_baseline
    relative = _relative(diff, e.mean_baseline)
    p_two = min(1.0, 2.0 * min(e.p_less, e.p_greater)) if e.usable else math.nan
    mde, needed = _detectable(e, threshold, z_sum(alpha, power, two_sided=True))
    summary = (
        f"B {metric} {e.mean_candidate:.3f} vs A {e.mean_baseline:.3f}"
        f" ({_percent(relative)}), {e.test}"
    )
    verdict: ABVerdict
    if not e.usable:
        verdict, reason = "unknown", e.reason
    elif p_two < alpha:
        verdict = "b_better" if diff > 0 else "a_better"
        reason = f"{summary}: different, two-sided p = {p_two:.2g} < {alpha}"
    elif mde > threshold:
        verdict = "unknown"
        reason = (
            f"{summary}: no significant difference, but these samples only detect"
            f" {mde:.1%} or more either way, above the {threshold:.0%} asked about;"
            f" about {needed} items would do"
        )
    else:
        verdict = "no_difference"
        reason = f"{summary}: no significant difference (p = {p_two:.2g}; detectable {mde:.1%})"
    return ABResult(
        metric=metric,
        verdict=verdict,
        reason=reason,
        test=e.test,
        paired=e.paired,
        n_a=e.n_baseline,
        n_b=e.n_candidate,
        n_pairs=e.n_pairs,
        n_nan_a=e.n_nan_baseline,
        n_nan_b=e.n_nan_candidate,
        mean_a=e.mean_baseline,
        mean_b=e.mean_candidate,
        diff=diff,
        relative_diff=relative,
        diff_low=e.diff_low,
        diff_high=e.diff_high,
        confidence=confidence,
        effect_size=e.effect_size,
        effect_size_name=e.effect_size_name,
        p_value=p_two,
        min_detectable_diff=mde,
        items_needed=needed,
        threshold=threshold,
        alpha=alpha,
        power=power,
        pair_correlation=e.pair_correlation,
    )
