"""Per-deployment serving statistics from per-series window statistics.

Input (``recent``): one row per (tenant, provider, deployment, instance, metric,
quantile) with ``n, mean, p95, max, last, first_ts, last_ts`` over the analysis window.
Output: one row per (tenant, provider, deployment) with the figures the detectors use.

How replicas combine: rates (requests/s, tokens/s, preemptions/s) add up over a
deployment's instances; per-replica gauges (running, waiting, KV use, GPU use) are
averaged over instances and their p95/max taken as the worst instance's; latency
quantiles take the worst replica (an SLO is broken if any replica breaks it).

Robustness: non-finite values are dropped, negative rates (a counter reset that got
through) are treated as missing, and a figure with no data is NaN — never 0, so "no
traffic measured" and "traffic measured as zero" stay different.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KEYS = ["tenant", "provider", "deployment"]

#: Columns of :func:`deployment_stats`, in order.
DEPLOYMENT_STATS_COLUMNS = [
    *KEYS,
    "instances_seen",
    "samples",
    "span_seconds",
    "engine_samples",
    "engine_span_seconds",
    "request_rate",
    "failure_rate",
    "prompt_tokens_per_s",
    "generation_tokens_per_s",
    "mean_prompt_tokens",
    "mean_output_tokens",
    "running_mean",
    "running_p95",
    "running_max",
    "waiting_mean",
    "waiting_p95",
    "kv_usage_mean",
    "kv_usage_p95",
    "kv_usage_max",
    "preemptions_per_s",
    "prefix_hit_ratio",
    "ttft_p95_s",
    "itl_p95_s",
    "e2e_p95_s",
    "queue_p95_s",
    "gpu_util_mean",
    "gpu_util_p95",
]

_RATES = {
    "request_success_per_second": "request_rate",
    "request_failure_per_second": "failure_rate",
    "prompt_tokens_per_second": "prompt_tokens_per_s",
    "generation_tokens_per_second": "generation_tokens_per_s",
    "preemptions_per_second": "preemptions_per_s",
}
_GAUGES = {  # metric -> (mean column, p95 column, max column)
    "requests_running": ("running_mean", "running_p95", "running_max"),
    "requests_waiting": ("waiting_mean", "waiting_p95", None),
    "kv_cache_usage_ratio": ("kv_usage_mean", "kv_usage_p95", "kv_usage_max"),
    "gpu_utilization_ratio": ("gpu_util_mean", "gpu_util_p95", None),
    "prefix_cache_hit_ratio": ("prefix_hit_ratio", None, None),
}
_LATENCIES = {  # metric (quantile label 0.95) -> column
    "ttft_seconds": "ttft_p95_s",
    "itl_seconds": "itl_p95_s",
    "e2e_latency_seconds": "e2e_p95_s",
    "queue_time_seconds": "queue_p95_s",
}


def _clean(recent: pd.DataFrame) -> pd.DataFrame:
    frame = recent.copy()
    for column in ("mean", "p95", "max", "last"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
        frame.loc[~np.isfinite(frame[column]), column] = np.nan
    is_rate = frame["metric"].isin(list(_RATES))
    for column in ("mean", "p95", "max", "last"):
        frame.loc[is_rate & (frame[column] < 0), column] = np.nan
    return frame


def deployment_stats(recent: pd.DataFrame) -> pd.DataFrame:
    """One row per deployment (see :data:`DEPLOYMENT_STATS_COLUMNS`)."""
    if recent.empty:
        return pd.DataFrame(columns=DEPLOYMENT_STATS_COLUMNS)
    frame = _clean(recent[recent["deployment"].astype(str) != ""])
    if frame.empty:
        return pd.DataFrame(columns=DEPLOYMENT_STATS_COLUMNS)
    groups = frame.groupby(KEYS, observed=True, sort=True)
    out = pd.DataFrame(
        {
            "instances_seen": groups["instance"].nunique(),
            "samples": groups["n"].sum(),
            "span_seconds": (groups["last_ts"].max() - groups["first_ts"].min()).dt.total_seconds(),
        }
    )
    # How much *engine* evidence there is: the request-rate series alone (GPU exporters
    # may have been scraped for longer than the engine answered). The fewest samples
    # and shortest span over the deployment's instances: every replica must be seen.
    served = frame[frame["metric"] == "request_success_per_second"]
    by_instance = served.groupby([*KEYS, "instance"], observed=True)
    out["engine_samples"] = by_instance["n"].sum().groupby(level=KEYS).min()
    spans = (by_instance["last_ts"].max() - by_instance["first_ts"].min()).dt.total_seconds()
    out["engine_span_seconds"] = spans.groupby(level=KEYS).min()
    for metric, column in _RATES.items():
        rows = frame[frame["metric"] == metric]
        # min_count=1: a deployment without this metric gets NaN, not 0.
        out[column] = rows.groupby(KEYS, observed=True)["mean"].sum(min_count=1)
    for metric, (mean_col, p95_col, max_col) in _GAUGES.items():
        rows = frame[frame["metric"] == metric].groupby(KEYS, observed=True)
        out[mean_col] = rows["mean"].mean()
        if p95_col:
            out[p95_col] = rows["p95"].max()
        if max_col:
            out[max_col] = rows["max"].max()
    quantile = frame.get("quantile", pd.Series("", index=frame.index)).astype(str)
    for metric, column in _LATENCIES.items():
        rows = frame[(frame["metric"] == metric) & (quantile == "0.95")]
        # The exporters' own p95 over their window, averaged over ours, worst replica.
        per_instance = rows.groupby([*KEYS, "instance"], observed=True)["mean"].mean()
        out[column] = per_instance.groupby(level=KEYS).max()
    success = out["request_rate"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["mean_prompt_tokens"] = np.where(
            success > 0, out["prompt_tokens_per_s"] / success, np.nan
        )
        out["mean_output_tokens"] = np.where(
            success > 0, out["generation_tokens_per_s"] / success, np.nan
        )
    return out.reset_index().reindex(columns=DEPLOYMENT_STATS_COLUMNS)
