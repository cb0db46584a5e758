"""The collection tasks' plain logic, without Prefect."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import ClassVar

import pandas as pd
import pytest

from optiinfra.config import ProviderConfig
from optiinfra.runtime import load_runtime
from providers import CollectionContext, Feature, Provider, register
from tasks.collect import (
    ProviderCollectionError,
    collect_provider_batch,
    collection_window,
    write_provider_batch,
)


@register
class _HalfBrokenProvider(Provider):
    """Metrics work; inventory fails; one metrics frame lacks a column when asked."""

    kind = "test-half-broken"
    features = frozenset({Feature.METRICS, Feature.INVENTORY})
    unsupported: ClassVar[dict[Feature, str]] = {Feature.COST: "test", Feature.ACTUATE: "test"}

    async def collect_metrics(self, ctx: CollectionContext) -> pd.DataFrame:
        frame = pd.DataFrame(
            [
                {
                    "ts": ctx.end,
                    "tenant": ctx.tenant,
                    "provider": self.name,
                    "region": "",
                    "instance": "i-1",
                    "deployment": "",
                    "engine": "",
                    "metric": "requests_running",
                    "value": 3.0,
                    "labels": {},
                    "extra_column": "ignored",
                }
            ]
        )
        if self.config.options.get("drop_column"):
            frame = frame.drop(columns=["value"])
        self.notes.append("metrics came from a test double")
        return frame

    async def collect_inventory(self, ctx: CollectionContext) -> pd.DataFrame:
        raise TimeoutError("inventory API did not answer in 5 s")


def _ctx() -> CollectionContext:
    end = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    return collection_window(ProviderConfig(name="p", kind="local", interval="15m"), end)


def test_window_spans_the_provider_interval() -> None:
    ctx = _ctx()
    assert (ctx.end - ctx.start).total_seconds() == 900


def test_a_failing_feature_makes_the_batch_partial_and_keeps_the_rest() -> None:
    batch = asyncio.run(
        collect_provider_batch(ProviderConfig(name="hb", kind="test-half-broken"), _ctx())
    )
    assert batch.status == "partial"
    assert list(batch.frames) == ["samples"]
    assert "extra_column" not in batch.frames["samples"].columns
    assert "TimeoutError" in batch.errors["instances"]
    assert batch.notes == ["metrics came from a test double"]


def test_nothing_collected_raises_so_prefect_retries() -> None:
    config = ProviderConfig(name="hb", kind="test-half-broken", options={"drop_column": True})
    with pytest.raises(ProviderCollectionError) as info:
        asyncio.run(collect_provider_batch(config, _ctx()))
    assert "value" in str(info.value) and "inventory" in str(info.value)


def test_writing_the_same_batch_twice_stores_it_once() -> None:
    batch = asyncio.run(
        collect_provider_batch(ProviderConfig(name="hb", kind="test-half-broken"), _ctx())
    )
    runtime = load_runtime()
    store = runtime.open_timeseries()
    try:
        store.ensure_schema()
    finally:
        store.close()
    first = write_provider_batch(runtime.metrics_url, batch, lock_timeout=30)
    second = write_provider_batch(runtime.metrics_url, batch, lock_timeout=30)
    assert first.status == second.status == "partial"
    assert first.samples == 1 and "inventory" in (first.error or "")
    store = runtime.open_timeseries()
    try:
        assert store.row_counts()["samples"] == 1
    finally:
        store.close()
