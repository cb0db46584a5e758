"""Answer-quality statistics on constructed samples (seeded numpy), checked by hand or by
simulation.

The generator plants what each test needs: golden-set items that differ in difficulty
(an "ease" per item, uniform on [0.2, 0.95]) and per-answer noise, and a candidate whose
scores are the baseline's kind of scores times (1 − drop) — so a "20% drop" is a 20%
drop of the expected score, exactly. Simulated rates are printed (run with ``-s``):

    .venv/bin/python -m pytest tests/agents/application/test_stats.py -s -q
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from agents.application.stats import (
    BASELINE_COLUMNS,
    baselines,
    benjamini_hochberg,
    compare_ab,
    detect_regression,
    expected_false_alarms,
    family_false_alarm_probability,
    minimum_detectable_drop,
    quality_margin,
    quality_margins,
    required_samples,
    wilson_interval,
)

Z95 = 1.959963984540054  # z of a two-sided 95% interval
Z_ALPHA, Z_POWER = 1.6448536269514722, 0.8416212335729143  # one-sided 0.05; power 0.8
# Tolerance for a simulated false-alarm rate over 500 runs: a correct test's rate has a
# standard error of sqrt(0.05 × 0.95 / 500) ≈ 0.0097 around its nominal 0.05, so 3 standard
# errors (≈ 0.03) covers sampling noise while a test running at 0.10 would fail.
FALSE_ALARM_TOLERANCE = 3 * math.sqrt(0.05 * 0.95 / 500)


def probes(
    n: int,
    *,
    drop: float = 0.0,
    seed: int,
    noise: float = 0.15,
    metric: str = "f1",
    same_items: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(candidate, baseline) frames of n items each.

    ``same_items``: the golden-set case, both configurations asked the same n items
    (shared ease, same ids). Otherwise two independent sets of items, as sampled
    interactions are — the case the unpaired tests are built for.
    """
    rng = np.random.default_rng(seed)
    ease = rng.uniform(0.2, 0.95, n)
    cand_ease = ease if same_items else rng.uniform(0.2, 0.95, n)
    if metric == "exact_match":
        base = (rng.random(n) < ease).astype(float)
        cand = (rng.random(n) < cand_ease * (1.0 - drop)).astype(float)
    else:
        base = np.clip(ease + rng.normal(0.0, noise, n), 0.0, 1.0)
        cand = np.clip(cand_ease + rng.normal(0.0, noise, n), 0.0, 1.0) * (1.0 - drop)
    ids = [f"q{i:04d}" for i in range(n)]
    cand_ids = ids if same_items else [f"s{i:04d}" for i in range(n)]
    return (
        pd.DataFrame({"item_id": cand_ids, metric: cand}),
        pd.DataFrame({"item_id": ids, metric: base}),
    )


def normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


# ---------------------------------------------------------------- too little data


@pytest.mark.parametrize(
    ("candidate", "baseline", "says"),
    [
        ([], [0.5, 0.7, 0.9], "candidate has 0 scored items"),
        ([0.5, 0.7, 0.9], [], "baseline has 0 scored items"),
        ([0.4], [0.5, 0.7, 0.9], "candidate has 1 scored item;"),
        ([0.5, 0.7], [0.9], "baseline has 1 scored item;"),
        ([math.nan, None, 0.3], [0.5, 0.7], "candidate has 1 scored item (2 missing"),
    ],
)
def test_empty_and_one_element_samples_are_unknown_with_the_reason(
    candidate: list[float | None], baseline: list[float], says: str
) -> None:
    result = detect_regression(candidate, baseline)
    assert result.verdict == "unknown"
    assert says in result.reason
    assert math.isnan(result.p_value)
    ab = compare_ab(baseline, candidate)
    assert ab.verdict == "unknown"
    assert says.replace("candidate", "B").replace("baseline", "A") in ab.reason


def test_a_tiny_sample_is_unknown_even_when_both_sides_agree_perfectly() -> None:
    # 5 items, every answer right on both sides: no evidence of a drop, but 5 items
    # cannot rule out a 10% one either. The variance floor keeps this from reading as
    # "zero spread, so any drop would have shown".
    tiny = detect_regression([1.0] * 5, [1.0] * 5, threshold=0.10)
    assert tiny.verdict == "unknown"
    assert tiny.min_detectable_drop > 0.10
    assert tiny.items_needed is not None and tiny.items_needed > 5
    # The same perfect agreement on 400 paired items is enough to say "no regression".
    ids = pd.Series([1.0] * 400, index=[f"q{i}" for i in range(400)])
    plenty = detect_regression(ids, ids.copy())
    assert plenty.paired
    assert plenty.verdict == "no_regression"
    assert plenty.min_detectable_drop < 0.10


