"""The shared machinery of a comparison: which test, its one-sided p-values, an effect size.

Both :func:`detect_regression` (one-sided) and :func:`compare_ab` (two-sided) call
:func:`gather_evidence`, so the two can never disagree about the same data.

Which test, and why:

* **Paired** (the same items asked of both, at least ``min_pairs`` of them — the golden-set
  probes ask canary and baseline the same questions): per-item differences remove the
  items' difficulty, which dominates the variance of quality scores.
  - exact match: the **sign test** on the per-item differences. With one ask per item the
    scores are 0/1 and this is exactly **McNemar's exact test** (a binomial test on the
    discordant pairs); with repeated asks it stays valid on fractional per-item scores.
  - F1 and judge scores: the **Wilcoxon signed-rank test** (zero differences dropped,
    Wilcoxon's convention). It uses the size of each difference, not just its sign, and
    needs no normality — per-item F1 differences pile up at 0 and ±1.
* **Unpaired** (sampled interactions, or too few common items):
  - exact match: the pooled **two-proportion z test**; **Fisher's exact test** when any
    expected cell count is below 5 (the usual rule for the χ²/z approximation).
  - F1 and judge scores: the **Mann–Whitney U test** (tie-corrected): F1 is bimodal (a
    mass at 0, a mass at 1), far from the normal a Welch t test leans on at small n.
* **Unbalanced** (items answered more often on one side than the other — a day of probes
  before a change against an hour after it; see ``samples.balanced``): the rank and sign
  tests above compare the *shapes* of per-item scores, and a mean of 20 answers is shaped
  unlike one answer even when nothing changed. So the means are compared instead:
  the **paired t test** on per-item differences (paired) or **Welch's t test**
  (unpaired), each variance floored (``intervals.variance_floor``). Both test a
  difference of means, which is what a quality drop is, and rely on the central limit
  theorem over items (scores are bounded, so it holds at the tens of items these
  comparisons need). Per-item differences here are skewed towards the rare wrong answer,
  which makes the one-sided "worse" test conservative rather than eager.

Effect sizes (sign: negative = candidate worse):

* exact match: **Cohen's h** = 2·asin√p_c − 2·asin√p_b (Cohen 1988, ch. 6), the
  variance-stabilised difference of proportions: a 5-point drop from 0.95 counts for
  more than one from 0.50, as it should. Rough scale: 0.2 small, 0.5 medium, 0.8 large.
* F1 and judge: **Cliff's delta** = P(C > B) − P(C < B) (Cliff 1993), the effect size
  that goes with Mann–Whitney: ordinal, bounded in [−1, 1], indifferent to the
  bimodal shape. Rough scale (Romano et al. 2006): 0.147 small, 0.33 medium, 0.474 large.
  Unbalanced samples: **Cohen's d** (the mean difference over the pooled standard
  deviation of per-item scores; d_z, over the standard deviation of the per-item
  differences, when paired), the effect size of the t tests used there — Cliff's delta
  would again compare shapes. Rough scale (Cohen 1988): 0.2 small, 0.5 medium, 0.8 large.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from agents.application.stats.intervals import (
    floored_variance,
    newcombe_interval,
    paired_interval,
    welch_interval,
)
from agents.application.stats.samples import (
    ItemScores,
    Metric,
    SampleLike,
    balanced,
    is_binary,
    item_scores,
    pair,
)


@dataclass(frozen=True)
class Evidence:
    """What the data say, before any verdict. ``usable`` is False with a ``reason``
    when no test can be run (too few items, or a paired test asked for without pairs)."""

    metric: Metric
    usable: bool
    reason: str
    paired: bool
    test: str
    n_candidate: int
    n_baseline: int
    n_pairs: int
    n_nan_candidate: int
    n_nan_baseline: int
    mean_candidate: float
    mean_baseline: float
    p_less: float
    p_greater: float
    effect_size: float
    effect_size_name: str
    standard_error: float
    diff_low: float
    diff_high: float
    pair_correlation: float


def cohens_h(p_candidate: float, p_baseline: float) -> float:
    """Cohen's h of two proportions (candidate − baseline)."""
    return 2.0 * math.asin(math.sqrt(p_candidate)) - 2.0 * math.asin(math.sqrt(p_baseline))


