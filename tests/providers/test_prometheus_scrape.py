"""Direct scrape against a real sandbox fleet: values against its ground truth, scrape
cursors in a real state store, and fault isolation over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from optiinfra.config import ProviderConfig
from optiinfra.store.state import Cursor, load_cursors, open_state, save_cursors
from providers import CollectionContext, get_provider_class
from providers.prometheus import CollectionFailed, PrometheusProvider
from tests.providers.prometheus_support import (
    MODEL,
    TTFT_BUCKETS,
    bucket_range,
    dcgm_url,
    deployment,
    misbehaving,
    refused_url,
    running,
    send_load,
    truth,
    url,
)

NOW = datetime.now(UTC)


@asynccontextmanager
async def refused() -> AsyncIterator[str]:
    with refused_url() as base:
        yield f"{base}/metrics"


CTX = CollectionContext(start=NOW - timedelta(minutes=15), end=NOW)


def _value(frame: pd.DataFrame, instance: str, metric: str, quantile: str = "") -> float:
    rows = frame[(frame.instance == instance) & (frame.metric == metric)]
    if quantile:
        rows = rows[rows.labels.map(lambda labels: labels.get("quantile") == quantile)]
    assert len(rows) == 1, (instance, metric, quantile, rows)
    return float(rows.value.iloc[0])


def _instance(base: str) -> str:
    return base.removeprefix("http://")


def test_direct_scrape_matches_the_sandbox_ground_truth(tmp_path: Path) -> None:
    store = open_state(f"sqlite:///{tmp_path / 'state.db'}")

    async def main() -> dict[str, Any]:
        chat, rag = deployment("chat"), deployment("rag", "sglang", pipeline_parallel_size=2)
        async with running(chat, rag) as fleet:
            config = ProviderConfig(
                name="sandbox", kind="prometheus", region="lab", labels={"env": "test"},
                metrics_urls=[url(fleet, "chat"), f"{url(fleet, 'rag')}/metrics"],
                dcgm_url=dcgm_url(fleet, "chat"),
                options={"scrape_settle_seconds": 0.2},
            )  # fmt: skip
            adapter = get_provider_class("prometheus")(config, cursors=store)
            first = await adapter.collect_metrics(CTX)
            await send_load([url(fleet, "chat"), url(fleet, "rag")], requests=16)
            truths = {n: await truth(url(fleet, n)) for n in ("chat", "rag")}
            again = PrometheusProvider(config, cursors=store)  # each run builds its own
            second = await again.collect_metrics(CTX)
            return {
                "first": first, "second": second, "truth": truths,
                "status": {s.url: s for s in again.target_status}, "notes": again.notes,
                "urls": {n: url(fleet, n) for n in ("chat", "rag")},
                "dcgm": dcgm_url(fleet, "chat"),
            }  # fmt: skip

    try:
        got = asyncio.run(main())
        cursors = load_cursors(store, "sandbox")
    finally:
        store.close()
    first, second, status = got["first"], got["second"], got["status"]
    assert got["notes"] == []
    assert {s.status for s in status.values()} == {"ok"}
    assert len(cursors) == 3 and all(len(str(c.payload)) < 20_000 for c in cursors.values())
    # the first collection already has rates (second reading after the settle time)
    chat_i, rag_i = _instance(got["urls"]["chat"]), _instance(got["urls"]["rag"])
    assert _value(first, chat_i, "request_success_per_second") == 0.0
    for name, engine, instance in (("chat", "vllm", chat_i), ("rag", "sglang", rag_i)):
        real = got["truth"][name]
        window = status[f"{got['urls'][name]}/metrics"].window_seconds
        assert window is not None and window > 0.2  # the stored reading opened the window
        served = real["finished"] + (real["aborted"] if engine == "sglang" else 0)
        assert served == 16
        assert _value(second, instance, "request_success_per_second") * window == pytest.approx(
            served
        )
        for metric, key in (("prompt_tokens_per_second", "prompt_tokens"),
                            ("generation_tokens_per_second", "generation_tokens")):  # fmt: skip
            assert _value(second, instance, metric) * window == pytest.approx(real[key])
        p50, p95, p99 = (
            _value(second, instance, "ttft_seconds", q) for q in ("0.5", "0.95", "0.99")
        )
        assert p50 <= p95 <= p99
        for q, estimate in (("p50", p50), ("p95", p95), ("p99", p99)):
            low, high = bucket_range(TTFT_BUCKETS[engine], real["ttft_seconds"][q])
            assert low <= estimate <= high, (name, q, estimate, real["ttft_seconds"][q])
        rows = second[second.instance == instance]
        assert set(rows.engine) == {engine} and set(rows.deployment) == {MODEL}
        assert _value(second, instance, "requests_running") == 0  # one pipeline copy, idle
        assert 0 <= _value(second, instance, "kv_cache_usage_ratio") <= 1
    gpu = second[second.instance == _instance(got["dcgm"].removesuffix("/metrics"))]
    util = gpu[gpu.metric == "gpu_utilization_ratio"]
    assert len(util) == 1 and 0 < util.value.iloc[0] <= 1
    assert util.labels.iloc[0]["host"] == "sandbox-chat-0" and util.engine.iloc[0] == ""
    assert set(second.region) == {"lab"} and set(second.provider) == {"sandbox"}
    assert all(labels["env"] == "test" for labels in second.labels)
    assert not any("model_name" in labels or "le" in labels for labels in second.labels)


def test_a_restarted_or_stale_target_is_read_twice(tmp_path: Path) -> None:
    store = open_state(f"sqlite:///{tmp_path / 'state.db'}")

    async def main() -> tuple[pd.DataFrame, list, dict[str, Cursor], str]:
        async with running(deployment("chat")) as fleet:
            base = url(fleet, "chat")
            config = ProviderConfig(name="p", kind="prometheus", metrics_urls=[base],
                                    options={"scrape_settle_seconds": 0.1})  # fmt: skip
            await PrometheusProvider(config, cursors=store).collect_metrics(CTX)
            stored = load_cursors(store, "p")[f"{base}/metrics"]
            bumped = {
                **stored.payload,
                "groups": [{**g, "values": {k: v + 1e6 for k, v in g["values"].items()}}
                           for g in stored.payload["groups"]],
            }  # fmt: skip
            save_cursors(store, "p", [Cursor(stored.target, stored.scraped_at, bumped)])
            adapter = PrometheusProvider(config, cursors=store)
            frame = await adapter.collect_metrics(CTX)
            return frame, adapter.target_status, load_cursors(store, "p"), base

    try:
        frame, status, after, base = asyncio.run(main())
    finally:
        store.close()
    # the counters "went down": a second reading replaced the stored one, no negative rate
    assert status[0].status == "ok" and status[0].window_seconds is not None
    assert (frame[frame.metric == "request_success_per_second"].value == 0).all()
    assert all(v < 1e6 for g in after[f"{base}/metrics"].payload["groups"]
               for v in g["values"].values())  # fmt: skip


def test_without_settle_or_cursors_the_first_reading_is_gauges_only() -> None:
    async def main() -> tuple[pd.DataFrame, list[str]]:
        async with running(deployment("chat")) as fleet:
            config = ProviderConfig(name="p", kind="prometheus", metrics_urls=[url(fleet, "chat")],
                                    options={"scrape_settle_seconds": 0})  # fmt: skip
            adapter = PrometheusProvider(config, cursors=None)
            return await adapter.collect_metrics(CTX), adapter.notes

    frame, notes = asyncio.run(main())
    assert set(frame.metric) == {"requests_running", "requests_waiting", "kv_cache_usage_ratio"}
    assert len(notes) == 1 and "first reading: rates and quantiles from the next" in notes[0]


def test_one_bad_target_never_hides_the_others() -> None:
    async def main() -> tuple[pd.DataFrame, PrometheusProvider, str]:
        async with (
            running(deployment("chat")) as fleet,
            refused() as down,
            misbehaving("html") as html, misbehaving("hang") as hang,
            misbehaving("malformed") as malformed, misbehaving("error") as error,
        ):  # fmt: skip
            good = f"{url(fleet, 'chat')}/metrics"
            config = ProviderConfig(
                name="p", kind="prometheus",
                metrics_urls=[good, down, html, hang, malformed, error],
                options={"scrape_settle_seconds": 0, "target_timeout_seconds": 2},
            )  # fmt: skip
            adapter = PrometheusProvider(config, cursors=None)
            frame = await adapter.collect_metrics(CTX)
            causes = {s.url: (s.status, s.error) for s in adapter.target_status}
            bad = ProviderConfig(name="q", kind="prometheus", metrics_urls=[down, html, error],
                                 options={"target_timeout_seconds": 2})  # fmt: skip
            with pytest.raises(CollectionFailed) as failed:
                await PrometheusProvider(bad, cursors=None).collect_metrics(CTX)
            return frame, causes, str(failed.value), good, {
                "html": html, "hang": hang, "malformed": malformed, "error": error, "down": down,
            }  # fmt: skip

    frame, causes, failure, good, urls = asyncio.run(main())
    down = urls["down"]
    assert set(frame.instance) == {_instance(good.removesuffix("/metrics"))}
    assert causes[good] == ("ok", None)
    expected = {
        down: "connection refused",
        urls["html"]: "text/html, not the Prometheus text format",
        urls["hang"]: "timed out after 2 s",
        urls["malformed"]: "not valid Prometheus text",
        urls["error"]: "HTTP 500",
    }
    for target, cause in expected.items():
        status, error = causes[target]
        assert status == "failed" and cause in (error or ""), (target, error)
    assert "provider q: every source failed" in failure
    for target in (down, urls["html"], urls["error"]):
        assert target in failure


def test_cursors_go_to_the_state_store_the_run_names(tmp_path: Path) -> None:
    state_url = f"sqlite:///{tmp_path / 'run-state.db'}"

    async def main() -> tuple[list[str], list[str], str]:
        async with running(deployment("chat")) as fleet:
            config = ProviderConfig(name="p", kind="prometheus", metrics_urls=[url(fleet, "chat")],
                                    options={"scrape_settle_seconds": 0.1})  # fmt: skip
            named = CollectionContext(CTX.start, CTX.end, extra={"state_url": state_url})
            ok = PrometheusProvider(config)
            await ok.collect_metrics(named)
            broken = CollectionContext(CTX.start, CTX.end, extra={"state_url": "sqlite://"})
            degraded = PrometheusProvider(config)
            frame = await degraded.collect_metrics(broken)
            return ok.notes, degraded.notes, ",".join(sorted(set(frame.metric)))

    good_notes, degraded_notes, metrics = asyncio.run(main())
    store = open_state(state_url)
    try:
        assert len(load_cursors(store, "p")) == 1
    finally:
        store.close()
    assert good_notes == []
    # a state store that cannot be opened costs the cursor, not the collection
    assert any("scrape cursors unavailable" in n for n in degraded_notes)
    assert "request_success_per_second" in metrics and "ttft_seconds" not in metrics
