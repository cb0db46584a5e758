"""End to end through a real Prometheus: it scrapes a sandbox fleet every second, the
provider queries it, and the canonical values agree with the sandbox's ground truth.

Needs Debian's ``prometheus`` binary (``apt-get install -y prometheus``, which ``.ci/run``
does); without it the test fails, it is never skipped.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from optiinfra.config import ProviderConfig
from providers import CollectionContext
from providers.prometheus import PrometheusProvider
from tests.providers.prometheus_support import (
    MODEL,
    TTFT_BUCKETS,
    bucket_range,
    dcgm_url,
    deployment,
    free_port,
    running,
    send_load,
    truth,
    url,
)

PROMETHEUS = shutil.which("prometheus") or "prometheus"  # missing: FileNotFoundError


async def _wait_for_scrapes(base: str, targets: int, timeout: float = 60.0) -> None:
    """Until Prometheus answers and has scraped every target successfully twice."""
    deadline = asyncio.get_running_loop().time() + timeout
    query = "count(count_over_time(up[1m]) >= 2 and up == 1)"
    async with httpx.AsyncClient(timeout=2) as client:
        while asyncio.get_running_loop().time() < deadline:
            try:
                answer = await client.get(f"{base}/api/v1/query", params={"query": query})
                result = answer.json()["data"]["result"]
                if result and int(float(result[0]["value"][1])) >= targets:
                    return
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            await asyncio.sleep(0.25)
    raise AssertionError(f"Prometheus at {base} did not scrape {targets} targets in {timeout} s")


def _value(frame: pd.DataFrame, instance: str, metric: str, quantile: str = "") -> float:
    rows = frame[(frame.instance == instance) & (frame.metric == metric)]
    if quantile:
        rows = rows[rows.labels.map(lambda labels: labels.get("quantile") == quantile)]
    assert len(rows) == 1, (instance, metric, quantile, rows)
    return float(rows.value.iloc[0])


def test_promql_mode_against_a_real_prometheus(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    async def main() -> dict[str, Any]:
        chat, rag = deployment("chat"), deployment("rag", "sglang")
        async with running(chat, rag) as fleet:
            names = ("chat", "rag")
            # requests first: SGLang creates its request series on first use (a series
            # Prometheus first sees mid-window loses what came before its first sample), and
            # counters well above zero keep rate() from clamping its extrapolation at zero
            await send_load([url(fleet, n) for n in names], requests=4, seed=0)
            engines = [url(fleet, n).removeprefix("http://") for n in names]
            gpu = dcgm_url(fleet, "chat").removeprefix("http://").removesuffix("/metrics")
            (tmp_path / "prometheus.yml").write_text(
                "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
                "scrape_configs:\n"
                f"  - job_name: engines\n    static_configs: [{{targets: {engines}}}]\n"
                f"  - job_name: dcgm\n    static_configs: [{{targets: ['{gpu}']}}]\n"
            )
            log = (tmp_path / "prometheus.log").open("w")
            process = await asyncio.create_subprocess_exec(
                str(PROMETHEUS), f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}", stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                await _wait_for_scrapes(base, targets=3)
                before = {n: await truth(url(fleet, n)) for n in names}
                start = datetime.now(UTC)
                await asyncio.sleep(1.5)  # a scrape inside the window before the load
                await send_load([url(fleet, n) for n in names], requests=16)
                await asyncio.sleep(2)  # a few more scrapes after the last request
                end = datetime.now(UTC)
                window = (end - start).total_seconds()
                after = {n: await truth(url(fleet, n), window) for n in names}
                config = ProviderConfig(name="prom", kind="prometheus", prometheus_url=base)
                adapter = PrometheusProvider(config, cursors=None)
                frame = await adapter.collect_metrics(CollectionContext(start=start, end=end))
            finally:
                process.terminate()
                await process.wait()
                log.close()
            return {"frame": frame, "before": before, "after": after, "engines": engines,
                    "gpu": gpu, "notes": adapter.notes, "window": window}  # fmt: skip

    got = asyncio.run(main())
    frame, window = got["frame"], got["window"]
    assert got["notes"] == []
    for (name, engine), instance in zip((("chat", "vllm"), ("rag", "sglang")), got["engines"],
                                        strict=True):  # fmt: skip
        before, after = got["before"][name], got["after"][name]
        rows = frame[frame.instance == instance]
        assert set(rows.engine) == {engine} and set(rows.deployment) == {MODEL}

        def grew(key: str, before: dict = before, after: dict = after) -> float:
            return float(after[key] - before[key])

        served = grew("finished") + (grew("aborted") if engine == "sglang" else 0)
        assert served == 16
        # rate() extrapolates what it saw to the window's edges (as if the load went on),
        # by up to about a scrape interval each side of a window only a few seconds long;
        # every counter of a target is scaled alike, so their ratios are exact
        requests = _value(frame, instance, "request_success_per_second") * window
        assert served * 0.85 <= requests <= served * 1.4
        tokens = _value(frame, instance, "prompt_tokens_per_second") * window
        assert tokens / requests == pytest.approx(grew("prompt_tokens") / served, rel=0.08)
        p50, p95, p99 = (
            _value(frame, instance, "ttft_seconds", q) for q in ("0.5", "0.95", "0.99")
        )
        assert p50 <= p95 <= p99
        for q, estimate in (("p50", p50), ("p95", p95)):
            low, high = bucket_range(TTFT_BUCKETS[engine], after["ttft_seconds"][q])
            assert low <= estimate <= high, (name, q, estimate, after["ttft_seconds"][q])
    gpu = frame[frame.instance == got["gpu"]]
    util = gpu[gpu.metric == "gpu_utilization_ratio"]
    assert len(util) == 1 and 0 < util.value.iloc[0] <= 1
    assert util.labels.iloc[0]["host"] == "sandbox-chat-0"
    assert util.labels.iloc[0]["job"] == "dcgm"
