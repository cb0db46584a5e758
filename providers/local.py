"""The ``local`` provider: this host's CPU and memory (psutil) and its NVIDIA GPUs (NVML).

It is the first real job: it needs no credentials and no network, so a fresh install can
collect something at once. Values are read under their source names (``psutil`` and
``nvml`` tables in ``optiinfra/metricmaps/``) and normalised through
:mod:`optiinfra.metrics`, so units (mW → W, percent → ratio, MHz → Hz) live in data.

A host without an NVIDIA driver is normal, not an error: the provider appends
``"no NVIDIA GPU found (<reason>)"`` to :attr:`Provider.notes` and still returns CPU and
memory samples. NVML is injectable (``nvml=``: any object with the pynvml functions used
here and an ``NVMLError`` class), so tests drive the GPU path with a small stand-in.
psutil and NVML calls run in a worker thread, never on the event loop.

Example ``providers.yaml`` entry::

    - name: this-host
      kind: local
      options: {price_usd_per_hour: 1.2}
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import pandas as pd
import psutil
from pydantic import BaseModel, ConfigDict, Field

from optiinfra.config import ProviderConfig
from optiinfra.metrics import normalise_gauges
from optiinfra.models import Instance, Market, Sample
from providers.base import CollectionContext, Feature, Provider, parse_options
from providers.registry import register

Series = tuple[str, dict[str, str], float]
_NVML_LOCK = threading.Lock()  # nvmlInit/nvmlShutdown are process-wide


class LocalOptions(BaseModel):
    """``options:`` accepted by a ``local`` provider entry."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    price_usd_per_hour: float | None = Field(
        default=None, ge=0, description="What this host costs per hour, for cost estimates."
    )
    instance: str | None = Field(
        default=None, min_length=1, description="Instance name to record (default: hostname)."
    )
    min_cpu_interval_seconds: float = Field(
        default=0.2,
        ge=0,
        le=10,
        description="Shortest window CPU utilisation is measured over; a first collection "
        "right after start waits (in a worker thread) until this much time has passed.",
    )


@dataclass(frozen=True)
class GpuReading:
    """One GPU as NVML reports it: identity, and raw values under nvml source names."""

    index: int
    uuid: str
    model: str
    values: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GpuScan:
    gpus: tuple[GpuReading, ...]
    notes: tuple[str, ...] = ()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _default_nvml() -> Any:
    try:
        import pynvml
    except ImportError:  # pragma: no cover - nvidia-ml-py is a dependency
        return None
    return pynvml


