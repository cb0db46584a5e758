"""Quality probes against a real sandbox fleet over real sockets (the issue's acceptance:
probes measure the accuracy a configuration was given, and a degraded one scores lower).

Each test starts the fleet in its own event loop, writes a golden set from the sandbox's
bundled question set, and runs the ``quality`` provider as the collection task would.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from optiinfra.config import ProviderConfig
from optiinfra.models import QualityEvent
from optiinfra.runtime import load_runtime
from optiinfra.sandbox.fleet import Fleet
from optiinfra.sandbox.quality import QualityConfig, bundled_items, error_probability
from optiinfra.sandbox.server import CONFIG_ID_HEADER as SANDBOX_CONFIG_ID_HEADER
from optiinfra.sandbox.spec import DeploymentSpec, FleetSpec, SandboxSettings
from providers import CollectionContext, get_provider_class
from providers.quality import CONFIG_ID_HEADER, QualityCollectionError, QualityProvider
from tasks.collect import collect_provider_batch, write_provider_batch

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
END = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CTX = CollectionContext(start=END - timedelta(minutes=15), end=END, tenant="acme")


def _deployment(name: str, quantization: str = "none") -> DeploymentSpec:
    args = {"max_model_len": 8192, "quantization": quantization}
    return DeploymentSpec.model_validate(
        {"name": name, "model": MODEL, "gpu": "H100", "engine_args": args}
    )


@asynccontextmanager
async def fleet(*deployments: DeploymentSpec) -> AsyncIterator[Fleet]:
    spec = FleetSpec(sandbox=SandboxSettings(noise=0.0, seed=11), deployments=list(deployments))
    running = Fleet(spec)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def golden_file(tmp_path: Path) -> Path:
    """The sandbox's bundled questions as a golden set (chat prompts for half of them)."""
    path = tmp_path / "golden.jsonl"
    lines = []
    for index, item in enumerate(bundled_items()):
        prompt: Any = item.question
        if index % 2:
            prompt = [{"role": "user", "content": item.question}]
        record = {"id": item.id, "prompt": prompt, "reference": item.answer}
        if item.aliases:
            record["aliases"] = list(item.aliases)
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def provider_config(golden: Path, targets: list[dict[str, Any]], **quality: Any) -> ProviderConfig:
    settings = {"golden_set": str(golden), "targets": targets, "concurrency": 32, **quality}
    return ProviderConfig(name="answers", kind="quality", tenant="acme", quality=settings)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _collect(config: ProviderConfig) -> tuple[pd.DataFrame, list[str]]:
    provider = QualityProvider(config)
    try:
        frame = await provider.collect_quality(CTX)
    finally:
        await provider.aclose()
    return frame, provider.notes


def test_the_sandbox_config_header_is_the_one_probes_read() -> None:
    assert CONFIG_ID_HEADER == SANDBOX_CONFIG_ID_HEADER
    assert get_provider_class("quality") is QualityProvider


def test_probes_measure_the_configured_accuracy_and_the_degraded_config_scores_lower(
    tmp_path: Path,
) -> None:
    items = bundled_items()

    async def main() -> tuple[pd.DataFrame, list[str], dict[str, str]]:
        async with fleet(_deployment("healthy"), _deployment("degraded", "int4")) as f:
            targets = [
                {
                    "deployment": name,
                    "base_url": f.endpoint(f.servers[name][0]) + "/v1",
                    "model": MODEL,
                    "config_id": "configured-fallback",
                }
                for name in ("healthy", "degraded")
            ]
            config = provider_config(golden_file(tmp_path), targets, probes_per_run=len(items))
            frame, notes = await _collect(config)
            ids = {name: f.servers[name][0].config_id for name in ("healthy", "degraded")}
            return frame, notes, ids

    frame, notes, config_ids = asyncio.run(main())
    assert notes == []
    assert list(frame.columns) == list(QualityEvent.COLUMNS)
    n = len(items)
    accuracy = frame.groupby("deployment")["exact_match"].mean()
    for name, quantization in (("healthy", "none"), ("degraded", "int4")):
        rows = frame[frame.deployment == name]
        assert len(rows) == n and rows.item_id.nunique() == n  # every item, once
        p = error_probability(QualityConfig(MODEL, quantization=quantization))
        assert abs(accuracy[name] - (1 - p)) < 4 * math.sqrt(p * (1 - p) / n), (name, accuracy)
        assert set(rows.config_id) == {config_ids[name]}  # from the header, not the fallback
    assert accuracy["degraded"] < accuracy["healthy"]
    assert (frame.f1 >= frame.exact_match).all()  # F1 is never below EM
    assert frame.judge_score.isna().all()  # no judge configured
    assert (frame.latency_seconds > 0).all()
    assert set(frame.kind) == {"probe"} and set(frame.tenant) == {"acme"}
    assert set(frame.provider) == {"answers"}


