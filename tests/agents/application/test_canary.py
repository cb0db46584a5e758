"""Canary analysis (issue 7): the verdict rules on constructed samples, and the decision
rule's error rates on sandbox-made quality events over fixed seeds.

The acceptance part uses ``benchmarks/canary_bench.py``'s generator: the sandbox's quality
model answering the bundled golden set, scored with ``optiinfra.scoring``, at one rollout
step's probe count (4 collections x 50 probes = 200 per variant, the same items asked of
both). Seeds are fixed, so the rates are measured once, never drawn anew (nothing flakes).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from agents.application.canary import (
    SLO_TOLERANCE,
    CanaryReport,
    CanaryThresholds,
    analyse_canary,
)
from benchmarks.canary_bench import analyse, canary_error, step_events, wrong_answer_score
from optiinfra.models import QualityEvent, Sample

CANARY, BASELINE = "cfg-new", "cfg-old"
C_INST, B_INST = ["srv-3"], ["srv-0", "srv-1"]
TS = pd.Timestamp("2026-11-23T00:00:00Z")


def events(config: str, scores, *, ids=None, metric: str = "f1", kind: str = "probe"):
    """Quality events of one variant: one row per score, item ids i0, i1, … by default."""
    scores = list(scores)
    ids = ids if ids is not None else [f"i{k}" for k in range(len(scores))]
    rows = []
    for item, score in zip(ids, scores, strict=True):
        em = score if metric == "exact_match" else (None if score is None else float(score >= 1))
        f1 = score if metric == "f1" else em
        rows.append((TS, "default", "q", "chat", config, kind, item, em, f1, None, None))
    return pd.DataFrame(rows, columns=list(QualityEvent.COLUMNS))


def both(canary, baseline, **kw) -> pd.DataFrame:
    return pd.concat([events(CANARY, canary, **kw), events(BASELINE, baseline, **kw)])


def healthy_scores(n: int = 200, wrong: int = 20) -> list[float]:
    return [0.0] * wrong + [1.0] * (n - wrong)


def samples(rows) -> pd.DataFrame:
    """Samples from (instance, metric, value, labels) tuples."""
    return pd.DataFrame(
        [(TS, "default", "p", "", i, "chat", "vllm", m, v, lab) for i, m, v, lab in rows],
        columns=list(Sample.COLUMNS),
    )


def latency(metric: str, canary: float, baseline: float, quantile: str = "0.95"):
    rows = [(i, metric, canary, {"quantile": quantile}) for i in C_INST]
    return rows + [(i, metric, baseline, {"quantile": quantile}) for i in B_INST]


def run(quality: pd.DataFrame, sample_frame: pd.DataFrame | None = None, **kw) -> CanaryReport:
    thresholds = kw.pop("thresholds", CanaryThresholds())
    return analyse_canary(
        quality=quality,
        samples=sample_frame if sample_frame is not None else pd.DataFrame(),
        canary_config=CANARY,
        baseline_config=BASELINE,
        canary_instances=C_INST,
        baseline_instances=B_INST,
        thresholds=thresholds,
        **kw,
    )


SAME = both(healthy_scores(), healthy_scores())


# --- quality -------------------------------------------------------------------------------


def test_nothing_at_all_means_wait_never_pass() -> None:
    report = run(pd.DataFrame(columns=list(QualityEvent.COLUMNS)))
    assert report.verdict == "wait"
    assert report.figures["quality_items_canary"] == 0
    assert "0 scored f1 items on canary cfg-new" in report.reasons[0]


def test_a_handful_of_probes_waits_and_says_how_many_would_do() -> None:
    report = run(both(healthy_scores(10, 1), healthy_scores(10, 1)))
    assert report.verdict == "wait"
    needed = report.figures["quality_items_needed"]
    assert needed >= 30
    assert f"at least {int(needed)} per variant" in report.reasons[0]


def test_a_missing_variant_waits() -> None:
    report = run(events(BASELINE, healthy_scores()))
    assert report.verdict == "wait"
    assert report.figures["quality_items_canary"] == 0
    assert report.figures["quality_items_baseline"] == 200


def test_identical_answers_on_enough_items_pass() -> None:
    report = run(SAME)
    assert report.verdict == "pass", report.reasons
    assert report.figures["quality_drop"] == 0
    assert report.figures["quality_min_detectable_drop"] <= 0.10
    assert report.reasons[0].startswith("quality: pass")


def test_a_large_significant_drop_fails_naming_the_drop_and_the_allowance() -> None:
    report = run(both(healthy_scores(200, 60), healthy_scores(200, 20)))
    assert report.verdict == "fail"
    assert report.figures["quality_drop"] == pytest.approx(40 / 180)
    assert report.figures["quality_p_value"] < 0.05
    assert report.figures["quality_pairs"] == 200
    assert "22.2%" in report.reasons[0] and "10% allowance" in report.reasons[0]
    assert "signed-rank" in report.reasons[0]


def test_a_real_drop_shown_within_the_allowance_passes_with_a_concern() -> None:
    # 1,000 paired items, 40 more wrong on the canary: 4.4 % drop, upper bound ~5.6 %.
    report = run(both(healthy_scores(1000, 140), healthy_scores(1000, 100)))
    assert report.verdict == "pass"
    assert report.reasons[0].startswith("quality: pass (concern)")
    assert report.figures["quality_drop_high"] < 0.10
    assert report.figures["quality_drop_low"] > 0


def test_a_real_drop_that_may_exceed_the_allowance_waits() -> None:
    # 200 pairs, 16 more wrong: 8.9 % drop, significant, upper bound above 10 %.
    report = run(both(healthy_scores(200, 36), healthy_scores(200, 20)))
    assert report.verdict == "wait"
    assert report.figures["quality_drop"] == pytest.approx(16 / 180)
    assert report.figures["quality_drop_high"] > 0.10
    assert "upper bound" in report.reasons[0]


def test_enough_items_but_too_noisy_to_see_the_allowance_waits() -> None:
    # 40 pairs, same mean 0.5, answers disagreeing on 20 items: a 10% drop is invisible.
    canary = [1.0] * 20 + [0.0] * 20
    baseline = [0.0] * 10 + [1.0] * 20 + [0.0] * 10
    report = run(both(canary, baseline))
    assert report.verdict == "wait"
    assert report.figures["quality_min_detectable_drop"] > 0.10
    assert "items per variant would do" in report.reasons[0]


def test_nan_scores_are_not_counted_as_items() -> None:
    canary = [None] * 20 + [1.0] * 20
    report = run(both(canary, healthy_scores(40, 4)))
    assert report.figures["quality_items_canary"] == 20
    assert report.verdict == "wait"  # 20 < min_quality_samples


def test_unpaired_items_use_an_unpaired_test_and_still_catch_a_large_drop() -> None:
    canary = events(CANARY, healthy_scores(200, 80), ids=[f"a{k}" for k in range(200)])
    baseline = events(BASELINE, healthy_scores(200, 20), ids=[f"b{k}" for k in range(200)])
    report = run(pd.concat([canary, baseline]))
    assert report.figures["quality_pairs"] == 0
    assert "Mann" in report.reasons[0]
    assert report.verdict == "fail"


def test_probes_are_preferred_to_sampled_interactions() -> None:
    sampled = events(CANARY, [0.0] * 100, ids=[f"s{k}" for k in range(100)], kind="sampled")
    report = run(pd.concat([SAME, sampled]))
    assert report.verdict == "pass"
    assert report.figures["quality_items_canary"] == 200
    assert "golden-set probes" in report.reasons[0]


def test_exact_match_can_be_the_metric() -> None:
    report = run(
        both(healthy_scores(200, 60), healthy_scores(200, 20), metric="exact_match"),
        thresholds=CanaryThresholds(metric="exact_match"),
    )
    assert report.verdict == "fail"
    assert "McNemar" in report.reasons[0]


# --- SLOs ----------------------------------------------------------------------------------

BOUNDS = CanaryThresholds(ttft_p95_s=0.5, itl_p95_s=0.05, max_error_rate=0.01)


def healthy_slo_rows():
    return [
        *latency("ttft_seconds", 0.2, 0.2),
        *latency("itl_seconds", 0.03, 0.03),
        *[(i, "request_success_per_second", 5.0, {}) for i in C_INST + B_INST],
        *[(i, "request_failure_per_second", 0.0, {}) for i in C_INST + B_INST],
    ]


def test_slos_within_bounds_pass_with_their_figures() -> None:
    report = run(SAME, samples(healthy_slo_rows()), thresholds=BOUNDS)
    assert report.verdict == "pass", report.reasons
    assert report.figures["ttft_p95_canary_s"] == pytest.approx(0.2)
    assert report.figures["itl_p95_baseline_s"] == pytest.approx(0.03)
    assert report.figures["error_rate_canary"] == 0
    assert sum(r.startswith("p95 TTFT: pass") for r in report.reasons) == 1


def test_an_slo_broken_on_the_canary_only_fails() -> None:
    rows = [r for r in healthy_slo_rows() if r[1] != "ttft_seconds"]
    rows += latency("ttft_seconds", 0.8, 0.2)
    report = run(SAME, samples(rows), thresholds=BOUNDS)
    assert report.verdict == "fail"
    [reason] = [r for r in report.reasons if r.startswith("p95 TTFT")]
    assert "0.8 s" in reason and "0.5 s" in reason and "fail" in reason


def test_the_worst_canary_replica_decides() -> None:
    rows = [r for r in healthy_slo_rows() if r[1] != "ttft_seconds"]
    rows += latency("ttft_seconds", 0.2, 0.2)
    rows += [("srv-4", "ttft_seconds", 0.9, {"quantile": "0.95"})]
    report = analyse_canary(
        quality=SAME, samples=samples(rows), canary_config=CANARY, baseline_config=BASELINE,
        canary_instances=["srv-3", "srv-4"], baseline_instances=B_INST, thresholds=BOUNDS,
    )  # fmt: skip
    assert report.verdict == "fail"
    assert report.figures["ttft_p95_canary_s"] == pytest.approx(0.9)


def test_an_slo_broken_on_both_is_the_fleets_breach_not_the_changes() -> None:
    rows = [r for r in healthy_slo_rows() if r[1] != "itl_seconds"]
    rows += latency("itl_seconds", 0.062, 0.060)
    report = run(SAME, samples(rows), thresholds=BOUNDS)
    assert report.verdict == "pass", report.reasons
    [reason] = [r for r in report.reasons if r.startswith("p95 inter-token")]
    assert "pass (concern)" in reason and "so does the baseline" in reason


def test_an_slo_broken_on_both_but_much_worse_on_the_canary_fails() -> None:
    rows = [r for r in healthy_slo_rows() if r[1] != "itl_seconds"]
    rows += latency("itl_seconds", 0.060 * (1 + SLO_TOLERANCE) * 1.5, 0.060)
    report = run(SAME, samples(rows), thresholds=BOUNDS)
    assert report.verdict == "fail"
    assert any("more than 10% worse" in r for r in report.reasons)


def test_error_rate_from_canonical_rates_and_json_labels() -> None:
    rows = [r for r in healthy_slo_rows() if not r[1].startswith("request_")]
    rows += [(i, "request_success_per_second", 4.5, "{}") for i in C_INST]
    rows += [(i, "request_failure_per_second", 0.5, "{}") for i in C_INST]
    rows += [(i, "request_success_per_second", 5.0, "{}") for i in B_INST]
    rows += [(i, "request_failure_per_second", 0.01, "{}") for i in B_INST]
    frame = samples(rows)
    frame["labels"] = [json.dumps(v) if isinstance(v, dict) else v for v in frame["labels"]]
    report = run(SAME, frame, thresholds=BOUNDS)
    assert report.figures["error_rate_canary"] == pytest.approx(0.1)
    assert report.figures["error_rate_baseline"] == pytest.approx(0.02 / 10.02)
    assert report.figures["ttft_p95_canary_s"] == pytest.approx(0.2)  # labels as JSON text
    assert report.verdict == "fail"


def test_a_checked_slo_without_canary_data_waits_and_nan_values_are_ignored() -> None:
    rows = [r for r in healthy_slo_rows() if not (r[1] == "ttft_seconds" and r[0] in C_INST)]
    rows += [(i, "ttft_seconds", math.nan, {"quantile": "0.95"}) for i in C_INST]
    rows += [(i, "ttft_seconds", 9.0, {"quantile": "0.5"}) for i in C_INST]  # not p95
    report = run(SAME, samples(rows), thresholds=BOUNDS)
    assert report.verdict == "wait"
    assert "ttft_p95_canary_s" not in report.figures
    assert any(r.startswith("p95 TTFT: wait") for r in report.reasons)


def test_unchecked_slos_are_not_read() -> None:
    rows = latency("ttft_seconds", 5.0, 0.2)
    report = run(SAME, samples(rows))
    assert report.verdict == "pass"
    assert "ttft_p95_canary_s" not in report.figures


# --- saving and the report -------------------------------------------------------------------


def test_a_saving_far_below_expectation_is_a_concern_not_a_failure() -> None:
    report = run(SAME, expected_saving_usd_per_hour=10.0, realised_cost_usd_per_hour=(18.0, 20.0))
    assert report.verdict == "pass"
    assert report.figures["realised_saving_usd_per_hour"] == pytest.approx(2.0)
    assert report.figures["realised_saving_share"] == pytest.approx(0.2)
    [reason] = [r for r in report.reasons if r.startswith("saving")]
    assert "20% of the expected $10.00/h" in reason and "concern" in reason


def test_a_saving_as_expected_is_reported_plainly() -> None:
    report = run(SAME, expected_saving_usd_per_hour=2.0, realised_cost_usd_per_hour=(8.0, 10.0))
    [reason] = [r for r in report.reasons if r.startswith("saving")]
    assert "concern" not in reason
    assert report.figures["expected_saving_usd_per_hour"] == 2.0


def test_the_report_is_json_ready_without_nan() -> None:
    report = run(events(BASELINE, healthy_scores()), samples(healthy_slo_rows()), thresholds=BOUNDS)
    data = report.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["verdict"] == "wait"
    assert all(np.isfinite(v) for v in data["figures"].values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric": "bleu"}, "metric"),
        ({"max_quality_drop": 0.0}, "max_quality_drop"),
        ({"alpha": 0.7}, "alpha"),
        ({"min_quality_samples": 1}, "min_quality_samples"),
        ({"ttft_p95_s": -1.0}, "ttft_p95_s"),
    ],
)
def test_bad_thresholds_are_refused_naming_the_field(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        CanaryThresholds(**kwargs)


def test_bad_inputs_are_refused_naming_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="both"):
        analyse_canary(quality=SAME, samples=pd.DataFrame(), canary_config="x",
                       baseline_config="x", canary_instances=[], baseline_instances=[],
                       thresholds=CanaryThresholds())  # fmt: skip
    with pytest.raises(ValueError, match="srv-0"):
        analyse_canary(quality=SAME, samples=pd.DataFrame(), canary_config=CANARY,
                       baseline_config=BASELINE, canary_instances=["srv-0"],
                       baseline_instances=B_INST, thresholds=CanaryThresholds())  # fmt: skip
    with pytest.raises(ValueError, match="quality: missing column"):
        run(SAME.drop(columns=["f1"]))
    with pytest.raises(ValueError, match="samples: missing column"):
        run(SAME, samples(healthy_slo_rows()).drop(columns=["value"]), thresholds=BOUNDS)
    with pytest.raises(ValueError, match="realised_cost_usd_per_hour"):
        run(SAME, realised_cost_usd_per_hour=(math.nan, 1.0))


# --- the decision rule on sandbox events, fixed seeds ------------------------------------------

SEEDS = range(300)


def test_the_bench_builds_exactly_the_asked_drop() -> None:
    w = wrong_answer_score("f1")
    base = 1 - canary_error(0.0) * (1 - w)
    assert 1 - canary_error(0.2) * (1 - w) == pytest.approx(0.8 * base)
    frame = step_events(0.2, 0)
    counts = frame.groupby("config_id")["item_id"].agg(["size", "nunique"])
    assert counts.loc["canary-cfg"].tolist() == [200, 200]  # 4 runs x 50 probes, once each
    assert set(frame[frame.config_id == "canary-cfg"].item_id) == set(
        frame[frame.config_id == "baseline-cfg"].item_id
    )


@pytest.fixture(scope="module")
def healthy_reports():
    return [analyse(step_events(0.0, seed)) for seed in SEEDS]


@pytest.fixture(scope="module")
def drop20_reports():
    return [analyse(step_events(0.2, seed)) for seed in SEEDS]


def test_healthy_canaries_are_rolled_back_at_most_2_percent_of_the_time(healthy_reports) -> None:
    failed = sum(r.verdict == "fail" for r in healthy_reports) / len(healthy_reports)
    passed = sum(r.verdict == "pass" for r in healthy_reports) / len(healthy_reports)
    print(f"\nhealthy: false rollbacks {failed:.1%}, passed {passed:.1%} over {len(SEEDS)} seeds")
    assert failed <= 0.02
    assert passed >= 0.85  # and the step's probes are enough to say so, mostly


def test_a_20_percent_drop_is_rolled_back_at_the_first_step_99_percent_of_the_time(
    drop20_reports,
) -> None:
    failed = [r for r in drop20_reports if r.verdict == "fail"]
    rate = len(failed) / len(drop20_reports)
    print(f"\n20% drop: caught {rate:.1%} over {len(SEEDS)} seeds")
    assert rate >= 0.99
    assert all(r.reasons[0].startswith("quality: fail") for r in failed)
    assert not any(r.verdict == "pass" and "concern" not in r.reasons[0] for r in drop20_reports)