# ---------------------------------------------------------------- planted drops


def brute_force_cliffs_delta(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sign(x[:, None] - y[None, :]).mean())


def test_a_planted_20_percent_f1_drop_on_200_paired_items_is_a_regression() -> None:
    candidate, baseline = probes(200, drop=0.20, seed=7)
    result = detect_regression(candidate, baseline, "f1", threshold=0.10)
    assert result.verdict == "regression"
    assert result.paired and result.n_pairs == 200
    assert result.test.startswith("Wilcoxon signed-rank")
    assert result.p_value < 1e-6
    assert -0.25 < result.relative_diff < -0.15  # planted −20%
    assert result.diff < 0 and result.diff_high < 0  # the interval excludes no change
    assert result.exceeds_threshold
    assert result.effect_size_name == "Cliff's delta"
    expected = brute_force_cliffs_delta(candidate["f1"].to_numpy(), baseline["f1"].to_numpy())
    assert result.effect_size == pytest.approx(expected, abs=1e-12)
    assert -0.6 < result.effect_size < -0.1  # a small-to-medium effect, candidate worse
    assert result.pair_correlation > 0.5  # items' difficulty shared by both sides


def test_a_planted_5_percent_drop_on_30_items_is_unknown_never_no_regression() -> None:
    candidate, baseline = probes(30, drop=0.05, seed=3)
    result = detect_regression(candidate, baseline, threshold=0.10)
    assert result.verdict == "unknown"
    assert result.min_detectable_drop > 0.10
    assert result.items_needed is not None and result.items_needed > 30
    assert "only detect a drop of" in result.reason
    # Not a lucky seed: over 50 seeds, 30 items never earn a "fine".
    verdicts = [
        detect_regression(*probes(30, drop=0.05, seed=s), threshold=0.10).verdict for s in range(50)
    ]
    assert "no_regression" not in verdicts


def test_an_improvement_is_called_an_improvement() -> None:
    worse, better = probes(200, drop=0.25, seed=11)  # "baseline" is the better one here
    result = detect_regression(better, worse)
    assert result.verdict == "improvement"
    assert result.p_value_improvement < 0.05 and result.effect_size > 0


# ---------------------------------------------------------------- error rates


@pytest.mark.parametrize(
    ("metric", "paired", "test_name"),
    [
        ("f1", True, "Wilcoxon signed-rank"),
        ("f1", False, "Mann–Whitney U"),
        ("exact_match", True, "McNemar exact"),
        ("exact_match", False, "two-proportion z"),
    ],
)
def test_false_alarm_rate_on_identical_distributions_is_at_most_alpha(
    metric: str, paired: bool, test_name: str
) -> None:
    # Paired tests on the same items asked twice; unpaired ones on independent items.
    alarms = 0
    for seed in range(500):
        candidate, baseline = probes(200, seed=seed, metric=metric, same_items=paired)
        result = detect_regression(candidate, baseline, metric, alpha=0.05)
        assert result.paired == paired and result.test.startswith(test_name)
        alarms += result.verdict == "regression"
    rate = alarms / 500
    print(f"\nfalse-alarm rate, {metric} {test_name}, n=200, alpha 0.05: {rate:.3f}")
    assert rate <= 0.05 + FALSE_ALARM_TOLERANCE


def test_power_to_detect_a_10_percent_drop_at_200_items_matches_the_approximation() -> None:
    # Paired: the golden-set case (same items). Unpaired: independent items.
    for paired in (True, False):
        detected, predicted = 0, []
        for seed in range(200):
            candidate, baseline = probes(200, drop=0.10, seed=1000 + seed, same_items=paired)
            result = detect_regression(candidate, baseline)
            assert result.paired == paired
            assert result.verdict != "improvement"
            detected += result.verdict == "regression"
            # The MDE's own approximation: standard error from MDE = (zα + zβ)·SE / mean.
            se = result.min_detectable_drop * result.mean_baseline / (Z_ALPHA + Z_POWER)
            predicted.append(normal_cdf(abs(result.diff) / se - Z_ALPHA))
        power, expected = detected / 200, float(np.mean(predicted))
        label = "paired" if paired else "unpaired"
        print(f"\npower, 10% F1 drop, n=200 {label}: {power:.3f} (approximation {expected:.3f})")
        assert abs(power - expected) < 0.12
        if paired:
            assert power >= 0.8


