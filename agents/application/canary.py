"""Canary analysis: is a rollout step's canary fit to go on, to be rolled back, or unknown yet?

At each rollout step (10 → 50 → 100 %) the rollout flow bakes the change, then asks this
module to compare the canary (the changed configuration, on ``canary_instances``) with
the baseline (the stable one) on three things:

- **answer quality** — the golden-set probes the quality provider sent both variants,
  compared by :func:`~agents.application.stats.detect_regression` (one-sided at
  ``alpha``, paired on ``item_id`` when both variants answered the same items):

  ======  =====================================================================
  fail    the drop of mean ``metric`` is significant **and** the observed relative
          drop is at least ``max_quality_drop``
  pass    no significant drop and a drop of ``max_quality_drop`` would have been
          detected with :data:`POWER`; or significantly better; or a significant
          drop whose upper bound (one-sided, 1 − alpha) is below the allowance
  wait    fewer than ``min_quality_samples`` scored items on a side; too few
          items to detect a ``max_quality_drop`` drop; or a significant drop
          below the allowance whose upper bound is not
  ======  =====================================================================

  Why both conditions for ``fail``: significance alone rolls back ``alpha`` (5 %) of
  healthy canaries, and any real drop however far within the tenant's allowance; the
  point estimate alone rolls back noise. Together, at the probe counts of one step (200
  per variant), they roll back 0.2 % of healthy canaries and ≥ 99 % of drops of twice the
  allowance (``benchmarks/canary_bench.py``, docs/canary.md).
- **SLOs** — p95 TTFT, p95 inter-token latency, error rate, each only when its bound is
  set. ``fail`` when the canary breaks a bound and the baseline does not explain it (the
  baseline breaks it too and the canary is at most :data:`SLO_TOLERANCE` worse: load,
  not the change). ``wait`` when the canary has no data for a checked SLO.
- **the saving** — reported; a realised saving far below the expected one
  (under :data:`MIN_SAVING_SHARE` of it) is a concern reason, never a ``fail``.

The verdict is ``fail`` if any check fails, else ``wait`` if any waits, else ``pass``.

Example::

    report = analyse_canary(quality=events, samples=samples, canary_config="c1",
                            baseline_config="b0", canary_instances=["s-3"],
                            baseline_instances=["s-0", "s-1", "s-2"],
                            thresholds=CanaryThresholds(ttft_p95_s=0.5))
    if report.verdict == "fail":
        ...  # roll back; report.reasons say why, report.figures hold the numbers
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from agents.application.stats import RegressionResult, detect_regression, required_samples
from agents.application.stats.samples import check_metric

Verdict = Literal["pass", "fail", "wait"]

#: Power the quality check asks for before it may say ``pass``: a drop of
#: ``max_quality_drop`` must be detectable with this power (one-sided, at ``alpha``).
#: Then the relative standard error is at most max_quality_drop / (z₁₋α + z_power)
#: (= /2.49 at alpha 0.05), so a drop of twice the allowance is also *failed* (its point
#: estimate lands above the allowance) with probability ≥ Φ(2.49) ≈ 99.4 %.
POWER = 0.8
#: When canary and baseline both break an SLO, the canary fails only if it is this much
#: (relative) worse than the baseline; within it, the breach is the fleet's, not the change's.
SLO_TOLERANCE = 0.10
#: A realised saving below this share of the expected one is reported as a concern.
MIN_SAVING_SHARE = 0.5
#: The latency quantile an SLO bound applies to (label ``quantile`` of the samples).
SLO_QUANTILE = 0.95

_QUALITY_COLUMNS = ("config_id", "item_id")
_SAMPLE_COLUMNS = ("instance", "metric", "value")


@dataclass(frozen=True)
class CanaryThresholds:
    """What a canary must hold to. SLO bounds left at ``None`` are not checked."""

    max_quality_drop: float = 0.10  # relative drop of mean F1 (or exact match) that fails
    ttft_p95_s: float | None = None  # SLO bounds; None = not checked
    itl_p95_s: float | None = None
    max_error_rate: float | None = None
    alpha: float = 0.05  # test level
    min_quality_samples: int = 30  # per variant, below this: wait
    metric: str = "f1"

    def __post_init__(self) -> None:
        check_metric(self.metric)
        if not 0.0 < self.max_quality_drop <= 1.0:
            raise ValueError(
                f"CanaryThresholds.max_quality_drop: {self.max_quality_drop!r} must lie in "
                "(0, 1] (a relative drop)"
            )
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"CanaryThresholds.alpha: {self.alpha!r} must lie in (0, 0.5)")
        if self.min_quality_samples < 2:
            raise ValueError(
                f"CanaryThresholds.min_quality_samples: {self.min_quality_samples!r} must be "
                "at least 2"
            )
        for name in ("ttft_p95_s", "itl_p95_s", "max_error_rate"):
            bound = getattr(self, name)
            if bound is not None and not (math.isfinite(bound) and bound >= 0):
                raise ValueError(f"CanaryThresholds.{name}: {bound!r} must be a number >= 0")


@dataclass(frozen=True)
class CanaryReport:
    """The verdict of one canary check, why, and the numbers behind it.

    ``reasons`` has one line per check that ran (quality, each SLO, the saving), each
    naming its figure and bound, so a ``pass`` explains itself as well as a ``fail``.
    ``figures`` holds only measured, finite numbers: a missing key means "not measured".
    """

    verdict: Verdict
    reasons: list[str]
    figures: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (for the state store and the Prefect artifact)."""
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "figures": dict(self.figures),
        }


