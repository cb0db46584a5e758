"""What DCGM exporter would read off a simulated server's GPUs.

Activity (SM, tensor, DRAM) and power are the engine's iterations integrated over the
last few seconds of virtual time; framebuffer use is what the engine preallocates
(``gpu_memory_utilization`` of each GPU plus a CUDA context), which is why it is high
on an idle server too — as on a real one. Temperatures and clocks follow power.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from optiinfra.catalog import gpu_spec
from optiinfra.sandbox.observations import GpuReading

if TYPE_CHECKING:
    from optiinfra.sandbox.server import SimServer

READING_WINDOW_SECONDS = 5.0
CUDA_CONTEXT_MIB = 512.0
_DCGM_MODEL_NAMES = {
    "H100 SXM": "NVIDIA H100 80GB HBM3",
    "H100 PCIe": "NVIDIA H100 PCIe",
    "H100 NVL": "NVIDIA H100 NVL",
    "H200 SXM": "NVIDIA H200",
    "A100 40GB SXM": "NVIDIA A100-SXM4-40GB",
    "A100 80GB SXM": "NVIDIA A100-SXM4-80GB",
    "A100 80GB PCIe": "NVIDIA A100 80GB PCIe",
    "A10G": "NVIDIA A10G",
    "A10": "NVIDIA A10",
    "L4": "NVIDIA L4",
    "L40S": "NVIDIA L40S",
    "T4": "Tesla T4",
    "V100 SXM2 32GB": "Tesla V100-SXM2-32GB",
}


def dcgm_model_name(gpu: str) -> str:
    """The ``modelName`` label DCGM exporter shows (the driver's product name)."""
    return _DCGM_MODEL_NAMES.get(gpu, f"NVIDIA {gpu}")


def gpu_readings(server: SimServer, now: float) -> list[GpuReading]:
    spec = gpu_spec(server.spec.gpu)
    args = server.spec.engine_args
    activity = server.engine.truth.activity(now, READING_WINDOW_SECONDS)
    busy = activity["busy"]
    idle_watts = server.perf.idle_watts
    power = idle_watts * (1 - busy) + activity["mean_power_watts"]
    total_mib = spec.memory_gib * 1024
    reserved_mib = min(total_mib * 0.01, 600.0)
    used_mib = min(
        total_mib - reserved_mib, total_mib * args.gpu_memory_utilization + CUDA_CONTEXT_MIB
    )
    heat = (power - idle_watts) / max(spec.tdp_watts - idle_watts, 1.0)
    truth = server.engine.truth
    idle_seconds = max(0.0, now - server.attached_at - truth.busy_seconds)
    energy_mj = server.energy_offset_mj + 1000 * (truth.energy_joules + idle_watts * idle_seconds)
    readings = []
    for index in range(args.gpus):
        gpu_uuid = uuid.UUID(int=(server.identity.seed << 8) + index).hex
        readings.append(
            GpuReading(
                index=index,
                uuid=f"GPU-{gpu_uuid[:8]}-{gpu_uuid[8:12]}-{gpu_uuid[12:16]}-"
                f"{gpu_uuid[16:20]}-{gpu_uuid[20:]}",
                model_name=dcgm_model_name(spec.name),
                hostname=server.identity.hostname,
                utilization_percent=round(100 * busy),
                sm_active=activity["sm_active"],
                sm_occupancy=activity["sm_active"] * 0.5,
                tensor_active=activity["tensor_active"],
                dram_active=activity["dram_active"],
                graphics_engine_active=busy,
                memory_copy_utilization_percent=round(100 * activity["dram_active"]),
                framebuffer_used_mib=round(used_mib),
                framebuffer_free_mib=round(total_mib - used_mib - reserved_mib),
                framebuffer_reserved_mib=round(reserved_mib),
                power_watts=power,
                energy_millijoules=energy_mj,
                gpu_temperature_c=round(32 + 45 * heat),
                memory_temperature_c=round(36 + 40 * heat),
                sm_clock_mhz=1980 if busy > 0.05 else 345,
                memory_clock_mhz=2619,
            )
        )
    return readings
