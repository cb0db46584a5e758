"""load_context against a real embedded store: what the four+one queries return."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from agents.context import ContextWindow, load_context
from optiinfra.config import OptiInfraConfig
from optiinfra.models import Instance, Sample
from optiinfra.store.timeseries import open_timeseries

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path):
    opened = open_timeseries(f"chdb://{tmp_path / 'metrics'}")
    opened.ensure_schema()
    yield opened
    opened.close()


def _samples(hours: int) -> pd.DataFrame:
    rows = []
    for h in range(hours):
        for minute in range(0, 60, 15):
            ts = NOW - timedelta(hours=hours - h) + timedelta(minutes=minute)
            for instance, rate in (("a-0", 1.0 + h), ("a-1", 2.0)):
                for metric, value in (
                    ("request_success_per_second", rate),
                    ("requests_running", 4.0),
                    ("requests_waiting", 0.5 * h),
                    ("gpu_utilization_ratio", 0.9),
                ):
                    rows.append(Sample(ts=ts, provider="p", instance=instance, deployment="chat",
                                       metric=metric, value=value))  # fmt: skip
    return Sample.to_frame(rows)


def _inventory() -> pd.DataFrame:
    labels = {"deployment": "chat", "model": "meta-llama/Llama-3.1-8B-Instruct",
              "stateless": "true", "engine_args": json.dumps({"max_num_seqs": 64})}  # fmt: skip
    rows = [
        Instance(ts=NOW - timedelta(minutes=m), provider="p", instance=i, gpu_model="L4",
                 gpu_count=1, market="on_demand", price_usd_per_hour=0.8, labels=labels)
        for i in ("a-0", "a-1") for m in (5, 20)
    ]  # fmt: skip
    return Instance.to_frame(rows)


def test_load_context_reads_windows_inventory_and_hourly_history(store) -> None:
    store.write_samples(_samples(hours=3))
    store.write_instances(_inventory())
    ctx = load_context(store, OptiInfraConfig(), now=NOW, window=ContextWindow())
    [deployment] = ctx.deployments.to_dict("records")
    assert (deployment["deployment"], deployment["replicas"], deployment["on_demand"]) == (
        "chat", 2, 2,
    )  # fmt: skip
    assert deployment["engine_args"] == {"max_num_seqs": 64}
    [stats] = ctx.stats.to_dict("records")
    # The last hour: a-0 served 3 rps, a-1 2 rps; rates add up over replicas.
    assert stats["request_rate"] == pytest.approx(5.0)
    hourly = ctx.hourly.sort_values("hour")
    assert list(hourly["request_rate"]) == pytest.approx([3.0, 4.0, 5.0])
    assert list(hourly["instances"]) == [2, 2, 2]


def test_an_empty_store_gives_an_empty_context(store) -> None:
    ctx = load_context(store, OptiInfraConfig(), now=NOW)
    assert ctx.deployments.empty and ctx.stats.empty and ctx.hourly.empty
