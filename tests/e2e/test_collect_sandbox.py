"""End to end: a sandbox fleet under load, a real Prometheus scraping it, the collection
flow, the store — and the sandbox's ground truth to check what was stored.

Two deployments: ``pressure`` (long prompts on a 24 GB A10G: KV-cache pressure and
preemptions) and ``fast`` (short prompts on an H100). ``fast``'s load keeps its true p95
TTFT around 60-90 ms, where vLLM's TTFT buckets are 20 ms wide: Prometheus interpolates
within a bucket, so a p95 in the 0.1-0.25 s bucket could not be estimated within 20 %.
The same collection is run through Prometheus and, with no Prometheus, by scraping the
servers directly.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flows.collect import collect_flow
from optiinfra.runtime import load_runtime
from optiinfra.sandbox.spec import DeploymentSpec, FleetSpec, SandboxSettings
from optiinfra.store.timeseries import open_timeseries
from tests.e2e.prometheus_server import prometheus, wait_for_targets
from tests.e2e.sandbox_thread import SandboxThread, sandbox_thread

pytestmark = pytest.mark.prefect

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
LOAD_SECONDS = 25.0


def _fleet() -> FleetSpec:
    pressure = DeploymentSpec.model_validate({
        "name": "pressure", "model": MODEL, "gpu": "A10G",
        "engine_args": {"max_model_len": 16384, "max_num_seqs": 128},
        "load": {"kind": "poisson", "rps": 1.0, "prompt_tokens": 6000, "output_tokens": 300},
    })  # fmt: skip
    fast = DeploymentSpec.model_validate({
        "name": "fast", "model": MODEL, "gpu": "H100",
        "engine_args": {"max_model_len": 8192},
        "load": {"kind": "poisson", "rps": 3.0, "prompt_tokens": 1000, "output_tokens": 64},
    })  # fmt: skip
    return FleetSpec(sandbox=SandboxSettings(seed=3, noise=0.05), deployments=[pressure, fast])


def _targets(sandbox: SandboxThread) -> dict[str, tuple[str, str]]:
    """deployment → (engine host:port, DCGM host:port) of its one replica."""
    assert sandbox.fleet is not None
    return {
        name: (f"127.0.0.1:{servers[0].port}", f"127.0.0.1:{servers[0].dcgm_port}")
        for name, servers in sandbox.fleet.servers.items()
    }


def _truth(sandbox: SandboxThread, deployment: str, window: float) -> dict[str, Any]:
    assert sandbox.fleet is not None
    server = sandbox.fleet.servers[deployment][0]
    return sandbox.call(lambda: server.engine.truth.summary(server.now(), window))


def _stored(provider: str) -> pd.DataFrame:
    runtime = load_runtime(None)
    store = open_timeseries(runtime.metrics_url)
    try:
        frame = store.recent_samples(
            since=pd.Timestamp.now("UTC") - pd.Timedelta("1h"), provider=provider
        )
    finally:
        store.close()
    frame["labels"] = [
        labels if isinstance(labels, dict) else json.loads(labels or "{}")
        for labels in frame["labels"]
    ]
    return frame


def _value(frame: pd.DataFrame, instance: str, metric: str, **labels: str) -> float:
    rows = frame[(frame["instance"] == instance) & (frame["metric"] == metric)]
    rows = rows[[all(got.get(k) == v for k, v in labels.items()) for got in rows["labels"]]]
    assert len(rows), f"no {metric} {labels} for {instance}"
    return float(rows.sort_values("ts")["value"].iloc[-1])


def _config(tmp_path: Path, entry: str) -> str:
    path = tmp_path / "providers.yaml"
    path.write_text("version: 1\nproviders:\n" + entry)
    return str(path)


def test_collection_through_a_real_prometheus_matches_the_sandbox_truth(
    prefect_harness: None, tmp_path: Path
) -> None:
    with sandbox_thread(_fleet()) as sandbox:
        targets = _targets(sandbox)
        jobs = {
            "engines": [t[0] for t in targets.values()],
            "dcgm": [t[1] for t in targets.values()],
        }
        with prometheus(tmp_path / "prometheus", jobs) as url:
            wait_for_targets(url, 4)
            time.sleep(LOAD_SECONDS)
            config = _config(
                tmp_path,
                f"  - name: prom\n    kind: prometheus\n    prometheus_url: {url}\n"
                "    interval: 30s\n",
            )
            state = collect_flow(config_path=config, return_state=True)
            truth_fast = _truth(sandbox, "fast", 30)
            truth_pressure = _truth(sandbox, "pressure", 30)
    assert state.is_completed(), state
    summary = state.result()
    assert summary.results[0].status == "ok", summary.results[0]
    stored = _stored("prom")
    fast, pressure = targets["fast"][0], targets["pressure"][0]

    assert truth_pressure["preemptions"] > 0
    assert _value(stored, pressure, "preemptions_per_second") > 0
    assert _value(stored, fast, "preemptions_per_second") == 0

    p50 = _value(stored, fast, "ttft_seconds", quantile="0.5")
    p95 = _value(stored, fast, "ttft_seconds", quantile="0.95")
    assert p95 > p50
    assert abs(p95 - truth_fast["ttft_seconds"]["p95"]) <= 0.2 * truth_fast["ttft_seconds"]["p95"]
    assert _value(stored, fast, "generation_tokens_per_second") > 0
    gpu = stored[stored["metric"] == "gpu_utilization_ratio"]
    assert set(gpu["instance"]) >= {targets["fast"][1], targets["pressure"][1]}


def test_the_same_collection_works_by_direct_scrape(prefect_harness: None, tmp_path: Path) -> None:
    with sandbox_thread(_fleet()) as sandbox:
        targets = _targets(sandbox)
        urls = [f"http://{t}/metrics" for pair in targets.values() for t in pair]
        entry = (
            "  - name: direct\n    kind: prometheus\n    interval: 30s\n"
            "    options: {scrape_settle_seconds: 2}\n    metrics_urls:\n"
            + "".join(f"      - {u}\n" for u in urls)
        )
        config = _config(tmp_path, entry)
        first = collect_flow(config_path=config, return_state=True)  # leaves a cursor
        time.sleep(LOAD_SECONDS)
        second = collect_flow(config_path=config, return_state=True)
        truth_pressure = _truth(sandbox, "pressure", 60)
    assert first.is_completed() and second.is_completed()
    assert second.result().results[0].status == "ok", second.result().results[0]
    stored = _stored("direct")
    assert truth_pressure["preemptions"] > 0
    assert _value(stored, targets["pressure"][0], "preemptions_per_second") > 0
    assert _value(stored, targets["fast"][0], "requests_running") >= 0
    p50 = _value(stored, targets["fast"][0], "ttft_seconds", quantile="0.5")
    p95 = _value(stored, targets["fast"][0], "ttft_seconds", quantile="0.95")
    assert 0 < p50 <= p95
