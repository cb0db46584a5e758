"""The sandbox's /metrics text against what the real servers serve.

Real samples and source-derived references live in ``tests/data/exposition`` (see its
SOURCES.md). Every text is parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from optiinfra.errors import OptiInfraError
from optiinfra.sandbox.exposition import BOOKS, gpu_book, metrics_book
from optiinfra.sandbox.observations import EngineState, FinishedRequest, GpuReading, MetricsBook

DATA = Path(__file__).resolve().parents[1] / "data" / "exposition"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"

#: Families ours has that vLLM 0.33.0's logger does not register unconditionally: none.
VLLM_EXTRA: dict[str, str] = {}
#: Families of the SGLang docs sample that SGLang 0.5.23 no longer writes.
SGLANG_GONE = {
    "sglang:time_per_output_token_seconds": "gone by 0.5.23; per-request TPOT is now "
    "sglang:request_time_per_output_token_seconds, per-token gaps inter_token_latency",
    "sglang:func_latency_seconds": "0.5.23 registers it but decorates no function, so the "
    "multiprocess collector never writes it",
}
#: Families TGI's router writes that its metrics page does not list.
TGI_UNDOCUMENTED = {
    "tgi_request_failure": "router/src/server.rs and backends/v3: counter with label err",
    "tgi_batch_max_total_tokens": "backends/v3/src/lib.rs sets it at warm-up",
}


def request(ttft: float, reason: str = "stop", gen: int = 11) -> FinishedRequest:
    return FinishedRequest(
        prompt_tokens=1000,
        generation_tokens=gen,
        max_tokens=256,
        finish_reason=reason,  # type: ignore[arg-type]
        queue_seconds=0.01,
        prefill_seconds=ttft - 0.01,
        decode_seconds=0.5,
        ttft_seconds=ttft,
        e2e_seconds=ttft + 0.5,
        cached_prompt_tokens=200,
    )


def drive(book: MetricsBook, *, decode_steps: int = 50) -> None:
    """A short, known history: prefills, decode steps, one preemption, three requests."""
    book.set_state(EngineState(running=7, waiting=2, kv_cache_usage=0.375, kv_cache_blocks=4096))
    book.record_prefix_cache(1000, 200)
    book.record_prefill(800)
    for _ in range(decode_steps):
        book.record_decode_step(0.02, 4)
    book.record_preemptions(1)
    for ttft, reason in ((0.03, "stop"), (0.3, "length"), (3.0, "abort")):
        book.record_finished(request(ttft, reason))


def families(text: str) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def label_names(family: Metric) -> set[str]:
    return {k for s in family.samples for k in s.labels if k not in ("le", "quantile")}


def sample(family: Metric, name: str, **labels: str) -> float:
    (value,) = [
        s.value for s in family.samples if s.name == name and labels.items() <= s.labels.items()
    ]
    return value


def reference(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(newline="") as f:
        return list(csv.DictReader(f))


# -- all books -------------------------------------------------------------------------


@pytest.mark.parametrize("engine", sorted(BOOKS))
def test_every_book_serves_text_prometheus_parses(engine: str) -> None:
    book = metrics_book(engine, model_name=MODEL)
    drive(book)
    text = book.render()
    assert text.endswith("\n") and book.content_type.startswith("text/plain")
    assert len(families(text)) >= 15


@pytest.mark.parametrize("engine", sorted(BOOKS))
def test_counts_never_decrease_across_renders(engine: str) -> None:
    book = metrics_book(engine, model_name=MODEL)
    drive(book)
    before = families(book.render())
    drive(book, decode_steps=3)
    after = families(book.render())
    monotone = 0
    for name, family in before.items():
        if family.type not in ("counter", "histogram", "summary"):
            continue
        for s in family.samples:
            if s.name.endswith("_created") or "quantile" in s.labels:
                continue
            later = sample(after[name], s.name, **s.labels)
            assert later >= s.value, f"{s.name}{s.labels} went from {s.value} to {later}"
            monotone += later > s.value
    assert monotone > 10  # the second history moved them


def test_unknown_engine_lists_the_valid_ones() -> None:
    with pytest.raises(OptiInfraError, match="valid engines: sglang, tgi, vllm"):
        metrics_book("tensorrt-llm", model_name=MODEL)


def test_unknown_option_names_the_accepted_ones() -> None:
    with pytest.raises(OptiInfraError, match=r"does not take max_batch.*max_model_len"):
        metrics_book("vllm", model_name=MODEL, max_batch=3)
    with pytest.raises(OptiInfraError, match="hostname_label"):
        gpu_book(host="x")


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_text_is_exactly_what_prometheus_client_writes(engine: str) -> None:
    """Both engines serve prometheus_client's generate_latest output: writing our parsed
    text back through it must give the same bytes (label order, number format, where the
    HELP/TYPE and _created lines go)."""
    book = metrics_book(engine, model_name=MODEL)
    drive(book)
    text = book.render()

    class Replay:
        def collect(self) -> list[Metric]:
            return list(text_string_to_metric_families(text))

    registry = CollectorRegistry()
    registry.register(Replay())
    assert generate_latest(registry).decode() == text


# -- vLLM ------------------------------------------------------------------------------


def vllm_text(max_model_len: int = 8192) -> str:
    book = metrics_book("vllm", model_name=MODEL, max_model_len=max_model_len)
    drive(book)
    return book.render()


def test_vllm_has_exactly_the_families_vllm_registers() -> None:
    ours = families(vllm_text())
    created = {n for n in ours if n.endswith("_created")}
    expected = {r["name"]: r for r in reference("vllm_v1_reference.csv")}
    assert set(ours) - created - set(VLLM_EXTRA) == set(expected)
    for name, row in expected.items():
        family = ours[name]
        assert family.type == row["type"], name
        assert family.documentation == row["help"], name
        assert label_names(family) == set(row["labels"].split(";")), name
        if row["type"] in ("counter", "histogram"):  # prometheus_client's created stamps
            assert ours[f"{name}_created"].type == "gauge", name
    assert {n.removesuffix("_created") for n in created} <= set(expected)


@pytest.mark.parametrize("max_model_len", [2048, 8192, 131072])
def test_vllm_bucket_boundaries_are_vllms(max_model_len: int) -> None:
    bounds = {r["family"]: r["bounds"] for r in reference("vllm_v1_buckets.csv")}
    series = [m * 10**e for e in range(7) for m in (1, 2, 5) if m * 10**e <= max_model_len]
    ours = families(vllm_text(max_model_len))
    for row in reference("vllm_v1_reference.csv"):
        if row["type"] != "histogram":
            continue
        want = series if row["buckets"] == "request_tokens" else bounds[row["buckets"]].split()
        les = [s.labels["le"] for s in ours[row["name"]].samples if s.name.endswith("_bucket")]
        assert [float(x) for x in les] == [*map(float, want), float("inf")], row["name"]


def test_vllm_histograms_and_counters_hold_the_recorded_events() -> None:
    f = families(vllm_text())
    ttft = f["vllm:time_to_first_token_seconds"]
    bucket = "vllm:time_to_first_token_seconds_bucket"
    assert sample(ttft, bucket, le="0.02") == 0
    assert sample(ttft, bucket, le="0.04") == 1  # 0.03
    assert sample(ttft, bucket, le="0.25") == 1
    assert sample(ttft, bucket, le="0.5") == 2  # 0.3
    assert sample(ttft, bucket, le="2.5") == 2
    assert sample(ttft, bucket, le="5.0") == 3  # 3.0
    assert sample(ttft, "vllm:time_to_first_token_seconds_count") == 3
    assert sample(ttft, "vllm:time_to_first_token_seconds_sum") == pytest.approx(3.33)
    itl = f["vllm:inter_token_latency_seconds"]
    assert sample(itl, "vllm:inter_token_latency_seconds_count") == 200
    assert sample(itl, "vllm:inter_token_latency_seconds_bucket", le="0.025") == 200
    assert sample(itl, "vllm:inter_token_latency_seconds_bucket", le="0.01") == 0
    success = f["vllm:request_success"]
    for reason in ("stop", "length", "abort"):
        assert sample(success, "vllm:request_success_total", finished_reason=reason) == 1
    assert sample(success, "vllm:request_success_total", finished_reason="error") == 0
    assert sample(f["vllm:generation_tokens"], "vllm:generation_tokens_total") == 200 + 3
    assert sample(f["vllm:prompt_tokens"], "vllm:prompt_tokens_total") == 800 + 200
    assert sample(f["vllm:prefix_cache_hits"], "vllm:prefix_cache_hits_total") == 200
    assert sample(f["vllm:num_preemptions"], "vllm:num_preemptions_total") == 1
    kv = f["vllm:request_prefill_kv_computed_tokens"]
    assert sample(kv, "vllm:request_prefill_kv_computed_tokens_sum") == 3 * 800
    assert sample(f["vllm:num_requests_running"], "vllm:num_requests_running") == 7
    assert sample(f["vllm:kv_cache_usage_perc"], "vllm:kv_cache_usage_perc") == 0.375
    info = f["vllm:cache_config_info"].samples[0].labels
    assert (info["num_gpu_blocks"], info["block_size"], info["engine"]) == ("4096", "16", "0")


# -- SGLang ----------------------------------------------------------------------------


def test_sglang_has_what_the_docs_sample_has() -> None:
    real = families((DATA / "sglang_metrics_sample_docs.prom").read_text())
    book = metrics_book("sglang", model_name=MODEL)
    drive(book)
    ours = families(book.render())
    assert set(real) - set(ours) == set(SGLANG_GONE)
    for name in set(real) - set(SGLANG_GONE):
        assert ours[name].type == real[name].type, name  # help texts were reworded since
        assert label_names(real[name]) <= label_names(ours[name]), name
    # the same multiprocess layout: no _created, _sum before the buckets
    assert not [n for n in ours if n.endswith("_created")]
    ttft = [s.name for s in ours["sglang:time_to_first_token_seconds"].samples]
    assert ttft[0].endswith("_sum") and ttft[-1].endswith("_count")


def test_sglang_labels_every_reporting_rank() -> None:
    book = metrics_book(
        "sglang", model_name=MODEL, tensor_parallel_size=4, pipeline_parallel_size=2, dp_rank=1
    )
    drive(book)
    f = families(book.render())
    running = f["sglang:num_running_reqs"].samples
    assert [(s.labels["tp_rank"], s.labels["pp_rank"], s.labels["dp_rank"]) for s in running] == [
        ("0", "0", "1"),
        ("0", "1", "1"),
    ]
    assert label_names(f["sglang:num_running_reqs"]) == {
        "model_name", "engine_type", "tp_rank", "pp_rank", "moe_ep_rank", "dp_rank"
    }  # fmt: skip
    assert label_names(f["sglang:prompt_tokens"]) == {"model_name", "engine_type", "is_streaming"}
    assert label_names(f["sglang:inter_token_latency_seconds"]) == {"model_name", "engine_type"}
    every = metrics_book("sglang", model_name=MODEL, tensor_parallel_size=4,
                         enable_metrics_for_all_schedulers=True)  # fmt: skip
    assert every.render().count("sglang:num_running_reqs{") == 4


def test_sglang_throughput_and_counters_follow_the_events() -> None:
    book = metrics_book("sglang", model_name=MODEL)
    drive(book, decode_steps=39)
    f = families(book.render())
    assert sample(f["sglang:gen_throughput"], "sglang:gen_throughput") == 0  # 39 < 40 steps
    book.record_decode_step(0.02, 4)
    f = families(book.render())
    assert sample(f["sglang:gen_throughput"], "sglang:gen_throughput") == pytest.approx(200)
    assert sample(f["sglang:num_requests"], "sglang:num_requests_total") == 3
    assert sample(f["sglang:num_aborted_requests"], "sglang:num_aborted_requests_total") == 1
    assert sample(f["sglang:cache_hit_rate"], "sglang:cache_hit_rate") == 0.2
    assert sample(f["sglang:num_used_tokens"], "sglang:num_used_tokens") == 0.375 * 4096 * 16
    e2e = f["sglang:e2e_request_latency_seconds"]
    bucket = "sglang:e2e_request_latency_seconds_bucket"
    assert [sample(e2e, bucket, le=le) for le in ("0.4", "0.6", "0.8", "4.0")] == [0, 1, 2, 3]


def test_sglang_writes_tokenizer_series_only_after_a_request() -> None:
    book = metrics_book("sglang", model_name=MODEL)
    book.set_state(EngineState(running=0, waiting=0, kv_cache_usage=0.0, kv_cache_blocks=10))
    names = set(families(book.render()))
    assert "sglang:num_running_reqs" in names and "sglang:prompt_tokens" not in names


# -- TGI -------------------------------------------------------------------------------


def tgi_documented() -> dict[str, str]:
    rows = re.findall(r"^\| `(tgi_\w+)`\s*\|[^|]*\|\s*(\w+)\s*\|", (DATA / "tgi_metrics_doc.md")
                      .read_text(), re.M)  # fmt: skip
    return {name: kind.lower() for name, kind in rows}


def test_tgi_writes_the_documented_names() -> None:
    documented = tgi_documented()
    assert len(documented) == 21
    book = metrics_book("tgi", model_name=MODEL)
    drive(book)
    ours = families(book.render())
    assert set(ours) - set(documented) == set(TGI_UNDOCUMENTED)
    assert set(documented) <= set(ours)
    for name, kind in documented.items():
        # no buckets are configured for skipped tokens, so the exporter writes a summary
        want = "summary" if name == "tgi_request_skipped_tokens" else kind
        assert ours[name].type == want, name


def test_tgi_text_has_the_rust_exporters_shape() -> None:
    book = metrics_book("tgi", model_name=MODEL, max_input_tokens=1000, max_total_tokens=2000)
    drive(book)
    text = book.render()
    assert "\ntgi_request_count 3\n" in text  # no _total, integer counts
    assert '\ntgi_request_failure{err="dropped"} 1\n' in text
    assert "# HELP tgi_request_duration Request duration\n" in text  # first description wins
    assert "_created" not in text and "# HELP tgi_request_failure" not in text
    assert text.count("# TYPE") == text.count("\n\n") + 1 - text.endswith("\n\n")
    f = families(text)
    les = [s.labels["le"] for s in f["tgi_request_duration"].samples if "le" in s.labels]
    assert len(les) == 36 and les[0] == "0.00015000000000000001" and les[-1] == "+Inf"
    lengths = [s.labels["le"] for s in f["tgi_request_input_length"].samples if "le" in s.labels]
    assert lengths[:3] == ["10", "20", "30"] and lengths[-2] == "1000"
    assert sample(f["tgi_request_input_length"], "tgi_request_input_length_sum") == 3000
    # prometheus_client's parser names counter samples *_total even where the text has none
    assert sample(f["tgi_request_success"], "tgi_request_success_total") == 2
    mean = f["tgi_request_mean_time_per_token_duration"]
    assert sample(mean, "tgi_request_mean_time_per_token_duration_count") == 2


# -- DCGM exporter ---------------------------------------------------------------------


def reading(index: int, **overrides: float) -> GpuReading:
    values: dict = dict(
        index=index, uuid=f"GPU-{index:08d}-aaaa-bbbb-cccc-dddddddddddd",
        model_name="NVIDIA H100 80GB HBM3", hostname="sandbox-node-1",
        utilization_percent=87.6, sm_active=0.61, sm_occupancy=0.32, tensor_active=0.4125,
        dram_active=0.55, graphics_engine_active=0.9, memory_copy_utilization_percent=40.2,
        framebuffer_used_mib=73728.4, framebuffer_free_mib=7286.0, framebuffer_reserved_mib=511,
        power_watts=512.25, energy_millijoules=123456789.0, gpu_temperature_c=61.4,
        memory_temperature_c=70.0, sm_clock_mhz=1980, memory_clock_mhz=2619,
    )  # fmt: skip
    values.update(overrides)
    return GpuReading(**values)


def label_order(text: str) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for name, labels in re.findall(r"^(\w+)\{(.*)\} ", text, re.M):
        out.setdefault(name, []).append(re.findall(r'(\w+)="', labels))
    return out


def test_dcgm_matches_a_real_exporter_scrape() -> None:
    real_text = (DATA / "dcgm_exporter_kops_l4.prom").read_text()
    real = families(real_text)
    ours_text = gpu_book().render([reading(0)])
    ours = families(ours_text)
    assert set(ours) == set(real)
    for name, family in real.items():
        assert ours[name].type == family.type, name
        assert ours[name].documentation == family.documentation, name
    assert label_order(ours_text) == label_order(real_text)  # names and their order


def test_dcgm_writes_one_series_per_gpu_in_dcgm_units() -> None:
    now = [100.0]
    book = gpu_book(clock=lambda: now[0], kubernetes={"pod": "vllm-0", "namespace": "ml"})
    book.render([reading(0, pcie_tx_bytes=1e9), reading(1)])
    now[0] = 102.0
    text = book.render([reading(1), reading(0, pcie_tx_bytes=1e9 + 4e6)])
    f = families(text)
    fb = f["DCGM_FI_DEV_FB_USED"].samples
    assert [s.labels["gpu"] for s in fb] == ["0", "1"]
    assert fb[0].labels == {
        "gpu": "0", "UUID": "GPU-00000000-aaaa-bbbb-cccc-dddddddddddd",
        "pci_bus_id": "00000000:18:00.0", "device": "nvidia0",
        "modelName": "NVIDIA H100 80GB HBM3", "Hostname": "sandbox-node-1",
        "DCGM_FI_DRIVER_VERSION": "580.105.08", "namespace": "ml", "pod": "vllm-0",
    }  # fmt: skip
    assert re.search(r"^DCGM_FI_DEV_FB_USED\{gpu=\"0\",.*\} 73728$", text, re.M)  # MiB, integer
    assert re.search(r"^DCGM_FI_DEV_POWER_USAGE\{gpu=\"0\",.*\} 512\.250000$", text, re.M)  # W
    assert re.search(r"^DCGM_FI_DEV_GPU_UTIL\{gpu=\"0\",.*\} 88$", text, re.M)  # percent
    assert re.search(r"^DCGM_FI_PROF_PIPE_TENSOR_ACTIVE\{gpu=\"0\",.*\} 0\.412500$", text, re.M)
    assert sample(f["DCGM_FI_PROF_PCIE_TX_BYTES"], "DCGM_FI_PROF_PCIE_TX_BYTES", gpu="0") == 2e6
    energy = f["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"]  # the parser adds _total to counters
    assert sample(energy, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total", gpu="1") == 123456789
    assert "DCGM_FI_PROF_SM_ACTIVE" not in f
    extras = families(gpu_book(profiling_extras=True).render([reading(0)]))
    assert sample(extras["DCGM_FI_PROF_SM_ACTIVE"], "DCGM_FI_PROF_SM_ACTIVE") == 0.61


def test_dcgm_hostname_label_of_the_unreleased_exporter() -> None:
    text = gpu_book(hostname_label="hostname").render([reading(0)])
    assert 'hostname="sandbox-node-1"' in text and "Hostname=" not in text
    with pytest.raises(ValueError, match="Hostname or hostname"):
        gpu_book(hostname_label="host")
