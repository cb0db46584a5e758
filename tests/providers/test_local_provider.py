"""The ``local`` provider: real psutil, real pynvml (no GPU here), and an NVML stand-in.

The stand-in is a small class with the pynvml functions the provider calls, passed in
through the constructor (``nvml=``), so the GPU code path runs without a GPU and without
patching pynvml.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from optiinfra.config import ProviderConfig
from optiinfra.errors import ConfigError
from optiinfra.metrics import is_canonical
from optiinfra.models import Instance, Sample
from providers import CollectionContext, Feature, get_provider_class
from providers.base import UnsupportedFeature
from providers.local import LocalProvider, scan_gpus


class StandInNVMLError(Exception):
    pass


@dataclass
class _Util:
    gpu: int
    memory: int


@dataclass
class _Memory:
    total: int
    free: int
    used: int


@dataclass
class StandInGpu:
    name: str
    uuid: str
    util: tuple[int, int] = (50, 20)
    memory: tuple[int, int, int] = (80 * 2**30, 30 * 2**30, 50 * 2**30)
    power_mw: int | None = 300_000
    temperature: int = 60
    sm_mhz: int = 1980
    mem_mhz: int = 2619


class StandInNvml:
    """Just enough of pynvml's surface for the provider, driven by a list of GPUs."""

    NVMLError = StandInNVMLError
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def __init__(self, gpus: list[StandInGpu], init_error: str | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.init_calls = 0
        self.shutdown_calls = 0
        self.threads: set[int] = set()

    def nvmlInit(self) -> None:
        self.threads.add(threading.get_ident())
        self.init_calls += 1
        if self.init_error:
            raise StandInNVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> StandInGpu:
        return self.gpus[index]

    def nvmlDeviceGetName(self, handle: StandInGpu) -> bytes:
        return handle.name.encode()  # older pynvml returns bytes

    def nvmlDeviceGetUUID(self, handle: StandInGpu) -> str:
        return handle.uuid

    def nvmlDeviceGetUtilizationRates(self, handle: StandInGpu) -> _Util:
        return _Util(*handle.util)

    def nvmlDeviceGetMemoryInfo(self, handle: StandInGpu) -> _Memory:
        return _Memory(*handle.memory)

    def nvmlDeviceGetPowerUsage(self, handle: StandInGpu) -> int:
        if handle.power_mw is None:
            raise StandInNVMLError("Not Supported")
        return handle.power_mw

    def nvmlDeviceGetTemperature(self, handle: StandInGpu, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return handle.temperature

    def nvmlDeviceGetClockInfo(self, handle: StandInGpu, clock: int) -> int:
        return {self.NVML_CLOCK_SM: handle.sm_mhz, self.NVML_CLOCK_MEM: handle.mem_mhz}[clock]


def _config(**kwargs: object) -> ProviderConfig:
    base: dict[str, object] = {"name": "this-host", "kind": "local"}
    base.update(kwargs)
    return ProviderConfig(**base)


def _ctx() -> CollectionContext:
    now = datetime.now(UTC)
    return CollectionContext(start=now - timedelta(minutes=15), end=now)


def _collect(provider: LocalProvider) -> tuple[pd.DataFrame, pd.DataFrame]:
    async def both() -> list[pd.DataFrame]:
        ctx = _ctx()
        return await asyncio.gather(provider.collect_metrics(ctx), provider.collect_inventory(ctx))

    metrics, inventory = asyncio.run(both())
    return metrics, inventory


def _value(frame: pd.DataFrame, metric: str, gpu: str | None = None) -> float:
    rows = frame[frame["metric"] == metric]
    if gpu is not None:
        rows = rows[[labels.get("gpu") == gpu for labels in rows["labels"]]]
    assert len(rows) == 1, f"{metric} gpu={gpu}: {len(rows)} rows"
    return float(rows["value"].iloc[0])


def test_registered_as_local_and_host_with_declared_capabilities() -> None:
    assert get_provider_class("local") is LocalProvider
    assert get_provider_class("HOST") is LocalProvider
    assert LocalProvider.supports(Feature.METRICS) and LocalProvider.supports(Feature.INVENTORY)
    with pytest.raises(UnsupportedFeature, match="no bill; set price per hour"):
        LocalProvider.require(Feature.COST)
    with pytest.raises(UnsupportedFeature, match="actuate"):
        LocalProvider.require(Feature.ACTUATE)


def test_real_pynvml_without_gpu_notes_it_and_still_reports_the_host() -> None:
    before = datetime.now(UTC)
    provider = LocalProvider(_config(region="lab", tenant="acme", labels={"rack": "r1"}))
    metrics, inventory = _collect(provider)

    assert any(n.startswith("no NVIDIA GPU found (") for n in provider.notes), provider.notes
    assert list(metrics.columns) == list(Sample.COLUMNS)
    assert {"cpu_utilization_ratio", "memory_used_bytes", "memory_total_bytes"} <= set(
        metrics["metric"]
    )
    assert not any(m.startswith("gpu_") for m in metrics["metric"])
    assert all(is_canonical(m) for m in metrics["metric"])
    assert 0.0 <= _value(metrics, "cpu_utilization_ratio") <= 1.0
    assert 0 < _value(metrics, "memory_used_bytes") <= _value(metrics, "memory_total_bytes")
    assert set(metrics["instance"]) == {socket.gethostname()}
    assert set(metrics["provider"]) == {"this-host"}
    assert set(metrics["tenant"]) == {"acme"} and set(metrics["region"]) == {"lab"}
    assert all(labels == {"rack": "r1"} for labels in metrics["labels"])
    ts = metrics["ts"].iloc[0]
    assert ts.tzinfo is not None and ts >= before

    assert list(inventory.columns) == list(Instance.COLUMNS)
    row = inventory.iloc[0]
    assert (row["instance_type"], row["gpu_count"], row["gpu_model"]) == ("local", 0, "")
    assert pd.isna(row["price_usd_per_hour"])


def test_gpu_path_with_stand_in_converts_units_and_labels_each_gpu() -> None:
    nvml = StandInNvml(
        [StandInGpu("NVIDIA H100 80GB HBM3", "GPU-aaa"),
         StandInGpu("NVIDIA H100 80GB HBM3", "GPU-bbb", util=(100, 90), power_mw=650_500)]
    )  # fmt: skip
    provider = LocalProvider(
        _config(labels={"rack": "r1", "gpu": "overridden"}, options={"price_usd_per_hour": 4.5}),
        nvml=nvml,
    )
    metrics, inventory = _collect(provider)

    assert not any("no NVIDIA GPU" in n for n in provider.notes)
    assert _value(metrics, "gpu_utilization_ratio", "0") == pytest.approx(0.5)
    assert _value(metrics, "gpu_utilization_ratio", "1") == pytest.approx(1.0)
    assert _value(metrics, "gpu_memory_busy_ratio", "1") == pytest.approx(0.9)
    assert _value(metrics, "gpu_power_watts", "1") == pytest.approx(650.5)
    assert _value(metrics, "gpu_memory_used_bytes", "0") == 50 * 2**30
    assert _value(metrics, "gpu_memory_total_bytes", "0") == 80 * 2**30
    assert _value(metrics, "gpu_temperature_celsius", "0") == 60
    assert _value(metrics, "gpu_sm_clock_hz", "0") == pytest.approx(1.98e9)
    gpu1 = metrics[metrics["metric"] == "gpu_power_watts"]["labels"].iloc[1]
    assert gpu1 == {"rack": "r1", "gpu": "1", "uuid": "GPU-bbb", "model": "NVIDIA H100 80GB HBM3"}
    assert _value(metrics, "price_usd_per_hour") == 4.5
    assert all(is_canonical(m) for m in metrics["metric"])

    row = inventory.iloc[0]
    assert (row["gpu_count"], row["gpu_model"], row["price_usd_per_hour"]) == (
        2, "NVIDIA H100 80GB HBM3", 4.5
    )  # fmt: skip
    # both collections opened NVML, both closed it, and never on the event loop's thread
    assert nvml.init_calls == nvml.shutdown_calls == 2
    assert threading.get_ident() not in nvml.threads


def test_unsupported_field_is_noted_and_the_rest_kept() -> None:
    nvml = StandInNvml([StandInGpu("Tesla T4", "GPU-t4", power_mw=None)])
    provider = LocalProvider(_config(), nvml=nvml)
    metrics, _ = _collect(provider)
    assert "gpu_power_watts" not in set(metrics["metric"])
    assert _value(metrics, "gpu_utilization_ratio", "0") == pytest.approx(0.5)
    assert provider.notes == ["gpu 0: power unavailable (Not Supported)"]


@pytest.mark.parametrize(
    ("nvml", "reason"),
    [
        (StandInNvml([], init_error="Driver Not Loaded"), "Driver Not Loaded"),
        (StandInNvml([]), "NVML reports 0 devices"),
        (None, "nvidia-ml-py is not installed"),
    ],
)
def test_no_gpu_gives_a_clear_note(nvml: StandInNvml | None, reason: str) -> None:
    scan = scan_gpus(nvml)
    assert scan.gpus == ()
    assert scan.notes == (f"no NVIDIA GPU found ({reason})",)
    if nvml is not None and nvml.init_error is None:
        assert nvml.shutdown_calls == 1


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"price_usd_per_hour": -1}, "price_usd_per_hour"),
        ({"price_usd_per_hour": "cheap"}, "price_usd_per_hour"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_options_are_one_clear_config_error(options: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"providers\.this-host\.options\.{field}"):
        LocalProvider(_config(options=options))
