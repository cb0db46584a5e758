"""NVIDIA DCGM exporter's ``/metrics`` for a simulated server's GPUs.

The fields, types and help texts are dcgm-exporter's default counter set
(``etc/default-counters.csv`` at NVIDIA/dcgm-exporter ``d5e5f51``), in that file's
order; the line shape is its Go template (``internal/pkg/rendermetrics/render_metrics.go``)
as released up to 4.5.3-4.8.2, checked against a real scrape (an NVIDIA L4 in the CNCF
AI-conformance evidence, copied to ``tests/data/exposition``):

    DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-…",pci_bus_id="00000000:31:00.0",device="nvidia0",
    modelName="NVIDIA L4",Hostname="…",DCGM_FI_DRIVER_VERSION="580.105.08"} 0

Labels keep that order (the Go template writes them in place; extra labels such as the
driver version and Kubernetes' ``container``/``namespace``/``pod`` follow, sorted by name).
Integer fields print as integers, double fields (power, the ``PROF`` ratios) with Go's
``%f``. Units are DCGM's: MiB for framebuffer, W for power, mJ for energy, MHz, °C,
percent (0-100) for ``DEV_*_UTIL`` but ratios (0-1) for ``PROF_*`` activity, bytes per
second for ``PROF_PCIE_*_BYTES``.

dcgm-exporter skips fields whose value is blank, and so does this: ``DCGM_FI_DEV_XID_ERRORS``
(blank until an XID error happens) and ``DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL`` (the
sandbox does not model NVLink traffic; the real exporter omits it on GPUs without
NVLink). Fields the sandbox has no value for are written as a healthy GPU shows them:
0 for PCIe replays, encoder/decoder use, vGPU licence status and row remapping.

The unreleased main branch (after 4.5.3-4.8.2) renames the ``Hostname`` label to
``hostname``; pass ``hostname_label="hostname"`` for that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from optiinfra.sandbox.exposition._text import escape_label_value, go_fixed
from optiinfra.sandbox.observations import GpuReading

CONTENT_TYPE = "text/plain; charset=utf-8"

# field, Prometheus type, help, value (a GpuReading attribute, "pcie_tx"/"pcie_rx" for the
# derived rates, or a constant), double (written with Go's %f)
_Field = tuple[str, str, str, str | int, bool]
_FIELDS: tuple[_Field, ...] = (
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", "sm_clock_mhz", False),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", "memory_clock_mhz",
     False),
    ("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C).", "memory_temperature_c",
     False),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", "gpu_temperature_c", False),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", "power_watts", True),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter",
     "Total energy consumption since boot (in mJ).", "energy_millijoules", False),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries.", 0, False),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", "utilization_percent", False),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).",
     "memory_copy_utilization_percent", False),
    ("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %).", 0, False),
    ("DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %).", 0, False),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).",
     "framebuffer_free_mib", False),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).",
     "framebuffer_used_mib", False),
    ("DCGM_FI_DEV_FB_RESERVED", "gauge", "Framebuffer memory reserved (in MiB).",
     "framebuffer_reserved_mib", False),
    ("DCGM_FI_DEV_VGPU_LICENSE_STATUS", "gauge", "vGPU License status", 0, False),
    ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter",
     "Number of remapped rows for uncorrectable errors", 0, False),
    ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter",
     "Number of remapped rows for correctable errors", 0, False),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed", 0, False),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active.",
     "graphics_engine_active", True),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge",
     "Ratio of cycles the tensor (HMMA) pipe is active.", "tensor_active", True),
    ("DCGM_FI_PROF_DRAM_ACTIVE", "gauge",
     "Ratio of cycles the device memory interface is active sending or receiving data.",
     "dram_active", True),
    ("DCGM_FI_PROF_PCIE_TX_BYTES", "gauge",
     "The rate of data transmitted over the PCIe bus - including both protocol headers and "
     "data payloads - in bytes per second.", "pcie_tx", False),
    ("DCGM_FI_PROF_PCIE_RX_BYTES", "gauge",
     "The rate of data received over the PCIe bus - including both protocol headers and "
     "data payloads - in bytes per second.", "pcie_rx", False),
)  # fmt: skip

#: Commented out in dcgm-exporter's ``dcp-metrics-included.csv``; on with ``profiling_extras``.
_EXTRA_FIELDS: tuple[_Field, ...] = (
    ("DCGM_FI_PROF_SM_ACTIVE", "gauge", "The ratio of cycles an SM has at least 1 warp assigned.",
     "sm_active", True),
    ("DCGM_FI_PROF_SM_OCCUPANCY", "gauge", "The ratio of number of warps resident on an SM.",
     "sm_occupancy", True),
)  # fmt: skip

DEFAULT_FIELDS = tuple(f[0] for f in _FIELDS)


class DcgmGpuBook:
    """dcgm-exporter's text for the GPUs of one server, from their :class:`GpuReading`.

    ``GpuReading.pcie_*_bytes`` are counters since boot; DCGM reports a rate, so the book
    keeps each GPU's previous reading and divides by the time between renders (``clock``;
    the first render shows 0).

    >>> DcgmGpuBook().render([]) == ""
    True
    """

    content_type = CONTENT_TYPE

    def __init__(
        self,
        *,
        driver_version: str = "580.105.08",
        hostname_label: str = "Hostname",
        uuid_label: str = "UUID",
        kubernetes: Mapping[str, str] | None = None,
        profiling_extras: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if hostname_label not in ("Hostname", "hostname"):
            raise ValueError(f"hostname_label must be Hostname or hostname, not {hostname_label!r}")
        self._hostname_label = hostname_label
        self._uuid_label = uuid_label
        extra = {"DCGM_FI_DRIVER_VERSION": driver_version, **(kubernetes or {})}
        self._extra = "".join(f',{k}="{escape_label_value(v)}"' for k, v in sorted(extra.items()))
        self._fields = _FIELDS + (_EXTRA_FIELDS if profiling_extras else ())
        self._clock = clock
        self._last_pcie: dict[str, tuple[float, float, float]] = {}

    def render(self, readings: Sequence[GpuReading]) -> str:
        gpus = sorted(readings, key=lambda r: r.index)
        now = self._clock()
        rates = {r.uuid: self._pcie_rates(r, now) for r in gpus}
        labels = {r.uuid: self._labels(r) for r in gpus}
        out: list[str] = []
        for field, kind, doc, value, double in self._fields:
            out.append(f"# HELP {field} {doc}")
            out.append(f"# TYPE {field} {kind}")
            for r in gpus:
                if isinstance(value, int):
                    v: float = value
                elif value in ("pcie_tx", "pcie_rx"):
                    v = rates[r.uuid][value == "pcie_rx"]
                else:
                    v = getattr(r, value)
                text = go_fixed(v) if double else str(round(v))
                out.append(f"{field}{labels[r.uuid]} {text}")
        return "\n".join(out) + "\n" if out and gpus else ""

    def _labels(self, r: GpuReading) -> str:
        bus = f"00000000:{(0x18 + 0x10 * r.index) % 0x100:02X}:00.0"
        return (
            f'{{gpu="{r.index}",{self._uuid_label}="{escape_label_value(r.uuid)}",'
            f'pci_bus_id="{bus}",device="nvidia{r.index}",'
            f'modelName="{escape_label_value(r.model_name)}",'
            f'{self._hostname_label}="{escape_label_value(r.hostname)}"{self._extra}}}'
        )

    def _pcie_rates(self, r: GpuReading, now: float) -> tuple[float, float]:
        last = self._last_pcie.get(r.uuid)
        self._last_pcie[r.uuid] = (now, r.pcie_tx_bytes, r.pcie_rx_bytes)
        if last is None or now <= last[0]:
            return 0.0, 0.0
        dt = now - last[0]
        return max(r.pcie_tx_bytes - last[1], 0) / dt, max(r.pcie_rx_bytes - last[2], 0) / dt