@dataclass
class _Check:
    """One check's outcome on the way to the report."""

    verdict: Verdict
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def put(self, name: str, value: float | int | None) -> None:
        if value is not None and math.isfinite(value):
            self.figures[name] = float(value)


def analyse_canary(
    *,
    quality: pd.DataFrame,
    samples: pd.DataFrame,
    canary_config: str,
    baseline_config: str,
    canary_instances: Sequence[str],
    baseline_instances: Sequence[str],
    thresholds: CanaryThresholds,
    expected_saving_usd_per_hour: float | None = None,
    realised_cost_usd_per_hour: tuple[float, float] | None = None,
) -> CanaryReport:
    """Compare canary and baseline on quality, SLOs and saving (see the module docstring).

    ``quality``: quality events (``QualityEvent.COLUMNS``); canary and baseline rows are
    those with ``config_id`` ``canary_config`` / ``baseline_config``. Golden-set probes
    are used when both variants have some (the same items asked of both); otherwise all
    events. Passing the baseline's events from before the rollout too makes its mean
    sharper (the test then compares per-item means, see docs/quality-statistics.md).
    ``samples``: canonical samples (``Sample.COLUMNS``) of the bake window; canary and
    baseline rows are those of ``canary_instances`` / ``baseline_instances``.
    ``realised_cost_usd_per_hour``: (canary, baseline) cost per hour *on the same scale*
    as ``expected_saving_usd_per_hour`` (e.g. each scaled to the whole deployment), so
    that baseline − canary is the realised saving.
    """
    if canary_config == baseline_config:
        raise ValueError(f"canary_config and baseline_config are both {canary_config!r}")
    both = set(map(str, canary_instances)) & set(map(str, baseline_instances))
    if both:
        raise ValueError(
            f"instances {', '.join(sorted(both))} are in both canary_instances and "
            "baseline_instances"
        )
    checks = [_quality_check(quality, canary_config, baseline_config, thresholds)]
    checks += _slo_checks(samples, canary_instances, baseline_instances, thresholds)
    checks.append(_saving_check(expected_saving_usd_per_hour, realised_cost_usd_per_hour))
    verdicts = {c.verdict for c in checks}
    verdict: Verdict = "fail" if "fail" in verdicts else "wait" if "wait" in verdicts else "pass"
    reasons = [r for c in checks for r in c.reasons]
    figures = {k: v for c in checks for k, v in c.figures.items()}
    return CanaryReport(verdict=verdict, reasons=reasons, figures=figures)


# --- quality -----------------------------------------------------------------------------


def _variant_events(quality: pd.DataFrame, config_id: str, metric: str) -> pd.DataFrame:
    rows = quality[quality["config_id"].astype(str) == config_id]
    return rows[np.isfinite(pd.to_numeric(rows[metric], errors="coerce").to_numpy(dtype=float))]


def _item_count(events: pd.DataFrame) -> int:
    """Scored items: distinct ids, each id-less row its own item (as the statistics count)."""
    ids = events["item_id"].fillna("").astype(str)
    return int(ids[ids != ""].nunique() + (ids == "").sum())


