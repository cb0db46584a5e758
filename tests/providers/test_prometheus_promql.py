"""PromQL mode against a local stand-in speaking Prometheus's HTTP API over a real socket.

The stand-in answers ``/api/v1/label/__name__/values`` with a fixed list and
``/api/v1/query`` from canned vectors chosen by the metric a query names, and records
every request, so the tests check the queries themselves as well as what the provider
makes of the answers. (The end-to-end test against a real Prometheus is separate.)
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from optiinfra.config import ProviderConfig
from providers import CollectionContext
from providers.prometheus import CollectionFailed, PrometheusProvider
from tests.providers.prometheus_support import refused_url, static_server

DATA = Path(__file__).resolve().parents[1] / "data" / "exposition"
END = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CTX = CollectionContext(start=END - timedelta(minutes=15), end=END)
R = "max without (tp_rank, pp_rank, moe_ep_rank)"
A = {"instance": "10.0.0.5:8000", "job": "vllm", "model_name": "m"}
GPU_AT = "10.0.0.5:9400"  # a label only: nothing connects to it
GPU = {"instance": GPU_AT, "job": "dcgm", "gpu": "0", "UUID": "GPU-1",
       "modelName": "NVIDIA L4", "Hostname": "node-5"}  # fmt: skip

NAMES = [
    "vllm:num_requests_running", "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
    "vllm:prompt_tokens_total", "vllm:time_to_first_token_seconds_bucket",
    "vllm:time_to_first_token_seconds_sum", "vllm:prefix_cache_hits_total",
    "vllm:prefix_cache_queries_total", "vllm:request_queue_time_seconds_bucket",
    "tgi_request_success", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
]  # fmt: skip


def vector(labels: dict[str, str], value: str) -> dict[str, Any]:
    return {"metric": labels, "value": [END.timestamp(), value]}


def answer(query: str, gpu_instance: str = GPU_AT) -> tuple[int, dict[str, Any]]:
    """What the stand-in Prometheus says to one query."""
    gpu = {**GPU, "instance": gpu_instance}
    if "vllm:request_queue_time_seconds" in query:
        return 400, {"status": "error", "errorType": "bad_data",
                     "error": "1:14: parse error: unexpected character"}  # fmt: skip
    q = re.match(r"histogram_quantile\(([\d.]+),", query)
    canned = {
        "vllm:num_requests_running": [vector(A, "3")],
        "vllm:kv_cache_usage_perc": [vector(A, "0.5")],
        "vllm:gpu_cache_usage_perc": [vector(A, "0.9")],
        "vllm:prompt_tokens_total": [vector(A, "1250.5")],
        "vllm:time_to_first_token_seconds": [vector(A, str(float(q.group(1)) if q else 0))],
        "vllm:prefix_cache_hits_total": [vector(A, "0.25")],
        "tgi_request_success": [vector({"instance": "10.0.0.6:80"}, "NaN")],
        "DCGM_FI_DEV_GPU_UTIL": [vector(gpu, "87")],
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": [vector(gpu, "312000")],
    }
    for name, result in canned.items():
        if name in query:
            return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}
    return 200, {"status": "success", "data": {"resultType": "vector", "result": []}}


class Server(ThreadingHTTPServer):
    # the default listen backlog (5) drops the SYNs of a burst of parallel queries,
    # which then wait a second for the retransmission
    request_queue_size = 256


@dataclass
class StandIn:
    url: str
    requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = field(default_factory=list)

    def queries(self) -> list[str]:
        return [p["query"][0] for path, p, _ in self.requests if path.endswith("/query")]


@pytest.fixture
def prometheus() -> Iterator[Callable[..., StandIn]]:
    servers: list[Server] = []

    def start(
        names: list[str] = NAMES, mode: str = "prometheus", gpu_instance: str = GPU_AT
    ) -> StandIn:
        standin = StandIn(url="")

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                params = parse_qs(parts.query)
                standin.requests.append((parts.path, params, dict(self.headers)))
                if mode == "html":
                    status, body, kind = 200, b"<html>login</html>", "text/html"
                elif mode == "unauthorized":
                    status, body, kind = 401, b'{"status":"error","error":"no"}', "application/json"
                elif parts.path == "/api/v1/label/__name__/values":
                    status, kind = 200, "application/json"
                    body = json.dumps({"status": "success", "data": names}).encode()
                else:
                    status, payload = answer(params["query"][0], gpu_instance)
                    body, kind = json.dumps(payload).encode(), "application/json"
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = Server(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        standin.url = f"http://127.0.0.1:{server.server_address[1]}"
        return standin

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _collect(config: ProviderConfig) -> tuple[pd.DataFrame, PrometheusProvider]:
    adapter = PrometheusProvider(config, cursors=None)
    return asyncio.run(adapter.collect_metrics(CTX)), adapter


def _value(frame: pd.DataFrame, metric: str, **labels: str) -> float:
    rows = frame[frame.metric == metric]
    rows = rows[rows.labels.map(lambda got: all(got.get(k) == v for k, v in labels.items()))]
    assert len(rows) == 1, (metric, labels, rows)
    return float(rows.value.iloc[0])


def test_queries_have_the_documented_shapes(prometheus: Callable[..., StandIn]) -> None:
    standin = prometheus()
    _collect(ProviderConfig(name="prom", kind="prometheus", prometheus_url=standin.url))
    queries = set(standin.queries())
    g = "instance, model_name"
    assert f"sum by ({g}) ({R} (avg_over_time(vllm:num_requests_running[900s])))" in queries
    assert f"avg by ({g}) ({R} (avg_over_time(vllm:kv_cache_usage_perc[900s])))" in queries
    assert f"sum by ({g}) ({R} (rate(vllm:prompt_tokens_total[900s])))" in queries
    for q in ("0.5", "0.95", "0.99"):
        assert (f"histogram_quantile({q}, sum by ({g}, le) ({R} "
                "(rate(vllm:time_to_first_token_seconds_bucket[900s]))))") in queries  # fmt: skip
    hits, lookups = "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"
    ratio = f"sum by ({g}) ({R} (rate({hits}[900s]))) / sum by ({g}) ({R} (rate({lookups}[900s])))"
    assert ratio in queries
    assert "avg_over_time(DCGM_FI_DEV_GPU_UTIL[900s])" in queries
    assert "rate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[900s])" in queries
    assert f"sum by ({g}) ({R} (rate(tgi_request_success[900s])))" in queries  # no _total
    assert not any("sglang" in q or "node_" in q for q in queries)  # names not on the server
    listing, params, _ = standin.requests[0]
    assert listing == "/api/v1/label/__name__/values"
    assert params["start"] == [f"{CTX.start.timestamp():.3f}"]
    assert params["end"] == [f"{END.timestamp():.3f}"] and "vllm:.+" in params["match[]"][0]
    times = {p["time"][0] for path, p, _ in standin.requests if path.endswith("/query")}
    assert times == {f"{END.timestamp():.3f}"}


def test_answers_become_canonical_samples(prometheus: Callable[..., StandIn]) -> None:
    standin = prometheus()
    config = ProviderConfig(name="prom", kind="prometheus", prometheus_url=standin.url,
                            tenant="acme", labels={"team": "ml"})  # fmt: skip
    frame, adapter = _collect(config)
    vllm = frame[frame.instance == "10.0.0.5:8000"]
    assert set(vllm.deployment) == {"m"} and set(vllm.engine) == {"vllm"}
    assert set(frame.ts) == {END} and set(frame.tenant) == {"acme"}
    assert _value(vllm, "requests_running") == 3
    assert _value(vllm, "kv_cache_usage_ratio") == 0.5  # the new name wins over the old
    assert _value(vllm, "prompt_tokens_per_second") == 1250.5
    assert _value(vllm, "prefix_cache_hit_ratio") == 0.25
    assert [_value(vllm, "ttft_seconds", quantile=q) for q in ("0.5", "0.95", "0.99")] == [
        0.5, 0.95, 0.99,
    ]  # fmt: skip
    assert all(labels.get("job") == "vllm" and labels["team"] == "ml" for labels in vllm.labels)
    gpu = frame[frame.instance == GPU_AT]
    assert _value(gpu, "gpu_utilization_ratio", gpu="0", uuid="GPU-1", host="node-5") == 0.87
    assert _value(gpu, "gpu_power_watts", model="NVIDIA L4") == 312.0  # mJ/s → W
    assert "10.0.0.6:80" not in set(frame.instance)  # NaN answers are dropped
    failed = [n for n in adapter.notes if "vllm:request_queue_time_seconds" in n]
    assert len(failed) == 3  # one per quantile; the other queries still answered
    assert all("HTTP 400: 1:14: parse error" in note for note in failed)
    status = adapter.target_status[0]
    assert status.url == standin.url and status.status == "partial"
    assert status.sources == ("vllm", "tgi", "dcgm")


def test_direct_targets_replace_their_promql_series(prometheus: Callable[..., StandIn]) -> None:
    capture = (DATA / "dcgm_exporter_kops_l4.prom").read_text()
    with static_server(capture) as exporter, static_server("<html/>", "text/html") as broken:
        gpu_at = exporter.removeprefix("http://")
        standin = prometheus(gpu_instance=gpu_at)
        config = ProviderConfig(name="prom", kind="prometheus", prometheus_url=standin.url,
                                metrics_urls=[f"{broken}/metrics"])  # fmt: skip
        frame, adapter = _collect(config)  # the direct target fails: PromQL rows remain
        assert {"10.0.0.5:8000", gpu_at} <= set(frame.instance)
        assert any(broken in n and "text/html" in n for n in adapter.notes)
        config = ProviderConfig(name="prom", kind="prometheus", prometheus_url=standin.url,
                                dcgm_url=f"{exporter}/metrics",
                                options={"scrape_settle_seconds": 0})  # fmt: skip
        frame, _ = _collect(config)
    gpu = frame[frame.instance == gpu_at]
    # the direct reading of the exporter replaced Prometheus's answer (87 %, node-5)
    assert _value(gpu, "gpu_utilization_ratio") == 0.0
    assert set(gpu.labels.map(lambda labels: labels["host"])) == {"i-030791dc5a37cd257"}
    assert "10.0.0.5:8000" in set(frame.instance)


def test_engine_option_narrows_the_queries(prometheus: Callable[..., StandIn]) -> None:
    standin = prometheus(names=[*NAMES, "sglang:num_running_reqs"])
    config = ProviderConfig(name="prom", kind="prometheus", prometheus_url=standin.url,
                            options={"engine": "sglang"})  # fmt: skip
    _collect(config)
    queries = standin.queries()
    assert any("sglang:num_running_reqs" in q for q in queries)
    assert not any("vllm:" in q or "tgi_" in q for q in queries)
    assert any("DCGM_FI_DEV_GPU_UTIL" in q for q in queries)


def test_a_prometheus_that_is_down_fails_the_provider_naming_the_url() -> None:
    with refused_url() as url, pytest.raises(CollectionFailed) as failed:
        _collect(ProviderConfig(name="prom", kind="prometheus", prometheus_url=url))
    assert f"provider prom: Prometheus API {url} is unreachable: connection refused" in str(
        failed.value
    )


@pytest.mark.parametrize(
    ("mode", "cause"),
    [("html", "did not answer like a Prometheus API"), ("unauthorized", "HTTP 401: no")],
)
def test_an_api_that_is_not_prometheus_or_refuses(
    prometheus: Callable[..., StandIn], mode: str, cause: str
) -> None:
    standin = prometheus(mode=mode)
    with pytest.raises(CollectionFailed, match=re.escape(cause)):
        _collect(ProviderConfig(name="prom", kind="prometheus", prometheus_url=standin.url))


def test_bearer_token_is_sent_and_never_shown(
    prometheus: Callable[..., StandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROM_TOKEN", "s3cret-value")
    standin = prometheus()
    config = ProviderConfig(name="prom", kind="prometheus", prometheus_url=standin.url,
                            credentials={"bearer_token": "PROM_TOKEN"})  # fmt: skip
    frame, adapter = _collect(config)
    assert {h.get("Authorization") for _, _, h in standin.requests} == {"Bearer s3cret-value"}
    shown = " ".join(adapter.notes) + repr(adapter.target_status) + frame.to_string()
    assert "s3cret" not in shown
    refusing = prometheus(mode="unauthorized")
    config = config.model_copy(update={"prometheus_url": refusing.url})
    with pytest.raises(CollectionFailed) as failed:
        _collect(config)
    assert "s3cret" not in str(failed.value)