def _read_gpu(nvml: Any, index: int) -> tuple[GpuReading, list[str]]:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    notes: list[str] = []

    def guarded(what: str, read: Callable[[], Any], default: Any = None) -> Any:
        try:
            return read()
        except nvml.NVMLError as exc:
            notes.append(f"gpu {index}: {what} unavailable ({exc})")
            return default

    uuid = _text(guarded("uuid", lambda: nvml.nvmlDeviceGetUUID(handle), ""))
    model = _text(guarded("name", lambda: nvml.nvmlDeviceGetName(handle), ""))
    values: dict[str, float] = {}
    util = guarded("utilisation", lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
    if util is not None:
        values["nvmlDeviceGetUtilizationRates.gpu"] = util.gpu
        values["nvmlDeviceGetUtilizationRates.memory"] = util.memory
    memory = guarded("memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
    if memory is not None:
        for part in ("used", "free", "total"):
            values[f"nvmlDeviceGetMemoryInfo.{part}"] = getattr(memory, part)
    scalar_reads: dict[str, tuple[str, Callable[[], Any]]] = {
        "nvmlDeviceGetPowerUsage": ("power", lambda: nvml.nvmlDeviceGetPowerUsage(handle)),
        "nvmlDeviceGetTemperature": (
            "temperature",
            lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
        ),
        "nvmlDeviceGetClockInfo.sm": (
            "SM clock",
            lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
        ),
        "nvmlDeviceGetClockInfo.mem": (
            "memory clock",
            lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM),
        ),
    }
    for source_name, (what, read) in scalar_reads.items():
        value = guarded(what, read)
        if value is not None:
            values[source_name] = value
    return GpuReading(index=index, uuid=uuid, model=model, values=values), notes


def scan_gpus(nvml: Any) -> GpuScan:
    """Every NVIDIA GPU NVML sees, or none with a note saying why (never raises NVMLError)."""
    if nvml is None:
        return GpuScan((), ("no NVIDIA GPU found (nvidia-ml-py is not installed)",))
    with _NVML_LOCK:
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            return GpuScan((), (f"no NVIDIA GPU found ({exc})",))
        try:
            try:
                count = int(nvml.nvmlDeviceGetCount())
            except nvml.NVMLError as exc:
                return GpuScan((), (f"no NVIDIA GPU found ({exc})",))
            if count == 0:
                return GpuScan((), ("no NVIDIA GPU found (NVML reports 0 devices)",))
            gpus: list[GpuReading] = []
            notes: list[str] = []
            for index in range(count):
                try:
                    reading, gpu_notes = _read_gpu(nvml, index)
                except nvml.NVMLError as exc:
                    notes.append(f"gpu {index}: skipped ({exc})")
                    continue
                gpus.append(reading)
                notes.extend(gpu_notes)
            return GpuScan(tuple(gpus), tuple(notes))
        finally:
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlShutdown()


class _CpuMeter:
    """CPU utilisation from ``psutil.cpu_times()`` deltas, primed at construction.

    Own state instead of ``psutil.cpu_percent(interval=None)``, whose "previous reading"
    is shared by every caller in the process.
    """

    def __init__(self, min_interval: float) -> None:
        self._min_interval = min_interval
        self._lock = threading.Lock()
        self._last = psutil.cpu_times()
        self._last_at = time.monotonic()

    @staticmethod
    def _busy_total(times: Any) -> tuple[float, float]:
        fields = times._asdict()
        # guest time is already counted in user/nice on Linux
        total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
        idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
        return total - idle, total

    def percent(self) -> float | None:
        """Percent busy since the previous call (blocks at most ``min_interval``)."""
        with self._lock:
            wait = self._min_interval - (time.monotonic() - self._last_at)
            if wait > 0:
                time.sleep(wait)
            now = psutil.cpu_times()
            busy0, total0 = self._busy_total(self._last)
            busy1, total1 = self._busy_total(now)
            self._last, self._last_at = now, time.monotonic()
        if total1 - total0 <= 0:
            return None
        return min(100.0, max(0.0, 100.0 * (busy1 - busy0) / (total1 - total0)))


@register
class LocalProvider(Provider):
    """This host: CPU and memory via psutil, every NVIDIA GPU via NVML."""

    kind: ClassVar[str] = "local"
    aliases: ClassVar[tuple[str, ...]] = ("host",)
    description: ClassVar[str] = "This machine: psutil for CPU/memory, NVML for NVIDIA GPUs."
    features: ClassVar[frozenset[Feature]] = frozenset({Feature.METRICS, Feature.INVENTORY})
    unsupported: ClassVar[dict[Feature, str]] = {
        Feature.COST: "a local host has no bill; set price per hour in options if you want "
        "an estimate",
        Feature.ACTUATE: "a local host has no deployment API to change; OptiInfra only observes it",
    }

    def __init__(self, config: ProviderConfig, *, nvml: Any = ...) -> None:
        super().__init__(config)
        self.options = parse_options(config, LocalOptions)
        self._nvml = _default_nvml() if nvml is ... else nvml
        self._cpu = _CpuMeter(self.options.min_cpu_interval_seconds)
        self.hostname = self.options.instance or socket.gethostname()

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _read_host(self) -> tuple[list[Series], GpuScan]:
        series: list[Series] = []
        cpu = self._cpu.percent()
        if cpu is None:
            self._note("cpu utilisation unavailable (no CPU time elapsed since last reading)")
        else:
            series.append(("cpu_percent", {}, cpu))
        memory = psutil.virtual_memory()
        for part in ("used", "available", "total"):
            series.append((f"virtual_memory.{part}", {}, float(getattr(memory, part))))
        return series, scan_gpus(self._nvml)

    def _labels(self, own: dict[str, str]) -> dict[str, str]:
        return {**self.config.labels, **own}

    async def collect_metrics(self, ctx: CollectionContext) -> pd.DataFrame:
        """One sample per host metric and per GPU metric, stamped with the collection time."""
        host_series, scan = await asyncio.to_thread(self._read_host)
        ts = datetime.now(UTC)
        for note in scan.notes:
            self._note(note)
        rows = normalise_gauges("psutil", host_series)
        for gpu in scan.gpus:
            labels = {"gpu": str(gpu.index), "uuid": gpu.uuid, "model": gpu.model}
            rows += normalise_gauges("nvml", [(n, labels, v) for n, v in gpu.values.items()])
        if self.options.price_usd_per_hour is not None:
            rows.append(
                ("price_usd_per_hour", {"market": Market.ON_DEMAND.value},
                 self.options.price_usd_per_hour)
            )  # fmt: skip
        samples = [
            Sample(
                ts=ts,
                tenant=self.config.tenant,
                provider=self.config.name,
                region=self.config.region,
                instance=self.hostname,
                metric=metric,
                value=value,
                labels=self._labels(labels),
            )
            for metric, labels, value in rows
        ]
        return Sample.to_frame(samples)

    async def collect_inventory(self, ctx: CollectionContext) -> pd.DataFrame:
        """This host as one instance row: GPU model and count from NVML, price from options."""
        scan = await asyncio.to_thread(scan_gpus, self._nvml)
        for note in scan.notes:
            self._note(note)
        models = sorted({g.model for g in scan.gpus if g.model})
        instance = Instance(
            ts=datetime.now(UTC),
            tenant=self.config.tenant,
            provider=self.config.name,
            instance=self.hostname,
            region=self.config.region,
            instance_type="local",
            gpu_model=", ".join(models),
            gpu_count=len(scan.gpus),
            market=Market.ON_DEMAND,
            price_usd_per_hour=self.options.price_usd_per_hour,
            state="running",
            started_at=datetime.fromtimestamp(psutil.boot_time(), UTC),
            labels=self._labels({"cpu_count": str(psutil.cpu_count() or 0)}),
        )
        return Instance.to_frame([instance])