def test_pairing_by_item_detects_with_fewer_items_when_items_vary_in_difficulty() -> None:
    paired_hits = unpaired_hits = 0
    for seed in range(100):
        candidate, baseline = probes(80, drop=0.10, seed=5000 + seed)
        with_pairs = detect_regression(candidate, baseline, paired=True)
        without = detect_regression(candidate, baseline, paired=False)
        assert with_pairs.min_detectable_drop < without.min_detectable_drop
        paired_hits += with_pairs.verdict == "regression"
        unpaired_hits += without.verdict == "regression"
    print(
        f"\ndetection of a 10% drop with 80 items (100 seeds):"
        f" paired {paired_hits}%, unpaired {unpaired_hits}%"
    )
    assert paired_hits >= unpaired_hits + 25
    # The planner agrees once it knows the pairs' correlation.
    rho = with_pairs.pair_correlation
    mean = with_pairs.mean_baseline
    assert required_samples(mean, 0.10, paired=True, paired_correlation=rho) < required_samples(
        mean, 0.10
    )


# ---------------------------------------------------------------- inputs


def test_nan_scores_are_ignored_and_counted() -> None:
    candidate, baseline = probes(120, drop=0.20, seed=21)
    holes = candidate.astype({"f1": object})  # None, as a QualityEvent without a score
    holes.loc[[3, 17, 40], "f1"] = [math.nan, None, math.nan]
    extra = pd.DataFrame({"item_id": ["x1", "x2"], "f1": [None, math.nan]})
    result = detect_regression(pd.concat([holes, extra]), baseline)
    clean = detect_regression(holes.dropna(), baseline)
    assert result.n_nan_candidate == 5 and result.n_nan_baseline == 0
    assert result.n_candidate == 117 and result.n_pairs == 117
    assert result.mean_candidate == pytest.approx(clean.mean_candidate)
    assert result.p_value == pytest.approx(clean.p_value)
    assert result.verdict == clean.verdict == "regression"


def test_an_item_asked_several_times_counts_once() -> None:
    events = pd.DataFrame({"item_id": ["a", "a", "a", "b", "c"], "f1": [1.0, 1.0, 0.4, 0.0, 0.5]})
    result = detect_regression(events, [0.2, 0.3, 0.4])
    assert result.n_candidate == 3  # items a (mean 0.8), b, c
    assert result.mean_candidate == pytest.approx((0.8 + 0.0 + 0.5) / 3)