def cliffs_delta(candidate: np.ndarray, baseline: np.ndarray) -> float:
    """Cliff's delta P(C > B) − P(C < B), from ranks in O(n log n) (ties count half)."""
    ranks = stats.rankdata(np.concatenate([candidate, baseline]))
    n_c, n_b = len(candidate), len(baseline)
    u_candidate = float(ranks[:n_c].sum()) - n_c * (n_c + 1) / 2.0
    return 2.0 * u_candidate / (n_c * n_b) - 1.0


def _sign_test(differences: np.ndarray) -> tuple[float, float]:
    down, up = int((differences < 0).sum()), int((differences > 0).sum())
    if down + up == 0:
        return 1.0, 1.0
    p_less = stats.binomtest(down, down + up, 0.5, alternative="greater").pvalue
    p_greater = stats.binomtest(up, down + up, 0.5, alternative="greater").pvalue
    return float(p_less), float(p_greater)


def _wilcoxon(differences: np.ndarray) -> tuple[float, float]:
    if not np.any(differences != 0):
        return 1.0, 1.0
    p_less = stats.wilcoxon(differences, alternative="less").pvalue
    p_greater = stats.wilcoxon(differences, alternative="greater").pvalue
    return float(p_less), float(p_greater)


def _paired_t(differences: np.ndarray) -> tuple[float, float]:
    """One-sided p-values of the paired t test (H₀: mean difference 0), variance floored."""
    if not np.any(differences != 0):
        return 1.0, 1.0
    n = len(differences)
    t = float(np.mean(differences)) / math.sqrt(floored_variance(differences) / n)
    return float(stats.t.cdf(t, n - 1)), float(stats.t.sf(t, n - 1))


def _welch_t(candidate: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """One-sided p-values of Welch's t test (candidate − baseline), variances floored."""
    if np.ptp(np.concatenate([candidate, baseline])) == 0:
        return 1.0, 1.0
    v_c = floored_variance(candidate) / len(candidate)
    v_b = floored_variance(baseline) / len(baseline)
    t = (float(np.mean(candidate)) - float(np.mean(baseline))) / math.sqrt(v_c + v_b)
    df = (v_c + v_b) ** 2 / (v_c**2 / (len(candidate) - 1) + v_b**2 / (len(baseline) - 1))
    return float(stats.t.cdf(t, df)), float(stats.t.sf(t, df))


def cohens_d(candidate: np.ndarray, baseline: np.ndarray, *, paired: bool) -> float:
    """Cohen's d (candidate − baseline): d_z over the differences' SD when ``paired``, else
    over the pooled SD; variances floored, so identical scores give a finite value."""
    if paired:
        differences = candidate - baseline
        return float(np.mean(differences)) / math.sqrt(floored_variance(differences))
    n_c, n_b = len(candidate), len(baseline)
    pooled = ((n_c - 1) * floored_variance(candidate) + (n_b - 1) * floored_variance(baseline)) / (
        n_c + n_b - 2
    )
    return (float(np.mean(candidate)) - float(np.mean(baseline))) / math.sqrt(pooled)


def _proportions(candidate: np.ndarray, baseline: np.ndarray) -> tuple[float, float, str]:
    n_c, n_b = len(candidate), len(baseline)
    s_c, s_b = float(candidate.sum()), float(baseline.sum())
    total = n_c + n_b
    pooled = (s_c + s_b) / total
    expected = [n * share for n in (n_c, n_b) for share in (pooled, 1.0 - pooled)]
    if min(expected) < 5.0:
        table = [[int(s_c), n_c - int(s_c)], [int(s_b), n_b - int(s_b)]]
        p_less = stats.fisher_exact(table, alternative="less").pvalue
        p_greater = stats.fisher_exact(table, alternative="greater").pvalue
        return float(p_less), float(p_greater), "Fisher exact test"
    z = (s_c / n_c - s_b / n_b) / math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_b))
    return float(stats.norm.cdf(z)), float(stats.norm.sf(z)), "two-proportion z test"


