"""Parsing and canonicalising real expositions (tests/data/exposition), old and new names.

vLLM has no public full capture, so its exposition is built from the reference of what
vLLM 0.33 registers (names, types, label names, buckets) with prometheus_client itself
— the library vLLM uses — which gives the real ``_total`` / ``_bucket`` / ``_created``
naming. SGLang and DCGM are verbatim captures.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from optiinfra.metrics import CANONICAL
from providers.prometheus.canonical import gauge_rows, merge
from providers.prometheus.counters import snapshot, windowed_rows
from providers.prometheus.detect import (
    allowed_sources,
    detect,
    exposed_names,
    name_matcher,
    source_of,
)
from providers.prometheus.scrape import (
    TargetError,
    describe_unknown,
    filter_exposition,
    parse_exposition,
)
from providers.prometheus.series import LabelPolicy, Row

DATA = Path(__file__).resolve().parents[1] / "data" / "exposition"
ALL = allowed_sources("auto")
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def _buckets(family: str) -> list[float]:
    rows = {r["family"]: r["bounds"] for r in csv.DictReader((DATA / "vllm_v1_buckets.csv").open())}
    if family == "request_tokens":  # the 1-2-5 series up to max_model_len (8192 here)
        return [m * 10**e for e in range(5) for m in (1, 2, 5) if m * 10**e <= 8192]
    return [float(b) for b in rows[family].split()]


def vllm_exposition(*, scale: float = 1.0, old_names: bool = False, new_names: bool = True) -> str:
    """Every unconditional vLLM 0.33 family (two DP engines), filled with known values."""
    registry = CollectorRegistry()
    reference = list(csv.DictReader((DATA / "vllm_v1_reference.csv").open()))
    values = {"model_name": MODEL, "finished_reason": "stop", "reason": "capacity",
              "sleep_state": "awake", "source": "local_compute"}  # fmt: skip
    for row in reference:
        name, kind, labels = row["name"], row["type"], row["labels"].split(";")
        if name == "vllm:cache_config_info" or not new_names:
            continue
        if kind == "counter":
            metric: Counter | Gauge | Histogram = Counter(name, row["help"], labels,
                                                          registry=registry)  # fmt: skip
        elif kind == "gauge":
            metric = Gauge(name, row["help"], labels, registry=registry)
        else:
            metric = Histogram(name, row["help"], labels, registry=registry,
                               buckets=_buckets(row["buckets"]))  # fmt: skip
        for engine in ("0", "1"):  # two data-parallel engines
            child = metric.labels(**{k: (engine if k == "engine" else values[k]) for k in labels})
            if isinstance(child, Counter):
                child.inc(100 * scale)
            elif isinstance(child, Gauge):
                child.set(0.25 + int(engine))
            else:
                for value in (0.03, 0.07, 0.3, 2.0):
                    for _ in range(int(10 * scale)):
                        child.observe(value)
    if old_names:
        old = Gauge("vllm:gpu_cache_usage_perc", "old", ["model_name", "engine"], registry=registry)
        old.labels(model_name=MODEL, engine="0").set(0.9)
        hist = Histogram("vllm:time_per_output_token_seconds", "old", ["model_name", "engine"],
                         registry=registry, buckets=_buckets("inter_token_latency"))  # fmt: skip
        for _ in range(int(10 * scale)):
            hist.labels(model_name=MODEL, engine="0").observe(0.2)
    return generate_latest(registry).decode()


def _by_metric(rows: list[Row]) -> dict[tuple[str, str], Row]:
    return {(r.canonical, r.labels.get("quantile", "")): r for r in rows}


def test_vllm_reference_exposition_maps_every_mapped_family() -> None:
    text = vllm_exposition()
    series, sources = parse_exposition(text, ALL)
    assert sources == ["vllm"]
    names = {s.mapping.source_name for s in series}
    wanted = {"vllm:num_requests_running", "vllm:prompt_tokens_total",
              "vllm:time_to_first_token_seconds", "vllm:prefix_cache_hits_total"}  # fmt: skip
    assert wanted <= names
    assert not any("_created" in s.name for s in series)  # unmapped families are skipped
    rows = _by_metric(merge(gauge_rows(series, LabelPolicy())))
    # two data-parallel engines: running requests summed, KV usage averaged
    assert rows[("requests_running", "")].value == pytest.approx(0.25 + 1.25)
    assert rows[("kv_cache_usage_ratio", "")].value == pytest.approx((0.25 + 1.25) / 2)
    assert rows[("requests_running", "")].labels == {"model_name": MODEL}


def test_vllm_rates_and_quantiles_between_two_expositions() -> None:
    policy = LabelPolicy()
    before = snapshot(parse_exposition(vllm_exposition(scale=1), ALL)[0], policy)
    after = snapshot(parse_exposition(vllm_exposition(scale=3), ALL)[0], policy)
    rows = _by_metric(windowed_rows(before, after, 10.0, (0.5, 0.95)))
    # each counter grew by 200 per engine, two engines, over 10 s
    for metric in ("prompt_tokens_per_second", "generation_tokens_per_second",
                   "request_success_per_second", "preemptions_per_second"):  # fmt: skip
        assert rows[(metric, "")].value == pytest.approx(40.0), metric
    assert rows[("prefix_cache_hit_ratio", "")].value == pytest.approx(1.0)  # hits == queries
    # 20 new observations each of 0.03, 0.07, 0.3, 2.0 per engine: the median lies in the
    # TTFT bucket (0.06, 0.08], the 95th in (1.0, 2.5]
    p50, p95 = rows[("ttft_seconds", "0.5")].value, rows[("ttft_seconds", "0.95")].value
    assert 0.06 < p50 <= 0.08 and 1.0 < p95 <= 2.5
    assert all(r.canonical in CANONICAL for r in rows.values())


def test_old_vllm_names_map_and_lose_to_new_ones() -> None:
    policy = LabelPolicy()
    old_only = parse_exposition(vllm_exposition(new_names=False, old_names=True), ALL)[0]
    rows = _by_metric(merge(gauge_rows(old_only, policy)))
    assert rows[("kv_cache_usage_ratio", "")].value == pytest.approx(0.9)
    both = parse_exposition(vllm_exposition(old_names=True), ALL)[0]
    rows = _by_metric(merge(gauge_rows(both, policy)))
    assert rows[("kv_cache_usage_ratio", "")].value == pytest.approx(0.75)  # new name wins
    before = snapshot(parse_exposition(vllm_exposition(new_names=False, old_names=True), ALL)[0],
                      policy)  # fmt: skip
    after = snapshot(
        parse_exposition(vllm_exposition(new_names=False, old_names=True, scale=2), ALL)[0], policy
    )
    itl = _by_metric(windowed_rows(before, after, 5.0, (0.5,)))[("itl_seconds", "0.5")]
    assert 0.15 < itl.value <= 0.2  # the old histogram feeds itl_seconds


def test_sglang_documented_sample() -> None:
    text = (DATA / "sglang_metrics_sample_docs.prom").read_text()
    series, sources = parse_exposition(text, ALL)
    assert sources == ["sglang"]
    rows = _by_metric(merge(gauge_rows(series, LabelPolicy())))
    assert rows[("requests_running", "")].value == 162
    assert rows[("requests_waiting", "")].value == 2826
    assert rows[("kv_cache_usage_ratio", "")].value == pytest.approx(0.28)
    assert rows[("generation_tokens_per_second", "")].value == pytest.approx(86.508, rel=1e-4)
    assert {s.mapping.source_name for s in series} >= {
        "sglang:time_per_output_token_seconds", "sglang:e2e_request_latency_seconds",
    }  # fmt: skip
    # the counter outranks the engine's own throughput gauge when a window exists
    gauge = rows[("generation_tokens_per_second", "")]
    counter = snapshot(series, LabelPolicy())
    assert any(k[0] == "sglang:generation_tokens_total" for k in counter)
    rate = [r for r in windowed_rows({}, counter, 1.0, ()) if r.canonical == gauge.canonical]
    assert merge([gauge, *rate])[0].rank < gauge.rank


def test_sglang_pipeline_copies_are_not_double_counted() -> None:
    line = 'sglang:num_running_reqs{{model_name="m",pp_rank="{pp}",tp_rank="0",dp_rank="{dp}"}} {v}'
    text = "# TYPE sglang:num_running_reqs gauge\n" + "\n".join(
        line.format(pp=pp, dp=dp, v=5 + 10 * dp) for pp in (0, 1) for dp in (0, 1)
    )
    rows = gauge_rows(parse_exposition(text, ALL)[0], LabelPolicy())
    assert [(r.labels, r.value) for r in rows] == [({"model_name": "m"}, 5 + 15.0)]


@pytest.mark.parametrize("hostname_label", ["Hostname", "hostname"])
def test_dcgm_capture_keeps_one_series_per_gpu(hostname_label: str) -> None:
    text = (DATA / "dcgm_exporter_kops_l4.prom").read_text()
    text = text.replace("Hostname=", f"{hostname_label}=")
    series, sources = parse_exposition(text, ALL)
    assert sources == ["dcgm"]
    rows = _by_metric(merge(gauge_rows(series, LabelPolicy())))
    fb_free = rows[("gpu_memory_free_bytes", "")]
    assert fb_free.value == 22563 * 1024 * 1024
    assert fb_free.labels["host"] == "i-030791dc5a37cd257"
    assert fb_free.labels["model"] == "NVIDIA L4" and fb_free.labels["gpu"] == "0"
    assert rows[("gpu_power_watts", "")].value == pytest.approx(16.365)
    assert rows[("gpu_utilization_ratio", "")].value == 0.0
    assert "Hostname" not in fb_free.labels and "hostname" not in fb_free.labels


def test_tgi_counters_without_total_suffix() -> None:
    text = ("# TYPE tgi_request_success counter\ntgi_request_success 7\n"
            "# TYPE tgi_queue_size gauge\ntgi_queue_size 3\n")  # fmt: skip
    series, _ = parse_exposition(text, ALL)
    assert {s.name for s in series} == {"tgi_request_success_total", "tgi_queue_size"}
    rows = windowed_rows({}, snapshot(series, LabelPolicy()), 7.0, ())
    assert [(r.canonical, r.value) for r in rows] == [("request_success_per_second", 1.0)]


def test_filter_keeps_only_mapped_lines() -> None:
    text = vllm_exposition()
    kept = filter_exposition(text, exposed_names(ALL))
    assert "vllm:cache_config_info" not in kept and "_created" not in kept
    assert "vllm:time_to_first_token_seconds_bucket" in kept
    assert len(kept) < len(text) / 2


@pytest.mark.parametrize(
    ("body", "content_type", "cause"),
    [
        ("<html><body>Not found</body></html>", "text/html", "text/html, not the Prometheus"),
        ('{"status": "ok"}', "application/json", "application/json"),
        ("go_goroutines 7\n", "text/plain; version=0.0.4", "no vLLM, SGLang, TGI, DCGM"),
    ],
)
def test_answers_without_known_metrics_say_why(body: str, content_type: str, cause: str) -> None:
    assert parse_exposition(body, ALL)[0] == []
    assert cause in describe_unknown(body, content_type)


def test_malformed_mapped_lines_are_a_target_error() -> None:
    text = 'vllm:num_requests_running{model_name="m" 3\n'
    with pytest.raises(TargetError, match="not valid Prometheus text"):
        parse_exposition(text, ALL)


def test_nan_samples_mean_no_observation_and_are_dropped() -> None:
    text = "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc NaN\n"
    assert parse_exposition(text, ALL)[0] == []


def test_detection_from_names_and_engine_option() -> None:
    names = ["vllm:num_requests_running", "DCGM_FI_DEV_GPU_UTIL", "go_gc_duration_seconds",
             "sglang:num_queue_reqs", "node_cpu_seconds_total"]  # fmt: skip
    assert detect(names, ALL) == ["vllm", "sglang", "dcgm", "node_exporter"]
    assert detect(names, allowed_sources("sglang")) == ["sglang", "dcgm", "node_exporter"]
    assert source_of("tgi_queue_size") == "tgi" and source_of("up") is None
    matcher = name_matcher(allowed_sources("vllm"))
    assert "vllm:.+" in matcher and "DCGM_FI_.+" in matcher and "sglang" not in matcher
    assert "node_cpu_seconds_total" in matcher and "node_.+" not in matcher