def test_bad_inputs_fail_naming_the_field() -> None:
    with pytest.raises(ValueError, match="metric: 'bleu' is not one of f1, exact_match"):
        detect_regression([0.1, 0.2], [0.3, 0.4], "bleu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"candidate f1: 1 values outside \[0, 1\]"):
        detect_regression([0.1, 1.7], [0.3, 0.4])
    with pytest.raises(ValueError, match="baseline: the frame has no 'exact_match' column"):
        detect_regression([0.0, 1.0], pd.DataFrame({"f1": [0.3]}), "exact_match")
    with pytest.raises(ValueError, match="threshold"):
        detect_regression([0.1, 0.2], [0.3, 0.4], threshold=0.0)


# ---------------------------------------------------------------- exact match


def test_paired_exact_match_is_mcnemars_exact_test() -> None:
    # 30 items: 20 concordant, 9 right before and wrong now, 1 the other way round.
    base = [1.0] * 15 + [0.0] * 5 + [1.0] * 9 + [0.0]
    cand = [1.0] * 15 + [0.0] * 5 + [0.0] * 9 + [1.0]
    ids = [f"q{i}" for i in range(30)]
    result = detect_regression(pd.Series(cand, ids), pd.Series(base, ids), "exact_match")
    assert result.test.startswith("McNemar exact test")
    # One-sided: P(X >= 9), X ~ Binomial(10, 1/2) = (C(10,9) + C(10,10)) / 2^10.
    assert result.p_value == pytest.approx(11 / 1024, rel=1e-9)
    assert result.verdict == "regression"


def test_unpaired_exact_match_uses_the_z_test_and_cohens_h() -> None:
    cand = [1.0] * 60 + [0.0] * 40
    base = [1.0] * 70 + [0.0] * 30
    result = detect_regression(cand, base, "exact_match")
    pooled = 0.65
    z = (0.6 - 0.7) / math.sqrt(pooled * (1 - pooled) * (2 / 100))
    assert result.test == "two-proportion z test"
    assert result.p_value == pytest.approx(normal_cdf(z), rel=1e-9)  # ≈ 0.069
    h = 2 * math.asin(math.sqrt(0.6)) - 2 * math.asin(math.sqrt(0.7))
    assert result.effect_size == pytest.approx(h) and result.effect_size_name == "Cohen's h"
    assert result.verdict == "unknown"  # not significant, and 100 items cannot see 10%
    small = detect_regression([1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0], "exact_match")
    assert small.test == "Fisher exact test"
    # One-sided Fisher: P(at most 1 of the 6 successes in the candidate's 4 of 9 rows)
    # = C(6,1)·C(3,3) / C(9,4) = 6/126 (0 successes is impossible: only 3 failures).
    assert small.p_value == pytest.approx(6 / 126)


# ---------------------------------------------------------------- A/B


def test_ab_comparison_is_two_sided_with_an_interval_for_the_difference() -> None:
    b, a = probes(300, drop=0.15, seed=31)  # B is 15% worse than A
    result = compare_ab(a, b, "f1")
    assert result.verdict == "a_better"
    assert result.diff < 0 and result.diff_low < result.diff < result.diff_high < 0
    one_sided = detect_regression(b, a, "f1")
    assert result.p_value == pytest.approx(min(1.0, 2 * one_sided.p_value))
    # Identical distributions: significant in 5% of seeds by design; this seed is not one.
    same_b, same_a = probes(400, seed=34)
    same = compare_ab(same_a, same_b)
    assert same.verdict == "no_difference"
    assert same.diff_low < 0 < same.diff_high
    small = compare_ab(*probes(15, seed=33))
    assert small.verdict == "unknown"
    # Unpaired proportions: Newcombe's interval contains the true difference 0.1.
    ab = compare_ab([1.0] * 50 + [0.0] * 50, [1.0] * 60 + [0.0] * 40, "exact_match")
    assert ab.test == "two-proportion z test"
    assert ab.diff_low < 0.1 < ab.diff_high and ab.diff_low < 0  # not significant at 100


# ---------------------------------------------------------------- intervals, BH, planning


def test_wilson_interval_against_known_values() -> None:
    # 0 of 10: the upper end is z² / (n + z²), exactly.
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(Z95**2 / (10 + Z95**2), rel=1e-12)
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion",
    # example 81/263: Wilson score interval 0.2553 to 0.3662.
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert wilson_interval(10, 10)[0] == pytest.approx(10 / (10 + Z95**2), rel=1e-12)


def test_benjamini_hochberg_against_a_hand_computed_example() -> None:
    # m = 5, q = 0.05: sorted 0.001, 0.025, 0.029, 0.2, 0.5 against k·q/m = 0.01, 0.02,
    # 0.03, 0.04, 0.05 → the largest k passing is 3 (0.029 <= 0.03), so the three
    # smallest are rejected, 0.025 included although it fails its own step (0.02).
    # Adjusted: 0.001·5 = 0.005; 0.025·5/2 = 0.0625 → min(0.0625, 0.04833) = 0.04833;
    # 0.029·5/3 = 0.04833; 0.2·5/4 = 0.25; 0.5.
    result = benjamini_hochberg([0.025, 0.001, 0.029, 0.5, 0.2], q=0.05)
    assert result.rejected == (True, True, True, False, False)
    assert result.adjusted == pytest.approx((0.029 * 5 / 3, 0.005, 0.029 * 5 / 3, 0.5, 0.25))
    assert result.cutoff == 0.029 and result.tests == 5
    # Untestable entries are not tests: m stays 5 and nothing shifts.
    with_gap = benjamini_hochberg([0.025, math.nan, 0.001, 0.029, 0.5, 0.2])
    assert with_gap.rejected == (True, False, True, True, False, False) and with_gap.tests == 5
    assert expected_false_alarms(0.05, 24) == pytest.approx(1.2)
    assert family_false_alarm_probability(0.05, 24) == pytest.approx(1 - 0.95**24)


def test_required_samples_falls_as_the_drop_grows_and_inverts_the_mde() -> None:
    # Hand value: (zα + zβ)² · (0.8·0.2 + 0.72·0.28) / 0.08² = 349.4 → 350 per sample.
    assert required_samples(0.8, 0.10) == math.ceil(
        (Z_ALPHA + Z_POWER) ** 2 * (0.16 + 0.72 * 0.28) / 0.08**2
    )
    for paired in (False, True):
        sizes = [required_samples(0.7, d / 100, paired=paired) for d in range(2, 60, 2)]
        assert all(a > b or a == b == 2 for a, b in itertools.pairwise(sizes))
        n = required_samples(0.7, 0.10, paired=paired)
        assert minimum_detectable_drop(0.7, n, paired=paired) <= 0.10
        assert minimum_detectable_drop(0.7, n - 1, paired=paired) > 0.10
    assert required_samples(0.7, 0.10, paired=True) < required_samples(0.7, 0.10)
    assert required_samples(0.7, 0.10, alpha=0.01) > required_samples(0.7, 0.10)
    assert minimum_detectable_drop(0.7, 1) == math.inf


# ---------------------------------------------------------------- baselines and margins


def events(deployment: str, config_id: str, f1: list[float], em: list[float]) -> pd.DataFrame:
    n = len(f1)
    return pd.DataFrame(
        {
            "ts": pd.Timestamp("2026-11-24T12:00Z"),
            "tenant": "default",
            "provider": "answer-quality",
            "deployment": deployment,
            "config_id": config_id,
            "kind": "probe",
            "item_id": [f"q{i}" for i in range(n)],
            "exact_match": em,
            "f1": f1,
            "judge_score": None,
            "latency_seconds": 0.4,
        }
    )


def test_baselines_per_deployment_and_configuration() -> None:
    rng = np.random.default_rng(41)
    f1 = rng.uniform(0.5, 1.0, 100)
    em = [1.0] * 80 + [0.0] * 20
    frame = pd.concat(
        [events("chat", "fp16", list(f1), em), events("chat", "int4", [0.2, 0.4], [0.0, 1.0])]
    )
    frame.loc[frame.index[:3], "f1"] = math.nan  # 3 f1 scores missing on fp16
    table = baselines(frame)
    assert list(table.columns) == BASELINE_COLUMNS
    fp16 = table[table["config_id"] == "fp16"].iloc[0]
    assert (fp16["events"], fp16["items"], fp16["f1_n"], fp16["f1_nan"]) == (100, 100, 97, 3)
    assert fp16["f1_mean"] == pytest.approx(f1[3:].mean())
    assert (fp16["exact_match_low"], fp16["exact_match_high"]) == pytest.approx(
        wilson_interval(80, 100)
    )
    half = 1.98472 * f1[3:].std(ddof=1) / math.sqrt(97)  # t(0.975, 96) ≈ 1.98472
    assert fp16["f1_low"] == pytest.approx(f1[3:].mean() - half, rel=1e-4)
    assert fp16["judge_score_n"] == 0 and math.isnan(fp16["judge_score_mean"])
    assert fp16["judge_score_nan"] == 100
    assert baselines(frame.iloc[:0]).empty


def test_quality_margin_is_the_lower_bound_above_the_floor() -> None:
    rng = np.random.default_rng(43)
    best = rng.uniform(0.7, 1.0, 200)  # mean ≈ 0.85
    tight = np.clip(rng.normal(0.80, 0.05, 400), 0, 1)  # a cheaper config, well measured
    frame = pd.concat(
        [
            events("chat", "fp16", list(best), [1.0] * 200),
            events("chat", "fp8", list(tight), [1.0] * 400),
            events("chat", "int4", list(best * 0.85), [1.0] * 200),
            events("chat", "int2", [0.9] * 10, [1.0] * 10),  # lucky, too few to be the best
        ]
    )
    table = baselines(frame)
    fp8 = quality_margin(table, "chat", "fp8", max_quality_drop=0.10)
    reference = best.mean()
    assert fp8.reference_config_id == "fp16"
    assert fp8.reference_mean == pytest.approx(reference)
    assert fp8.floor == pytest.approx(0.9 * reference)
    row = table.set_index("config_id").loc["fp8"]
    assert fp8.margin == pytest.approx(row["f1_low"] - 0.9 * reference)
    assert fp8.relative_margin == pytest.approx(fp8.margin / reference)
    assert fp8.status == ("thin" if fp8.relative_margin < 0.05 else "ok")
    assert 0 < fp8.relative_margin < 0.10
    assert quality_margin(table, "chat", "int4").status == "breached"  # 15% below the best
    assert quality_margin(table, "chat", "int2").status == "unknown"
    alone = quality_margin(baselines(frame[frame["config_id"] == "fp8"]), "chat", "fp8")
    assert alone.reference_config_id == "fp8"  # the only configuration is its own reference
    assert alone.status == "ok" and alone.relative_margin > fp8.relative_margin
    assert quality_margin(table, "chat", "fp8", thin_below=0.2).status == "thin"
    all_margins = quality_margins(table)
    assert list(all_margins["config_id"]) == list(table["config_id"])
    with pytest.raises(ValueError, match=r"config_id 'bf16' .*'fp16'"):
        quality_margin(table, "chat", "bf16")