def _split_quality(
    quality: pd.DataFrame, canary: str, baseline: str, metric: str
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(canary rows, baseline rows, what was used): probes when both have some."""
    missing = [c for c in (*_QUALITY_COLUMNS, metric) if c not in quality.columns]
    if missing:
        raise ValueError(f"quality: missing column(s) {', '.join(missing)} (QualityEvent.COLUMNS)")
    c_rows = _variant_events(quality, canary, metric)
    b_rows = _variant_events(quality, baseline, metric)
    if "kind" in quality.columns:
        c_probes = c_rows[c_rows["kind"].astype(str) == "probe"]
        b_probes = b_rows[b_rows["kind"].astype(str) == "probe"]
        if len(c_probes) and len(b_probes):
            return c_probes, b_probes, "golden-set probes"
    return c_rows, b_rows, "quality events"


def _quality_check(
    quality: pd.DataFrame, canary: str, baseline: str, t: CanaryThresholds
) -> _Check:
    metric = check_metric(t.metric)
    c_rows, b_rows, used = _split_quality(quality, canary, baseline, metric)
    n_c, n_b = _item_count(c_rows), _item_count(b_rows)
    check = _Check("pass")
    check.put("quality_items_canary", n_c)
    check.put("quality_items_baseline", n_b)
    if min(n_c, n_b) < t.min_quality_samples:
        check.verdict = "wait"
        needed = _items_needed(b_rows, metric, t)
        check.put("quality_items_needed", needed)
        check.reasons.append(
            f"quality: wait — {n_c} scored {metric} items on canary {canary} and {n_b} on "
            f"baseline {baseline}; at least {max(needed, t.min_quality_samples)} per variant "
            f"are needed to judge a {t.max_quality_drop:.0%} drop"
        )
        return check
    r = detect_regression(
        c_rows, b_rows, metric, threshold=t.max_quality_drop, alpha=t.alpha, power=POWER,
        confidence=1.0 - 2.0 * t.alpha,
    )  # fmt: skip
    _quality_figures(check, r)
    summary = f"{metric} {r.mean_candidate:.3f} on canary vs {r.mean_baseline:.3f} on baseline"
    allowance = f"the {t.max_quality_drop:.0%} allowance"
    drop = -r.relative_diff
    evidence = f"{r.test}, p = {r.p_value:.2g} (alpha {t.alpha}), {used}"
    upper = -r.diff_low / r.mean_baseline if r.mean_baseline > 0 else math.nan
    if r.mean_baseline == 0:
        check.reasons.append(f"quality: pass — {summary}: the baseline scores 0, nothing to drop")
    elif r.verdict == "regression" and r.exceeds_threshold:
        check.verdict = "fail"
        check.reasons.append(
            f"quality: fail — {summary}: a significant drop of {drop:.1%}, at or above "
            f"{allowance} ({evidence})"
        )
    elif r.verdict == "improvement":
        check.reasons.append(f"quality: pass — {summary}: significantly better ({evidence})")
    elif r.verdict == "regression" and upper < t.max_quality_drop:
        check.reasons.append(
            f"quality: pass (concern) — {summary}: a significant drop of {drop:.1%}, within "
            f"{allowance} (its {1 - t.alpha:.0%} upper bound is {upper:.1%}; {evidence})"
        )
    elif r.verdict == "regression":
        check.verdict = "wait"
        check.reasons.append(
            f"quality: wait — {summary}: a significant drop of {drop:.1%}, below {allowance} "
            f"but its {1 - t.alpha:.0%} upper bound is {upper:.1%}: more probes will tell "
            f"whether it is within the allowance ({evidence})"
        )
    elif r.verdict == "unknown" or not r.min_detectable_drop <= t.max_quality_drop:
        check.verdict = "wait"
        needed = r.items_needed
        more = f"; about {needed} items per variant would do" if needed else ""
        check.reasons.append(
            f"quality: wait — {summary} ({r.relative_diff:+.1%}): these samples detect only a drop "
            f"of {r.min_detectable_drop:.1%} or more (power {POWER:.0%}), above {allowance}"
            f"{more} ({evidence})"
        )
    else:
        check.reasons.append(
            f"quality: pass — {summary} ({r.relative_diff:+.1%}): no significant drop, and a "
            f"drop of {allowance} would have been detected (detectable: "
            f"{r.min_detectable_drop:.1%}; {evidence})"
        )
    return check


def _quality_figures(check: _Check, r: RegressionResult) -> None:
    check.put("quality_baseline", r.mean_baseline)
    check.put("quality_canary", r.mean_candidate)
    check.put("quality_drop", -r.relative_diff)
    if r.mean_baseline > 0:
        # The interval is two-sided at 1 − 2·alpha: each end is a one-sided bound at alpha.
        check.put("quality_drop_low", -r.diff_high / r.mean_baseline)
        check.put("quality_drop_high", -r.diff_low / r.mean_baseline)
    check.put("quality_p_value", r.p_value)
    check.put("quality_pairs", r.n_pairs)
    check.put("quality_min_detectable_drop", r.min_detectable_drop)
    check.put("quality_items_needed", r.items_needed)
    check.put("quality_effect_size", r.effect_size)


def _items_needed(baseline: pd.DataFrame, metric: str, t: CanaryThresholds) -> int:
    """Items per variant a ``max_quality_drop`` check needs, planned from the baseline's
    mean (0.5, the worst case for a [0, 1] score, when it has none)."""
    scores = pd.to_numeric(baseline[metric], errors="coerce")
    mean = float(scores.mean()) if len(scores) else math.nan
    if not 0.0 < mean <= 1.0:
        mean = 0.5
    return required_samples(mean, t.max_quality_drop, alpha=t.alpha, power=POWER)


# --- SLOs --------------------------------------------------------------------------------


def _quantile(labels: Any) -> float:
    """The ``quantile`` label of one sample's labels (a dict or JSON text), NaN if none."""
    if isinstance(labels, str):
        try:
            labels = json.loads(labels) if labels else {}
        except json.JSONDecodeError:
            return math.nan
    if not isinstance(labels, dict) or "quantile" not in labels:
        return math.nan
    try:
        return float(labels["quantile"])
    except (TypeError, ValueError):
        return math.nan


def _clean_samples(samples: pd.DataFrame) -> pd.DataFrame:
    if samples.empty:
        return pd.DataFrame(columns=[*_SAMPLE_COLUMNS, "quantile"])
    missing = [c for c in _SAMPLE_COLUMNS if c not in samples.columns]
    if missing:
        raise ValueError(f"samples: missing column(s) {', '.join(missing)} (Sample.COLUMNS)")
    frame = samples.loc[:, list(_SAMPLE_COLUMNS)].copy()
    frame["instance"] = frame["instance"].astype(str)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    labels = (
        samples["labels"] if "labels" in samples.columns else pd.Series(None, index=frame.index)
    )
    frame["quantile"] = [_quantile(v) for v in labels]
    return frame[np.isfinite(frame["value"].to_numpy(dtype=float))]


def _latency_p95(frame: pd.DataFrame, metric: str, instances: set[str]) -> float:
    """The worst instance's p95 (its exporter's p95 averaged over the window), as
    agents/context/stats.py reads it: an SLO is broken if any replica breaks it."""
    rows = frame[
        (frame["metric"] == metric)
        & frame["instance"].isin(instances)
        & np.isclose(frame["quantile"].to_numpy(dtype=float), SLO_QUANTILE)
    ]
    if rows.empty:
        return math.nan
    return float(rows.groupby("instance")["value"].mean().max())


def _error_rate(frame: pd.DataFrame, instances: set[str]) -> float:
    """Failed / all requests: per-instance mean rates, added over instances (a rate
    adds up over replicas); NaN when nothing was served or nothing was measured."""
    rows = frame[frame["instance"].isin(instances)]
    totals = {}
    for metric in ("request_success_per_second", "request_failure_per_second"):
        per_instance = rows[rows["metric"] == metric].groupby("instance")["value"].mean()
        totals[metric] = float(per_instance.clip(lower=0).sum()) if len(per_instance) else math.nan
    ok, failed = totals["request_success_per_second"], totals["request_failure_per_second"]
    if math.isnan(ok) and math.isnan(failed):
        return math.nan
    served = (0.0 if math.isnan(ok) else ok) + (0.0 if math.isnan(failed) else failed)
    return (0.0 if math.isnan(failed) else failed) / served if served > 0 else math.nan


def _slo_checks(
    samples: pd.DataFrame,
    canary_instances: Sequence[str],
    baseline_instances: Sequence[str],
    t: CanaryThresholds,
) -> list[_Check]:
    bounds = [
        ("ttft_p95", "p95 TTFT", "s", t.ttft_p95_s),
        ("itl_p95", "p95 inter-token latency", "s", t.itl_p95_s),
        ("error_rate", "error rate", "", t.max_error_rate),
    ]
    if all(bound is None for *_, bound in bounds):
        return []
    frame = _clean_samples(samples)
    canary, baseline = set(map(str, canary_instances)), set(map(str, baseline_instances))
    checks = []
    for key, name, unit, bound in bounds:
        if bound is None:
            continue
        if key == "error_rate":
            c_value, b_value = _error_rate(frame, canary), _error_rate(frame, baseline)
        else:
            metric = "ttft_seconds" if key == "ttft_p95" else "itl_seconds"
            c_value = _latency_p95(frame, metric, canary)
            b_value = _latency_p95(frame, metric, baseline)
        checks.append(_slo_check(key, name, unit, bound, c_value, b_value))
    return checks


def _fmt(value: float, unit: str) -> str:
    return f"{value:.3g} s" if unit == "s" else f"{value:.2%}"


def _slo_check(key: str, name: str, unit: str, bound: float, canary: float, base: float) -> _Check:
    suffix = "_s" if unit else ""
    check = _Check("pass")
    check.put(f"{key}_canary{suffix}", canary)
    check.put(f"{key}_baseline{suffix}", base)
    limit = _fmt(bound, unit)
    if math.isnan(canary):
        check.verdict = "wait"
        check.reasons.append(f"{name}: wait — no {name} measured on the canary yet (bound {limit})")
        return check
    said = f"{name} {_fmt(canary, unit)} on canary"
    if canary <= bound:
        check.reasons.append(f"{name}: pass — {said}, within the bound {limit}")
        return check
    if math.isnan(base):
        check.verdict = "fail"
        check.reasons.append(
            f"{name}: fail — {said} breaks the bound {limit}; the baseline has no {name} "
            "measured to explain it"
        )
    elif base <= bound:
        check.verdict = "fail"
        check.reasons.append(
            f"{name}: fail — {said} breaks the bound {limit}; the baseline's "
            f"{_fmt(base, unit)} does not"
        )
    elif canary > base * (1.0 + SLO_TOLERANCE):
        check.verdict = "fail"
        check.reasons.append(
            f"{name}: fail — {said} breaks the bound {limit} and is more than "
            f"{SLO_TOLERANCE:.0%} worse than the baseline's {_fmt(base, unit)}, which breaks "
            "it too"
        )
    else:
        check.reasons.append(
            f"{name}: pass (concern) — {said} breaks the bound {limit}, but so does the "
            f"baseline ({_fmt(base, unit)}): the fleet's breach, not the change's"
        )
    return check


# --- saving ------------------------------------------------------------------------------


def _saving_check(expected: float | None, realised: tuple[float, float] | None) -> _Check:
    check = _Check("pass")
    if expected is None and realised is None:
        return check
    check.put("expected_saving_usd_per_hour", expected)
    if expected is not None and not math.isfinite(expected):
        raise ValueError(f"expected_saving_usd_per_hour: {expected!r} must be a finite number")
    if realised is None:
        check.reasons.append(f"saving: expected ${expected:,.2f}/h (no realised cost given)")
        return check
    cost_canary, cost_baseline = realised
    for name, cost in (("canary", cost_canary), ("baseline", cost_baseline)):
        if not (math.isfinite(cost) and cost >= 0):
            raise ValueError(f"realised_cost_usd_per_hour ({name}): {cost!r} must be a number >= 0")
    saving = cost_baseline - cost_canary
    check.put("cost_canary_usd_per_hour", cost_canary)
    check.put("cost_baseline_usd_per_hour", cost_baseline)
    check.put("realised_saving_usd_per_hour", saving)
    said = (
        f"saving: realised ${saving:,.2f}/h (baseline ${cost_baseline:,.2f}/h − canary "
        f"${cost_canary:,.2f}/h)"
    )
    if expected is None:
        check.reasons.append(said)
        return check
    if expected > 0:
        share = saving / expected
        check.put("realised_saving_share", share)
        if share < MIN_SAVING_SHARE:
            check.reasons.append(
                f"{said} is {share:.0%} of the expected ${expected:,.2f}/h, under "
                f"{MIN_SAVING_SHARE:.0%} of it (a concern, not a failure)"
            )
            return check
    check.reasons.append(f"{said} against ${expected:,.2f}/h expected")
    return check
