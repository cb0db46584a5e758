"""Per-deployment statistics from per-series window statistics, on hand-built frames.

Each frame row is one (deployment, instance, metric, quantile) series as the recent-window
query returns it; the expected figures are worked out by hand in each test.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from agents.context import DEPLOYMENT_STATS_COLUMNS, deployment_stats

END = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def series(
    metric: str,
    mean: float,
    *,
    deployment: str = "chat",
    instance: str = "chat-0",
    p95: float | None = None,
    peak: float | None = None,
    n: int = 12,
    quantile: str = "",
    span: timedelta = timedelta(hours=1),
    end: datetime = END,
    tenant: str = "default",
    provider: str = "prom",
) -> dict[str, Any]:
    """One per-series row of the recent-window query."""
    return {
        "tenant": tenant,
        "provider": provider,
        "deployment": deployment,
        "instance": instance,
        "metric": metric,
        "quantile": quantile,
        "n": n,
        "mean": mean,
        "p95": mean if p95 is None else p95,
        "max": (mean if p95 is None else p95) if peak is None else peak,
        "last": mean,
        "first_ts": pd.Timestamp(end - span),
        "last_ts": pd.Timestamp(end),
    }


def stats_of(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return deployment_stats(pd.DataFrame(rows))


def one(rows: list[dict[str, Any]], deployment: str = "chat") -> dict[str, Any]:
    frame = stats_of(rows)
    match = frame[frame["deployment"] == deployment]
    assert len(match) == 1, frame
    return match.iloc[0].to_dict()


# -- how replicas combine ------------------------------------------------------------------


def test_rates_add_up_over_replicas() -> None:
    rows = [
        series("request_success_per_second", 0.3, instance="chat-0"),
        series("request_success_per_second", 0.5, instance="chat-1"),
        series("prompt_tokens_per_second", 300.0, instance="chat-0"),
        series("prompt_tokens_per_second", 500.0, instance="chat-1"),
        series("generation_tokens_per_second", 60.0, instance="chat-0"),
        series("generation_tokens_per_second", 100.0, instance="chat-1"),
        series("preemptions_per_second", 0.01, instance="chat-0"),
        series("preemptions_per_second", 0.03, instance="chat-1"),
        series("request_failure_per_second", 0.02, instance="chat-1"),
    ]
    got = one(rows)
    assert got["request_rate"] == pytest.approx(0.8)
    assert got["prompt_tokens_per_s"] == pytest.approx(800.0)
    assert got["generation_tokens_per_s"] == pytest.approx(160.0)
    assert got["preemptions_per_s"] == pytest.approx(0.04)
    assert got["failure_rate"] == pytest.approx(0.02)
    # Per-request means from the summed rates: 800 / 0.8 and 160 / 0.8.
    assert got["mean_prompt_tokens"] == pytest.approx(1000.0)
    assert got["mean_output_tokens"] == pytest.approx(200.0)
    assert got["instances_seen"] == 2


def test_gauges_average_over_replicas_and_take_the_worst_p95_and_max() -> None:
    rows = [
        series("requests_running", 2.0, p95=3.0, peak=4.0, instance="chat-0"),
        series("requests_running", 6.0, p95=9.0, peak=10.0, instance="chat-1"),
        series("requests_waiting", 0.0, p95=0.0, instance="chat-0"),
        series("requests_waiting", 2.0, p95=5.0, instance="chat-1"),
        series("kv_cache_usage_ratio", 0.2, p95=0.3, peak=0.35, instance="chat-0"),
        series("kv_cache_usage_ratio", 0.6, p95=0.9, peak=0.97, instance="chat-1"),
        series("gpu_utilization_ratio", 0.4, p95=0.5, instance="chat-0"),
        series("gpu_utilization_ratio", 0.8, p95=0.95, instance="chat-1"),
        series("prefix_cache_hit_ratio", 0.1, instance="chat-0"),
        series("prefix_cache_hit_ratio", 0.3, instance="chat-1"),
    ]
    got = one(rows)
    assert got["running_mean"] == pytest.approx(4.0)
    assert got["running_p95"] == pytest.approx(9.0)
    assert got["running_max"] == pytest.approx(10.0)
    assert got["waiting_mean"] == pytest.approx(1.0)
    assert got["waiting_p95"] == pytest.approx(5.0)
    assert got["kv_usage_mean"] == pytest.approx(0.4)
    assert got["kv_usage_p95"] == pytest.approx(0.9)
    assert got["kv_usage_max"] == pytest.approx(0.97)
    assert got["gpu_util_mean"] == pytest.approx(0.6)
    assert got["gpu_util_p95"] == pytest.approx(0.95)
    assert got["prefix_hit_ratio"] == pytest.approx(0.2)


def test_latency_takes_the_worst_replicas_p95_and_ignores_other_quantiles() -> None:
    rows = [
        series("ttft_seconds", 0.2, quantile="0.95", instance="chat-0"),
        series("ttft_seconds", 0.5, quantile="0.95", instance="chat-1"),
        series("ttft_seconds", 9.0, quantile="0.99", instance="chat-0"),
        series("ttft_seconds", 0.1, quantile="0.5", instance="chat-1"),
        series("itl_seconds", 0.05, quantile="0.95", instance="chat-0"),
        series("itl_seconds", 0.03, quantile="0.95", instance="chat-1"),
        series("e2e_latency_seconds", 4.0, quantile="0.95", instance="chat-1"),
        series("queue_time_seconds", 0.7, quantile="0.95", instance="chat-0"),
    ]
    got = one(rows)
    assert got["ttft_p95_s"] == pytest.approx(0.5)
    assert got["itl_p95_s"] == pytest.approx(0.05)
    assert got["e2e_p95_s"] == pytest.approx(4.0)
    assert got["queue_p95_s"] == pytest.approx(0.7)


def test_span_and_samples_cover_every_series_of_the_deployment() -> None:
    rows = [
        series("request_success_per_second", 1.0, n=10, span=timedelta(minutes=30)),
        series(
            "requests_running",
            1.0,
            n=5,
            span=timedelta(minutes=20),
            end=END - timedelta(minutes=20),
            instance="chat-1",
        ),
    ]
    got = one(rows)
    # From END - 40 min (the second series' start) to END (the first series' end).
    assert got["span_seconds"] == pytest.approx(40 * 60)
    assert got["samples"] == 15
    assert got["instances_seen"] == 2


# -- robustness ----------------------------------------------------------------------------


def test_non_finite_values_are_dropped_not_averaged_or_summed() -> None:
    rows = [
        series("request_success_per_second", 0.4, instance="chat-0"),
        series("request_success_per_second", math.inf, instance="chat-1"),
        series("request_success_per_second", math.nan, instance="chat-2"),
        series("requests_running", 3.0, instance="chat-0"),
        series("requests_running", -math.inf, instance="chat-1"),
        series("ttft_seconds", 0.3, quantile="0.95", instance="chat-0"),
        series("ttft_seconds", math.inf, quantile="0.95", instance="chat-1"),
    ]
    got = one(rows)
    assert got["request_rate"] == pytest.approx(0.4)
    assert got["running_mean"] == pytest.approx(3.0)
    assert got["ttft_p95_s"] == pytest.approx(0.3)


def test_a_negative_rate_is_missing_not_negative_traffic() -> None:
    only_negative = one([series("request_success_per_second", -5.0)])
    assert math.isnan(only_negative["request_rate"])

    mixed = one(
        [
            series("request_success_per_second", 0.5, instance="chat-0"),
            series("request_success_per_second", -3.0, instance="chat-1"),
            series("generation_tokens_per_second", -100.0, instance="chat-1"),
            series("generation_tokens_per_second", 50.0, instance="chat-0"),
        ]
    )
    assert mixed["request_rate"] == pytest.approx(0.5)
    assert mixed["generation_tokens_per_s"] == pytest.approx(50.0)


def test_a_negative_rate_does_not_cancel_another_replicas_traffic() -> None:
    got = one(
        [
            series("preemptions_per_second", 0.2, instance="chat-0"),
            series("preemptions_per_second", -0.2, instance="chat-1"),
        ]
    )
    assert got["preemptions_per_s"] == pytest.approx(0.2)


def test_no_request_metric_gives_nan_request_rate_not_zero() -> None:
    got = one([series("requests_running", 2.0), series("kv_cache_usage_ratio", 0.5)])
    assert math.isnan(got["request_rate"])
    assert math.isnan(got["failure_rate"])
    assert math.isnan(got["mean_prompt_tokens"])
    assert math.isnan(got["ttft_p95_s"])
    assert got["running_mean"] == pytest.approx(2.0)


def test_measured_zero_traffic_stays_zero() -> None:
    got = one([series("request_success_per_second", 0.0)])
    assert got["request_rate"] == 0.0


def test_empty_frame_gives_empty_frame_with_the_documented_columns() -> None:
    got = deployment_stats(pd.DataFrame())
    assert got.empty
    assert list(got.columns) == DEPLOYMENT_STATS_COLUMNS


def test_rows_without_a_deployment_are_ignored() -> None:
    rows = [
        series("request_success_per_second", 100.0, deployment="", instance="node-7"),
        series("requests_running", 50.0, deployment="", instance="node-7"),
        series("request_success_per_second", 0.25, instance="chat-0"),
    ]
    frame = stats_of(rows)
    assert list(frame["deployment"]) == ["chat"]
    got = frame.iloc[0]
    assert got["request_rate"] == pytest.approx(0.25)
    assert got["instances_seen"] == 1
    assert math.isnan(got["running_mean"])


def test_only_rows_without_a_deployment_give_the_empty_frame() -> None:
    got = stats_of([series("request_success_per_second", 1.0, deployment="")])
    assert got.empty
    assert list(got.columns) == DEPLOYMENT_STATS_COLUMNS


@pytest.mark.parametrize("success", [0.0, -1.0, None])
def test_mean_tokens_only_when_the_success_rate_is_positive(success: float | None) -> None:
    rows = [
        series("prompt_tokens_per_second", 400.0),
        series("generation_tokens_per_second", 40.0),
    ]
    if success is not None:
        rows.append(series("request_success_per_second", success))
    got = one(rows)
    assert math.isnan(got["mean_prompt_tokens"])
    assert math.isnan(got["mean_output_tokens"])
    assert got["prompt_tokens_per_s"] == pytest.approx(400.0)


def test_deployments_are_kept_apart_by_tenant_and_provider() -> None:
    rows = [
        series("request_success_per_second", 1.0, tenant="acme", instance="a-0"),
        series("request_success_per_second", 2.0, tenant="globex", instance="g-0"),
        series("request_success_per_second", 4.0, tenant="globex", provider="k8s", instance="k-0"),
    ]
    frame = stats_of(rows)
    got = {(r.tenant, r.provider): r.request_rate for r in frame.itertuples()}
    assert got == {("acme", "prom"): 1.0, ("globex", "prom"): 2.0, ("globex", "k8s"): 4.0}
    assert list(frame.columns) == DEPLOYMENT_STATS_COLUMNS
