"""Bottleneck rules: each fires on its own figures, at its threshold, and not next to it."""

from __future__ import annotations

import math
from typing import Any

import pytest

from agents.context import Targets
from agents.performance.bottlenecks import KV_FULL, PREEMPTION_RATE_MIN, find_bottlenecks

TARGETS = Targets(ttft_p95_s=2.0, itl_p95_s=0.15)
DEPLOYMENT: dict[str, Any] = {"deployment": "chat", "engine_args": {"max_num_seqs": 100}}


def healthy(**changes: float) -> dict[str, Any]:
    """A deployment's stats with no bottleneck: 20 of 100 slots busy, nothing waiting."""
    stats: dict[str, Any] = {
        "request_rate": 1.0,
        "preemptions_per_s": 0.0,
        "kv_usage_p95": 0.5,
        "kv_usage_max": 0.6,
        "waiting_mean": 0.0,
        "waiting_p95": 0.0,
        "running_mean": 20.0,
        "running_p95": 30.0,
        "queue_p95_s": math.nan,
        "ttft_p95_s": 0.5,
        "itl_p95_s": 0.05,
        "mean_prompt_tokens": 1000.0,
    }
    stats.update(changes)
    return stats


def kinds(
    stats: dict[str, Any] | None,
    targets: Targets = TARGETS,
    deployment: dict[str, Any] = DEPLOYMENT,
) -> list[str]:
    return [b.kind for b in find_bottlenecks(deployment, stats, targets)]


def test_healthy_deployment_has_no_bottleneck() -> None:
    assert kinds(healthy()) == []


def test_no_stats_means_no_bottleneck() -> None:
    assert kinds(None) == []


def test_all_figures_missing_is_no_bottleneck() -> None:
    assert kinds({name: math.nan for name in healthy()}) == []
    assert kinds({}) == []


# -- kv_pressure ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "fires"),
    [
        ({"preemptions_per_s": PREEMPTION_RATE_MIN}, True),
        ({"preemptions_per_s": 0.2}, True),
        ({"preemptions_per_s": 0.9 * PREEMPTION_RATE_MIN}, False),
        ({"kv_usage_p95": KV_FULL}, True),
        ({"kv_usage_p95": 0.949}, False),
        ({"kv_usage_max": 1.0}, False),  # a single full moment is not pressure
    ],
)
def test_kv_pressure(changes: dict[str, float], fires: bool) -> None:
    assert kinds(healthy(**changes)) == (["kv_pressure"] if fires else [])


def test_kv_pressure_carries_its_figures() -> None:
    [b] = find_bottlenecks(DEPLOYMENT, healthy(preemptions_per_s=0.2, kv_usage_p95=0.97), TARGETS)
    assert b.evidence["preemptions_per_s"] == 0.2
    assert b.evidence["kv_usage_p95"] == 0.97
    assert b.evidence["max_num_seqs"] == 100


# -- queueing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "fires"),
    [
        ({"waiting_mean": 1.0}, True),
        ({"waiting_mean": 0.99}, False),
        ({"queue_p95_s": 1.0}, True),  # half the 2 s TTFT target
        ({"queue_p95_s": 0.99}, False),
    ],
)
def test_queueing(changes: dict[str, float], fires: bool) -> None:
    assert kinds(healthy(**changes)) == (["queueing"] if fires else [])


def test_queue_time_needs_a_ttft_target_to_compare_with() -> None:
    assert kinds(healthy(queue_p95_s=5.0), Targets(itl_p95_s=0.15)) == []


# -- batch_capped --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "fires"),
    [
        ({"running_p95": 90.0, "waiting_p95": 0.5}, True),
        ({"running_p95": 89.0, "waiting_p95": 0.5}, False),  # under 90% of max_num_seqs
        ({"running_p95": 100.0, "waiting_p95": 0.0}, False),  # full, but nobody waits
    ],
)
def test_batch_capped(changes: dict[str, float], fires: bool) -> None:
    assert kinds(healthy(**changes)) == (["batch_capped"] if fires else [])


def test_batch_cap_defaults_to_vllms_256_slots() -> None:
    no_args: dict[str, Any] = {"deployment": "chat"}
    assert kinds(healthy(running_p95=231.0, waiting_p95=1.0), deployment=no_args) == [
        "batch_capped"
    ]
    assert kinds(healthy(running_p95=230.0, waiting_p95=1.0), deployment=no_args) == []


# -- prefill_bound / decode_bound ----------------------------------------------------------


def test_prefill_bound_when_only_ttft_misses() -> None:
    assert kinds(healthy(ttft_p95_s=2.1)) == ["prefill_bound"]
    assert kinds(healthy(ttft_p95_s=2.0)) == []  # at the target is within it


def test_decode_bound_when_itl_misses_and_then_not_prefill_bound() -> None:
    assert kinds(healthy(itl_p95_s=0.2)) == ["decode_bound"]
    assert kinds(healthy(itl_p95_s=0.2, ttft_p95_s=5.0)) == ["decode_bound"]
    assert kinds(healthy(itl_p95_s=0.15)) == []


def test_no_latency_rule_without_targets() -> None:
    assert kinds(healthy(ttft_p95_s=30.0, itl_p95_s=2.0), Targets()) == []


def test_unmeasured_itl_does_not_hide_a_ttft_miss() -> None:
    assert kinds(healthy(ttft_p95_s=3.0, itl_p95_s=math.nan)) == ["prefill_bound"]


# -- low_occupancy -------------------------------------------------------------------------


def test_low_occupancy_only_with_traffic_few_slots_busy_and_nobody_waiting() -> None:
    assert kinds(healthy(running_mean=4.0)) == ["low_occupancy"]  # 4 < 5% of 100
    assert kinds(healthy(running_mean=5.0)) == []
    assert kinds(healthy(running_mean=4.0, request_rate=0.0)) == []
    assert kinds(healthy(running_mean=4.0, request_rate=math.nan)) == []
    assert kinds(healthy(running_mean=4.0, waiting_p95=0.5)) == []


def test_low_occupancy_only_when_nothing_else_was_found() -> None:
    assert kinds(healthy(running_mean=1.0, ttft_p95_s=3.0)) == ["prefill_bound"]
    assert kinds(healthy(running_mean=1.0, preemptions_per_s=0.01)) == ["kv_pressure"]


def test_several_bottlenecks_are_reported_together_in_rule_order() -> None:
    stats = healthy(
        preemptions_per_s=0.2,
        waiting_mean=3.0,
        waiting_p95=5.0,
        running_p95=100.0,
        ttft_p95_s=6.0,
    )
    assert kinds(stats) == ["kv_pressure", "queueing", "batch_capped", "prefill_bound"]
