"""Rates, ratios and quantiles from two cumulative readings (constructed snapshots)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optiinfra.metrics import lookup
from providers.prometheus.counters import (
    decode,
    encode,
    histogram_quantile,
    is_reset,
    snapshot,
    windowed_rows,
)
from providers.prometheus.series import LabelPolicy, RawSeries

POLICY = LabelPolicy()
M = {"model_name": "m"}


def raw(source: str, name: str, value: float, **labels: str) -> RawSeries:
    mapping = lookup(source, name)
    assert mapping is not None, name
    return RawSeries(source, mapping, name, {"model_name": "m", **labels}, value)


def ttft(counts: dict[str, float], **labels: str) -> list[RawSeries]:
    name = "vllm:time_to_first_token_seconds_bucket"
    return [raw("vllm", name, c, le=le, **labels) for le, c in counts.items()]


def values(rows: list, metric: str) -> dict[str, float]:
    return {r.labels.get("quantile", ""): r.value for r in rows if r.canonical == metric}


# ---------------------------------------------------------------- histogram_quantile


def test_quantile_interpolates_inside_the_bucket_holding_the_rank() -> None:
    buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (math.inf, 40.0)]
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * 10 / 20)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.5 + 0.5 * 8 / 10)
    # rank in the first bucket: interpolated from zero
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.04)


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.99, [(1.0, 5.0), (2.0, 6.0), (math.inf, 100.0)]) == 2.0


@pytest.mark.parametrize(
    "buckets",
    [[], [(math.inf, 5.0)], [(1.0, 0.0), (math.inf, 0.0)], [(1.0, 3.0), (2.0, 4.0)]],
    ids=["empty", "only-inf", "no-observation", "no-inf"],
)
def test_quantile_is_undefined_without_observations_or_inf(buckets: list) -> None:
    assert histogram_quantile(0.5, buckets) is None


@given(
    st.lists(st.integers(0, 50), min_size=2, max_size=12),
    st.floats(0.01, 0.99),
    st.floats(0.01, 0.99),
)
def test_quantiles_are_ordered_and_inside_the_buckets(
    increments: list[int], q1: float, q2: float
) -> None:
    bounds = [0.01 * 2**i for i in range(len(increments) - 1)] + [math.inf]
    cumulative = [float(sum(increments[: i + 1])) for i in range(len(increments))]
    buckets = list(zip(bounds, cumulative, strict=True))
    low, high = sorted((q1, q2))
    a, b = histogram_quantile(low, buckets), histogram_quantile(high, buckets)
    if cumulative[-1] == 0:
        assert a is None and b is None
        return
    assert a is not None and b is not None
    assert a <= b + 1e-12
    assert 0 <= b <= bounds[-2]


# ---------------------------------------------------------------- snapshots → rows


def test_counters_become_rates_summed_over_reasons_and_engines() -> None:
    def reading(scale: float) -> dict:
        return snapshot(
            [
                raw("vllm", "vllm:request_success_total", 10 * scale, finished_reason="stop",
                    engine="0"),
                raw("vllm", "vllm:request_success_total", 5 * scale, finished_reason="length",
                    engine="1"),
                raw("vllm", "vllm:generation_tokens_total", 1000 * scale, engine="0"),
                raw("vllm", "vllm:num_requests_running", 3.0),  # gauge: not in a snapshot
            ],
            POLICY,
        )  # fmt: skip

    before, after = reading(1), reading(3)
    assert all(key[3] == (("model_name", "m"),) for key in after)
    rows = windowed_rows(before, after, 15.0, (0.5,))
    assert values(rows, "request_success_per_second") == {"": pytest.approx(30 / 15)}
    assert values(rows, "generation_tokens_per_second") == {"": pytest.approx(2000 / 15)}
    assert all(r.labels == M for r in rows)


def test_bucket_deltas_give_window_quantiles_not_lifetime_ones() -> None:
    # lifetime: 1000 slow requests; window: 100 fast ones
    before = snapshot(ttft({"0.1": 0, "1.0": 0, "10.0": 1000, "+Inf": 1000}), POLICY)
    after = snapshot(ttft({"0.1": 90, "1.0": 100, "10.0": 1100, "+Inf": 1100}), POLICY)
    window = values(windowed_rows(before, after, 60.0, (0.5, 0.95, 0.99)), "ttft_seconds")
    assert window["0.5"] == pytest.approx(0.1 * 50 / 90)
    assert window["0.95"] == pytest.approx(0.1 + 0.9 * 5 / 10)
    assert window["0.5"] <= window["0.95"] <= window["0.99"] <= 1.0
    lifetime = values(windowed_rows({}, after, 60.0, (0.5,)), "ttft_seconds")
    assert lifetime["0.5"] > 1.0


def test_a_missing_previous_reading_counts_from_zero() -> None:
    after = snapshot([raw("vllm", "vllm:num_preemptions_total", 12.0)], POLICY)
    rows = windowed_rows({}, after, 4.0, ())
    assert values(rows, "preemptions_per_second") == {"": 3.0}


def test_a_counter_that_went_down_is_a_reset() -> None:
    before = snapshot([raw("vllm", "vllm:prompt_tokens_total", 5000.0)], POLICY)
    after = snapshot([raw("vllm", "vllm:prompt_tokens_total", 40.0)], POLICY)
    assert is_reset(before, after)
    assert not is_reset(after, before)
    assert not is_reset({}, after)
    # if used anyway, a reset never yields a negative rate
    assert values(windowed_rows(before, after, 1.0, ()), "prompt_tokens_per_second") == {"": 0.0}


def test_histogram_buckets_that_shrink_are_a_reset() -> None:
    before = snapshot(ttft({"1.0": 50, "+Inf": 60}), POLICY)
    after = snapshot(ttft({"1.0": 2, "+Inf": 3}), POLICY)
    assert is_reset(before, after)


def test_no_observation_in_the_window_gives_no_quantile_and_no_ratio() -> None:
    cache = [
        raw("vllm", "vllm:prefix_cache_hits_total", 10.0),
        raw("vllm", "vllm:prefix_cache_queries_total", 20.0),
    ]
    same = snapshot([*ttft({"1.0": 5, "+Inf": 5}), *cache], POLICY)
    rows = windowed_rows(same, same, 30.0, (0.5,))
    assert values(rows, "ttft_seconds") == {}
    assert values(rows, "prefix_cache_hit_ratio") == {}


def test_prefix_cache_ratio_from_hit_and_query_deltas() -> None:
    def reading(hits: float, queries: float) -> dict:
        return snapshot(
            [raw("vllm", "vllm:prefix_cache_hits_total", hits, engine="0"),
             raw("vllm", "vllm:prefix_cache_queries_total", queries, engine="0")],
            POLICY,
        )  # fmt: skip

    rows = windowed_rows(reading(100, 1000), reading(400, 2000), 10.0, ())
    assert values(rows, "prefix_cache_hit_ratio") == {"": pytest.approx(0.3)}


def test_sglang_copies_over_pipeline_ranks_are_taken_once() -> None:
    def reading(count: float) -> dict:
        return snapshot(
            [raw("sglang", "sglang:queue_time_seconds_bucket", count, le=le, pp_rank=pp,
                 tp_rank="0") for pp in ("0", "1") for le in ("1.0", "+Inf")]
            + [raw("sglang", "sglang:num_requests_total", count, pp_rank=pp) for pp in ("0", "1")],
            POLICY,
        )  # fmt: skip

    rows = windowed_rows(reading(0), reading(10), 5.0, (0.5,))
    assert values(rows, "request_success_per_second") == {"": 2.0}  # 10 in 5 s, not 20
    assert values(rows, "queue_time_seconds")["0.5"] == pytest.approx(0.5)


def test_dcgm_energy_counter_is_average_watts_per_gpu() -> None:
    def reading(millijoules: float) -> dict:
        return snapshot(
            [raw("dcgm", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total", millijoules * (g + 1),
                 gpu=str(g), UUID=f"GPU-{g}", Hostname="node-1") for g in (0, 1)],
            POLICY,
        )  # fmt: skip

    rows = windowed_rows(reading(1_000_000), reading(4_000_000), 10.0, ())
    watts = {r.labels["gpu"]: r.value for r in rows if r.canonical == "gpu_power_watts"}
    assert watts == {"0": pytest.approx(300.0), "1": pytest.approx(600.0)}
    assert all(r.labels["host"] == "node-1" and "uuid" in r.labels for r in rows)


def test_node_cpu_idle_complement() -> None:
    def reading(idle: float, user: float) -> dict:
        series = []
        for cpu in ("0", "1"):
            series.append(
                raw("node_exporter", "node_cpu_seconds_total", idle, cpu=cpu, mode="idle")
            )
            series.append(raw("node_exporter", "node_cpu_seconds_total", user, cpu=cpu,
                              mode="user"))  # fmt: skip
        return snapshot(series, POLICY)

    rows = windowed_rows(reading(100, 50), reading(107.5, 52.5), 10.0, ())
    assert values(rows, "cpu_utilization_ratio") == {"": pytest.approx(0.25)}


def test_tgi_token_rates_come_from_histogram_sums() -> None:
    def reading(total: float) -> dict:
        return snapshot([RawSeries("tgi", lookup("tgi", "tgi_request_input_length"),
                                   "tgi_request_input_length_sum", {}, total)], POLICY)  # fmt: skip

    rows = windowed_rows(reading(1000), reading(4000), 30.0, ())
    assert values(rows, "prompt_tokens_per_second") == {"": pytest.approx(100.0)}


# ---------------------------------------------------------------- stored payloads


def test_payload_round_trip_and_policy_change() -> None:
    tokens = raw("vllm", "vllm:prompt_tokens_total", 9.0)
    snap = snapshot([*ttft({"0.5": 3, "+Inf": 4}), tokens], POLICY)
    payload = encode(snap, POLICY)
    assert decode(payload, POLICY) == snap
    assert decode(payload, LabelPolicy(keep=("namespace",))) is None
    assert decode({"v": 99, "policy": POLICY.fingerprint(), "groups": []}, POLICY) is None
    assert decode({"v": 1, "policy": POLICY.fingerprint(), "groups": [{"x": 1}]}, POLICY) is None
    assert len(str(payload)) < 1000