def _mann_whitney(candidate: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    if np.ptp(np.concatenate([candidate, baseline])) == 0:
        return 1.0, 1.0
    p_less = stats.mannwhitneyu(candidate, baseline, alternative="less").pvalue
    p_greater = stats.mannwhitneyu(candidate, baseline, alternative="greater").pvalue
    return float(p_less), float(p_greater)


def _unusable(metric: Metric, reason: str, c: ItemScores, b: ItemScores, n_pairs: int) -> Evidence:
    nan = math.nan
    return Evidence(
        metric, False, reason, False, "", c.n, b.n, n_pairs, c.n_nan, b.n_nan,
        float(np.mean(c.values)) if c.n else nan, float(np.mean(b.values)) if b.n else nan,
        nan, nan, nan, "", nan, nan, nan, nan,
    )  # fmt: skip


def _describe(scores: ItemScores, name: str) -> str:
    ignored = f" ({scores.n_nan} missing scores ignored)" if scores.n_nan else ""
    return f"{name} has {scores.n} scored item{'s' if scores.n != 1 else ''}{ignored}"


def gather_evidence(
    candidate: SampleLike,
    baseline: SampleLike,
    metric: Metric,
    *,
    paired: bool | None,
    min_pairs: int,
    confidence: float,
    names: tuple[str, str] = ("candidate", "baseline"),
) -> Evidence:
    """Run the right test on ``candidate`` vs ``baseline`` (see the module docstring).

    ``names`` label the two samples in errors and reasons (A/B calls them "B", "A").
    """
    c = item_scores(candidate, metric, name=names[0])
    b = item_scores(baseline, metric, name=names[1])
    xc, xb = pair(c, b)
    n_pairs = len(xc)
    for scores, name in ((c, names[0]), (b, names[1])):
        if scores.n < 2:
            reason = f"{_describe(scores, name)}; at least 2 are needed to compare"
            return _unusable(metric, reason, c, b, n_pairs)
    use_paired = bool(paired) if paired is not None else n_pairs >= min_pairs
    if use_paired and n_pairs < 2:
        reason = f"a paired test was asked for but only {n_pairs} items are in both samples"
        return _unusable(metric, reason, c, b, n_pairs)

    correlation = math.nan
    even = balanced(c, b, paired=use_paired)
    if use_paired:
        differences = xc - xb
        if not even:
            p_less, p_greater = _paired_t(differences)
            test = "paired t test (items answered unequally often)"
        elif metric == "exact_match":
            p_less, p_greater = _sign_test(differences)
            binary = is_binary(xc) and is_binary(xb)
            test = "McNemar exact test" if binary else "sign test"
        else:
            p_less, p_greater = _wilcoxon(differences)
            test = "Wilcoxon signed-rank test"
        test += f" on {n_pairs} pairs"
        standard_error = math.sqrt(floored_variance(differences) / n_pairs)
        low, high = paired_interval(differences, confidence)
        if np.std(xc) > 0 and np.std(xb) > 0:
            correlation = float(np.corrcoef(xc, xb)[0, 1])
        sample_c, sample_b = xc, xb
    else:
        sample_c, sample_b = c.values, b.values
        if not even:
            p_less, p_greater = _welch_t(sample_c, sample_b)
            test = "Welch t test (items answered unequally often)"
            low, high = welch_interval(sample_b, sample_c, confidence)
        elif metric == "exact_match" and is_binary(sample_c) and is_binary(sample_b):
            p_less, p_greater, test = _proportions(sample_c, sample_b)
            low, high = newcombe_interval(
                sample_b.sum(), len(sample_b), sample_c.sum(), len(sample_c), confidence
            )
        else:
            p_less, p_greater = _mann_whitney(sample_c, sample_b)
            test = "Mann–Whitney U test"
            low, high = welch_interval(sample_b, sample_c, confidence)
        standard_error = math.sqrt(
            floored_variance(sample_c) / len(sample_c) + floored_variance(sample_b) / len(sample_b)
        )
    mean_c, mean_b = float(np.mean(sample_c)), float(np.mean(sample_b))
    if metric == "exact_match":
        effect, effect_name = cohens_h(mean_c, mean_b), "Cohen's h"
    elif not even:
        effect = cohens_d(sample_c, sample_b, paired=use_paired)
        effect_name = "Cohen's d_z" if use_paired else "Cohen's d"
    else:
        effect, effect_name = cliffs_delta(sample_c, sample_b), "Cliff's delta"
    return Evidence(
        metric=metric,
        usable=True,
        reason="",
        paired=use_paired,
        test=test,
        n_candidate=c.n,
        n_baseline=b.n,
        n_pairs=n_pairs,
        n_nan_candidate=c.n_nan,
        n_nan_baseline=b.n_nan,
        mean_candidate=mean_c,
        mean_baseline=mean_b,
        p_less=p_less,
        p_greater=p_greater,
        effect_size=effect,
        effect_size_name=effect_name,
        standard_error=standard_error,
        diff_low=low,
        diff_high=high,
        pair_correlation=correlation,
    )
