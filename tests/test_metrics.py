"""The canonical vocabulary and the mapping tables of optiinfra.metrics."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from optiinfra import metrics
from optiinfra.metrics import (
    CANONICAL,
    SOURCES,
    MetricValueError,
    aggregate_ranks,
    is_canonical,
    lookup,
    mappings,
    normalise_gauges,
    normalise_value,
    parse_table,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

REQUIRED_VOCABULARY = {
    "requests_running", "requests_waiting", "kv_cache_usage_ratio", "ttft_seconds",
    "itl_seconds", "e2e_latency_seconds", "queue_time_seconds", "prompt_tokens_per_second",
    "generation_tokens_per_second", "request_success_per_second",
    "request_failure_per_second", "preemptions_per_second", "prefix_cache_hit_ratio",
    "batch_size", "gpu_utilization_ratio", "gpu_memory_used_bytes", "gpu_memory_total_bytes",
    "gpu_power_watts", "gpu_temperature_celsius", "sm_active_ratio", "tensor_active_ratio",
    "dram_active_ratio", "cpu_utilization_ratio", "memory_used_bytes", "memory_total_bytes",
    "price_usd_per_hour", "cost_usd", "quality_score",
}  # fmt: skip


def test_vocabulary_has_every_required_name_with_unit_and_kind() -> None:
    assert set(CANONICAL) >= REQUIRED_VOCABULARY
    for name, metric in CANONICAL.items():
        assert metric.name == name
        assert metric.unit and metric.description
        assert metric.kind in ("gauge", "rate", "quantile")
        assert ("quantile" in metric.labels) == (metric.kind == "quantile")
    assert CANONICAL["price_usd_per_hour"].labels == ("market",)
    assert CANONICAL["gpu_power_watts"].unit == "watts"


@pytest.mark.parametrize("source", SOURCES)
def test_every_source_table_loads_and_targets_the_vocabulary(source: str) -> None:
    rows = mappings(source)
    assert rows, f"{source} has no mappings"
    assert len({r.source_name for r in rows}) == len(rows)
    for row in rows:
        assert row.source == source
        assert is_canonical(row.canonical)
        assert math.isfinite(row.scale) and row.scale != 0
        assert lookup(source, row.source_name) == row


def test_unknown_source_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid sources: vllm, tgi, sglang, dcgm"):
        mappings("triton")
    with pytest.raises(ValueError, match="unknown metric source"):
        lookup("nope", "vllm:num_requests_waiting")


@pytest.mark.parametrize(
    ("name", "canonical", "deprecated"),
    [
        ("vllm:num_requests_waiting", "requests_waiting", False),
        ("vllm:kv_cache_usage_perc", "kv_cache_usage_ratio", False),
        ("vllm:gpu_cache_usage_perc", "kv_cache_usage_ratio", True),
        ("vllm:time_per_output_token_seconds", "itl_seconds", True),
        ("vllm:inter_token_latency_seconds", "itl_seconds", False),
        ("vllm:avg_prompt_throughput_toks_per_s", "prompt_tokens_per_second", True),
        ("vllm:avg_generation_throughput_toks_per_s", "generation_tokens_per_second", True),
        ("vllm:prompt_tokens_total", "prompt_tokens_per_second", False),
        ("vllm:num_preemptions_total", "preemptions_per_second", False),
        ("vllm:e2e_request_latency_seconds", "e2e_latency_seconds", False),
    ],
)
def test_vllm_new_and_old_names(name: str, canonical: str, deprecated: bool) -> None:
    found = lookup("vllm", name)
    assert found is not None
    assert (found.canonical, found.deprecated) == (canonical, deprecated)


def test_exposed_forms_of_counters_and_histograms_resolve() -> None:
    # V1 declares Counter("vllm:num_preemptions"); the exposition adds _total.
    assert lookup("vllm", "vllm:num_preemptions").canonical == "preemptions_per_second"
    assert lookup("tgi", "tgi_request_success_total").canonical == "request_success_per_second"
    bucket = lookup("vllm", "vllm:time_to_first_token_seconds_bucket")
    assert bucket is not None and bucket.derive == "quantile"
    assert lookup("tgi", "tgi_request_input_length_sum").derive == "rate_of_sum"
    # a gauge does not grow histogram suffixes
    assert lookup("vllm", "vllm:num_requests_waiting_bucket") is None
    assert lookup("vllm", "vllm:num_requests_swapped") is None


def test_every_counter_and_histogram_says_what_it_feeds() -> None:
    for source in SOURCES:
        for row in mappings(source):
            kind = CANONICAL[row.canonical].kind
            if row.source_type == "gauge":
                assert row.derive == "value"
            elif row.derive == "quantile":
                assert kind == "quantile" and row.source_type in ("histogram", "summary")
            else:
                assert row.derive in ("rate", "rate_of_sum", "ratio_numerator",
                                      "ratio_denominator", "idle_complement")  # fmt: skip


def test_vllm_prefix_cache_ratio_has_numerator_and_denominator() -> None:
    feeds = {r.derive for r in mappings("vllm") if r.canonical == "prefix_cache_hit_ratio"}
    assert {"ratio_numerator", "ratio_denominator"} <= feeds


def test_dcgm_table_covers_the_exporter_default_counters() -> None:
    csv_text = (SHARED_DATA / "dcgm_exporter_default-counters.csv").read_text()
    defaults = {
        line.split(",")[0].strip()
        for line in csv_text.splitlines()
        if line.strip() and not line.startswith("#")
    }
    wanted = {
        "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "DCGM_FI_PROF_DRAM_ACTIVE",
    }  # fmt: skip
    assert wanted <= defaults  # the sample file really lists them
    for name in wanted:
        assert lookup("dcgm", name) is not None, name


def test_sglang_table_covers_the_documented_sample() -> None:
    text = (SHARED_DATA / "sglang_metrics_sample_docs.prom").read_text()
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
    mapped = {n: k for n, k in types.items() if lookup("sglang", n) is not None}
    # every sample metric with a canonical meaning is mapped, with the type it declares
    assert set(types) - set(mapped) <= {"sglang:func_latency_seconds", "sglang:num_used_tokens"}
    for name, kind in mapped.items():
        assert lookup("sglang", name).source_type == kind


@pytest.mark.parametrize(
    ("source", "name", "raw", "expected"),
    [
        ("dcgm", "DCGM_FI_DEV_GPU_UTIL", 87.0, 0.87),
        ("dcgm", "DCGM_FI_DEV_FB_USED", 1024.0, 1024.0 * 1024 * 1024),
        ("dcgm", "DCGM_FI_DEV_POWER_USAGE", 312.5, 312.5),
        ("dcgm", "DCGM_FI_DEV_SM_CLOCK", 1410.0, 1.41e9),
        ("nvml", "nvmlDeviceGetPowerUsage", 250_000, 250.0),
        ("nvml", "nvmlDeviceGetUtilizationRates.gpu", 40, 0.40),
        ("psutil", "cpu_percent", 12.5, 0.125),
        ("vllm", "vllm:kv_cache_usage_perc", 0.42, 0.42),
    ],
)
def test_unit_conversion(source: str, name: str, raw: float, expected: float) -> None:
    mapping = lookup(source, name)
    assert normalise_value(mapping, raw) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "12", None, True])
def test_normalise_value_rejects_non_finite_and_non_numbers(bad: object) -> None:
    mapping = lookup("dcgm", "DCGM_FI_DEV_GPU_UTIL")
    with pytest.raises(MetricValueError, match="DCGM_FI_DEV_GPU_UTIL"):
        normalise_value(mapping, bad)  # type: ignore[arg-type]


def test_normalise_gauges_maps_renames_labels_and_skips_the_rest() -> None:
    labels = {"gpu": "0", "UUID": "GPU-1", "modelName": "NVIDIA H100", "pod": "vllm-0"}
    out = normalise_gauges(
        "dcgm",
        [
            ("DCGM_FI_DEV_GPU_UTIL", labels, 55.0),
            ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", labels, 1e9),  # counter: not a gauge
            ("DCGM_FI_DEV_XID_ERRORS", labels, 0.0),  # unmapped
            ("DCGM_FI_DEV_GPU_TEMP", labels, math.nan),  # no observation: dropped
        ],
    )
    assert out == [
        (
            "gpu_utilization_ratio",
            {"gpu": "0", "uuid": "GPU-1", "model": "NVIDIA H100", "pod": "vllm-0"},
            0.55,
        )
    ]


def test_earlier_row_wins_when_two_names_feed_one_series() -> None:
    both = [
        ("vllm:gpu_cache_usage_perc", {"model_name": "m"}, 0.9),
        ("vllm:kv_cache_usage_perc", {"model_name": "m"}, 0.5),
    ]
    assert normalise_gauges("vllm", both) == [("kv_cache_usage_ratio", {"model_name": "m"}, 0.5)]
    old_only = normalise_gauges("vllm", both[:1])
    assert old_only == [("kv_cache_usage_ratio", {"model_name": "m"}, 0.9)]
    sm = normalise_gauges(
        "dcgm",
        [("DCGM_FI_PROF_GR_ENGINE_ACTIVE", {"gpu": "0"}, 0.7),
         ("DCGM_FI_PROF_SM_ACTIVE", {"gpu": "0"}, 0.6)],
    )  # fmt: skip
    assert sm == [("sm_active_ratio", {"gpu": "0"}, 0.6)]


@pytest.mark.parametrize(
    "garbage",
    [
        [(42, {}, 1.0)],
        [("vllm:num_requests_waiting", {"a": 1}, 1.0)],
        [("vllm:num_requests_waiting", ["a"], 1.0)],
        [("vllm:num_requests_waiting", {}, "3")],
        [("unknown_metric", {}, object())],
        ["not a tuple"],
        [("too", "short")],
    ],
)
def test_normalise_gauges_garbage_is_one_clear_error(garbage: list) -> None:
    with pytest.raises(MetricValueError, match="vllm"):
        normalise_gauges("vllm", garbage)


def test_aggregate_ranks_sums_engines_and_takes_one_copy_of_tensor_parallel_ranks() -> None:
    def series(name: str, dp: str, tp: str, value: float) -> tuple:  # type: ignore[type-arg]
        return (name, {"dp_rank": dp, "tp_rank": tp, "model_name": "m"}, value)

    rows = normalise_gauges(
        "sglang",
        [
            # two data-parallel engines, each reported by two tensor-parallel ranks
            series("sglang:num_running_reqs", "0", "0", 3),
            series("sglang:num_running_reqs", "0", "1", 3),
            series("sglang:num_running_reqs", "1", "0", 5),
            series("sglang:num_running_reqs", "1", "1", 5),
            series("sglang:token_usage", "0", "0", 0.2),
            series("sglang:token_usage", "0", "1", 0.2),
            series("sglang:token_usage", "1", "0", 0.6),
            series("sglang:token_usage", "1", "1", 0.6),
        ],
    )
    got = {name: (labels, value) for name, labels, value in aggregate_ranks("sglang", rows)}
    assert got["requests_running"] == ({"model_name": "m"}, 8.0)  # 3 + 5, not 16
    assert got["kv_cache_usage_ratio"][1] == pytest.approx(0.4)
    per_gpu = normalise_gauges(
        "dcgm", [("DCGM_FI_DEV_GPU_UTIL", {"gpu": str(i)}, 10.0 * i) for i in range(3)]
    )
    assert len(aggregate_ranks("dcgm", per_gpu)) == 3  # one series per GPU stays


def test_is_canonical() -> None:
    assert is_canonical("ttft_seconds")
    assert not is_canonical("vllm:time_to_first_token_seconds")
    assert not is_canonical(None)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("x,not_a_metric,gauge,identity,,none,value,false,n", "not a canonical metric"),
        ("x,requests_running,gauge,furlongs,,none,value,false,n", "conversion"),
        ("x,requests_running,counter,identity,,none,value,false,n", "derive"),
        ("x,ttft_seconds,gauge,identity,,none,value,false,n", "derive"),
        ("x,requests_running,gauge,identity,gpu,none,value,false,n", "labels"),
        ("x,requests_running,gauge,identity,,median,value,false,n", "rank_aggregation"),
        ("x,requests_running,gauge,identity,,none,value,maybe,n", "deprecated"),
        ("x,requests_running,gauge,0,,none,value,false,n", "non-zero"),
    ],
)
def test_bad_table_rows_name_file_line_and_column(row: str, message: str) -> None:
    header = ",".join(metrics._COLUMNS)
    with pytest.raises(MetricValueError, match=rf"bad\.csv:2: .*{message}"):
        parse_table("vllm", f"{header}\n{row}\n", "bad.csv")


def test_duplicate_source_name_is_rejected() -> None:
    header = ",".join(metrics._COLUMNS)
    row = "x,requests_running,gauge,identity,,none,value,false,n"
    with pytest.raises(MetricValueError, match=r"bad\.csv:3: .*repeated"):
        parse_table("vllm", f"{header}\n{row}\n{row}\n", "bad.csv")


def test_docs_match_the_data() -> None:
    docs = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert docs == metrics.render_markdown(), (
        "docs/metrics.md is stale: python -m optiinfra.metrics > docs/metrics.md"
    )
    for source in SOURCES:
        for row in mappings(source):
            assert f"`{row.source_name}`" in docs


def test_conversion_overflow_is_an_error_for_one_value_and_dropped_in_a_scrape() -> None:
    fb_used = lookup("dcgm", "DCGM_FI_DEV_FB_USED")
    with pytest.raises(MetricValueError, match="overflows"):
        normalise_value(fb_used, 1e308)
    assert normalise_gauges("dcgm", [("DCGM_FI_DEV_FB_USED", {}, 1e308)]) == []


def test_rows_feeding_one_metric_agree_on_rank_aggregation() -> None:
    for source in SOURCES:
        declared: dict[str, set[str]] = {}
        for row in mappings(source):
            if row.derive == "value":
                declared.setdefault(row.canonical, set()).add(row.rank_aggregation)
        assert all(len(v) == 1 for v in declared.values()), (source, declared)
