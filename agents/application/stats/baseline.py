"""Baselines per deployment and configuration, and the quality margin left above the floor.

A baseline is what a configuration's answers score *now*, with an interval that says
how well the events pin that down. Items, not events, are counted (``samples``: a
golden-set item asked 24 times a day is one item), so the interval's width reflects the
number of distinct questions.

The quality margin turns a baseline and the tenant's ``Policy.max_quality_drop`` into
one figure the agent can compare with a proposal's expected quality cost (e.g. a
quantization's): how much further the configuration can fall, on the pessimistic view,
before it sits below the floor the tenant accepts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd

from agents.application.stats.intervals import mean_interval, wilson_interval
from agents.application.stats.samples import METRICS, Metric, check_metric, item_scores

KEYS = ["tenant", "deployment", "config_id"]

#: Columns of :func:`baselines`, in order: per metric ``<metric>_n`` (scored items),
#: ``_nan`` (events without that score), ``_mean``, ``_low``, ``_high`` (the interval).
BASELINE_COLUMNS = [
    *KEYS,
    "events",
    "items",
    *[f"{metric}_{part}" for metric in METRICS for part in ("n", "nan", "mean", "low", "high")],
]

MarginStatus = Literal["ok", "thin", "breached", "unknown"]


def _metric_row(group: pd.DataFrame, metric: Metric, confidence: float) -> list[float]:
    scores = item_scores(group, metric, name=f"{metric} events")
    if scores.n == 0:
        return [0, scores.n_nan, math.nan, math.nan, math.nan]
    mean = float(np.mean(scores.values))
    if metric == "exact_match":
        # Wilson on per-item means: exact for one ask per item; with repeats the sum of
        # per-item fractions stands in for the success count (their variance is at
        # most the Bernoulli one, so the interval errs wide).
        low, high = wilson_interval(float(scores.values.sum()), scores.n, confidence)
    else:
        low, high = mean_interval(scores.values, confidence)
    return [scores.n, scores.n_nan, mean, low, high]


def baselines(events: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """One row per (tenant, deployment, config_id) of quality events: n, means, intervals.

    ``events`` has the columns of ``QualityEvent.COLUMNS`` (``tenant`` and ``config_id``
    default to "default" and "" when absent). Exact match gets a Wilson score interval;
    F1 and the judge score a Student-t interval on per-item means (analytic, so the same
    data always give the same bound; see ``intervals``). A metric with no scored item
    has n 0 and NaN figures — never 0, which would read as "all answers wrong".
    """
    if "deployment" not in events.columns:
        raise ValueError("baselines: the events frame has no 'deployment' column")
    if events.empty:
        return pd.DataFrame(columns=BASELINE_COLUMNS)
    frame = events.copy()
    frame["tenant"] = frame.get("tenant", "default")
    frame["config_id"] = frame.get("config_id", "")
    frame["config_id"] = frame["config_id"].fillna("")
    for metric in METRICS:
        if metric not in frame.columns:
            frame[metric] = np.nan
    rows = []
    for (tenant, deployment, config_id), group in frame.groupby(KEYS, sort=True, dropna=False):
        ids = group["item_id"].fillna("").astype(str) if "item_id" in group else None
        items = len(group) if ids is None else ids[ids != ""].nunique() + int((ids == "").sum())
        row: list[object] = [tenant, deployment, config_id, len(group), items]
        for metric in METRICS:
            row.extend(_metric_row(group, metric, confidence))
        rows.append(row)
    return pd.DataFrame(rows, columns=BASELINE_COLUMNS)


@dataclass(frozen=True)
class QualityMargin:
    """How far a configuration's pessimistic quality sits above the tenant's floor.

    ``floor = (1 − max_quality_drop) × reference_mean``, where the reference is the best
    mean among the deployment's configurations with at least ``min_items`` scored items
    (the baseline itself when it is the only one). ``margin = baseline_low − floor``
    (metric units); ``relative_margin = margin / reference_mean`` — the further relative
    drop, in the same units as ``max_quality_drop``, that the configuration can take
    before its lower confidence bound crosses the floor. ``status``: ``breached``
    (margin < 0), ``thin`` (relative_margin < ``thin_below``), ``ok``, or ``unknown``
    (too few items for a trustworthy bound).
    """

    tenant: str
    deployment: str
    config_id: str
    metric: Metric
    status: MarginStatus
    reason: str
    n_items: int
    baseline_mean: float
    baseline_low: float
    reference_config_id: str
    reference_mean: float
    max_quality_drop: float
    floor: float
    margin: float
    relative_margin: float
    thin_below: float


def quality_margin(
    baselines_frame: pd.DataFrame,
    deployment: str,
    config_id: str = "",
    *,
    tenant: str = "default",
    metric: Metric = "f1",
    max_quality_drop: float = 0.10,
    min_items: int = 30,
    thin_below: float | None = None,
) -> QualityMargin:
    """The margin of one configuration (a row of :func:`baselines`); see :class:`QualityMargin`.

    ``thin_below`` defaults to half of ``max_quality_drop``: less than half the
    tenant's allowance left, on the pessimistic view, is too little to spend on a
    change whose quality cost is itself only estimated. ``min_items`` (30) keeps a
    lucky configuration with a handful of probes from becoming the reference.
    """
    check_metric(metric)
    if not 0.0 <= max_quality_drop <= 1.0:
        raise ValueError(f"max_quality_drop: {max_quality_drop!r} must lie in [0, 1]")
    thin = max_quality_drop / 2.0 if thin_below is None else thin_below
    same = baselines_frame[
        (baselines_frame["tenant"] == tenant) & (baselines_frame["deployment"] == deployment)
    ]
    own = same[same["config_id"] == config_id]
    if own.empty:
        known = ", ".join(repr(c) for c in same["config_id"]) or "none"
        raise ValueError(
            f"quality_margin: no baseline for tenant {tenant!r}, deployment {deployment!r},"
            f" config_id {config_id!r} (configurations known: {known})"
        )
    row = own.iloc[0]
    n = int(row[f"{metric}_n"])
    mean, low = float(row[f"{metric}_mean"]), float(row[f"{metric}_low"])
    eligible = same[same[f"{metric}_n"] >= min_items]
    if n < min_items or not math.isfinite(low):
        reference_id, reference = config_id, mean
    else:
        best = eligible.loc[eligible[f"{metric}_mean"].idxmax()]
        reference_id, reference = str(best["config_id"]), float(best[f"{metric}_mean"])
    floor = (1.0 - max_quality_drop) * reference
    margin = low - floor
    relative = margin / reference if reference > 0 else math.nan
    status: MarginStatus
    if n < min_items or not math.isfinite(relative):
        status = "unknown"
        reason = f"{n} scored items for {metric}; at least {min_items} are needed for a margin"
    elif margin < 0:
        status = "breached"
        reason = (
            f"lower bound {low:.3f} is below the floor {floor:.3f}"
            f" ({1 - max_quality_drop:.0%} of {reference_id or 'the baseline'}'s {reference:.3f})"
        )
    else:
        status = "thin" if relative < thin else "ok"
        reason = (
            f"lower bound {low:.3f} is {relative:.1%} of the reference above the floor"
            f" {floor:.3f} ({'under' if status == 'thin' else 'at least'} {thin:.1%})"
        )
    return QualityMargin(
        tenant=tenant,
        deployment=deployment,
        config_id=config_id,
        metric=metric,
        status=status,
        reason=reason,
        n_items=n,
        baseline_mean=mean,
        baseline_low=low,
        reference_config_id=reference_id,
        reference_mean=reference,
        max_quality_drop=max_quality_drop,
        floor=floor,
        margin=margin,
        relative_margin=relative,
        thin_below=thin,
    )


def quality_margins(
    baselines_frame: pd.DataFrame,
    *,
    metric: Metric = "f1",
    max_quality_drop: float = 0.10,
    min_items: int = 30,
    thin_below: float | None = None,
) -> pd.DataFrame:
    """:func:`quality_margin` for every row of :func:`baselines`, as a frame."""
    margins = [
        asdict(
            quality_margin(
                baselines_frame,
                str(row.deployment),
                str(row.config_id),
                tenant=str(row.tenant),
                metric=metric,
                max_quality_drop=max_quality_drop,
                min_items=min_items,
                thin_below=thin_below,
            )
        )
        for row in baselines_frame.itertuples(index=False)
    ]
    columns = list(QualityMargin.__dataclass_fields__)
    return pd.DataFrame(margins, columns=columns)