def test_a_target_that_is_down_is_reported_and_the_others_are_probed(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}/v1"

    async def main() -> tuple[pd.DataFrame, list[str]]:
        async with fleet(_deployment("chat")) as f:
            url = f.endpoint(f.servers["chat"][0]) + "/v1"
            targets = [
                {"deployment": "chat", "base_url": url},  # model from GET /v1/models
                {"deployment": "chat-legacy", "base_url": url, "api": "completions"},
                {"deployment": "gone", "base_url": dead, "model": MODEL},
            ]
            return await _collect(provider_config(golden_file(tmp_path), targets, probes_per_run=8))

    frame, notes = asyncio.run(main())
    assert frame.groupby("deployment").size().to_dict() == {"chat": 8, "chat-legacy": 8}
    assert set(frame[frame.deployment == "chat"].item_id) == set(
        frame[frame.deployment == "chat-legacy"].item_id
    )  # every target gets the same items in a run
    assert len(notes) == 1
    assert "quality target gone" in notes[0] and dead in notes[0] and "is down" in notes[0]


def test_every_target_down_fails_the_collection_with_each_cause(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}/v1"
    targets = [{"deployment": "gone", "base_url": dead, "model": MODEL}]
    config = provider_config(golden_file(tmp_path), targets, probes_per_run=4)
    with pytest.raises(QualityCollectionError) as info:
        asyncio.run(_collect(config))
    assert "answers" in str(info.value) and "no target answered" in str(info.value)


def test_a_bad_golden_set_fails_with_file_line_and_field(tmp_path: Path) -> None:
    golden = tmp_path / "golden.jsonl"
    golden.write_text('{"id": "q", "prompt": "Q?"}\n', encoding="utf-8")
    targets = [{"deployment": "x", "base_url": "http://127.0.0.1:9/v1", "model": MODEL}]
    with pytest.raises(QualityCollectionError) as info:
        asyncio.run(_collect(provider_config(golden, targets)))
    assert f"{golden}:1: reference: required" in str(info.value)


def test_the_collection_task_writes_quality_events_to_the_store(tmp_path: Path) -> None:
    async def main() -> Any:
        async with fleet(_deployment("chat")) as f:
            url = f.endpoint(f.servers["chat"][0]) + "/v1"
            targets = [{"deployment": "chat", "base_url": url, "model": MODEL}]
            config = provider_config(golden_file(tmp_path), targets, probes_per_run=6)
            return await collect_provider_batch(config, CTX)

    batch = asyncio.run(main())
    assert batch.errors == {} and len(batch.frames["quality_events"]) == 6
    runtime = load_runtime()
    result = write_provider_batch(runtime.metrics_url, batch, lock_timeout=30)
    again = write_provider_batch(runtime.metrics_url, batch, lock_timeout=30)
    assert (result.quality_events, result.status) == (6, "ok") and again.quality_events == 6

    from optiinfra.store.timeseries import open_timeseries

    store = open_timeseries(runtime.metrics_url, lock_timeout=30)
    try:
        stored = store.query_df(
            "SELECT deployment, kind, exact_match, f1 FROM quality_events FINAL"
        )
    finally:
        store.close()
    assert len(stored) == 6  # written twice, stored once
    assert set(stored.deployment) == {"chat"} and set(stored.kind) == {"probe"}
    assert stored.exact_match.notna().all() and stored.f1.notna().all()
