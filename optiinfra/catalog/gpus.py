"""GPU specifications (memory, bandwidth, dense tensor throughput, TDP) by GPU name.

Example::

    >>> gpu_spec("h100").memory_gib
    80.0
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from optiinfra.catalog._tables import CatalogError, normalise_key, number, read_rows, required

_FILE = "gpu_specs.csv"

# Names clouds and benchmarks use for a GPU, mapped onto the spec table's rows.
_ALIASES = {
    "h100": "H100 SXM",
    "h10080gb": "H100 SXM",
    "nvidiah100gpu": "H100 SXM",
    "nvidiah10080gbhbm3": "H100 SXM",
    "h200": "H200 SXM",
    "a100": "A100 40GB SXM",
    "nvidiaa100gpu": "A100 40GB SXM",
    "a10040gb": "A100 40GB SXM",
    "a10080gb": "A100 80GB SXM",
    "a100-80gb": "A100 80GB SXM",
    "v100": "V100 SXM2 32GB",
    "v10032gb": "V100 SXM2 32GB",
}


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model's datasheet figures (dense, no sparsity)."""

    name: str
    memory_gib: float
    memory_type: str
    memory_bandwidth_gbps: float
    fp16_tflops: float
    bf16_tflops: float | None
    fp8_tflops: float | None
    int8_tops: float | None
    tdp_watts: float
    source: str

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * 1024**3)

    def tensor_tflops(self, dtype: str) -> float:
        """Dense tensor throughput for a weight dtype; falls back to FP16 where the GPU has
        no faster path for it (an FP8 model on an A100 runs at FP16 speed)."""
        dtype = dtype.lower()
        if dtype in {"fp8", "float8"} and self.fp8_tflops:
            return self.fp8_tflops
        if dtype in {"int8", "w8a8"} and self.int8_tops:
            return self.int8_tops
        if dtype in {"bf16", "bfloat16"} and self.bf16_tflops:
            return self.bf16_tflops
        return self.fp16_tflops


@cache
def gpu_specs() -> dict[str, GpuSpec]:
    """Every GPU in the table, by its canonical name."""
    specs: dict[str, GpuSpec] = {}
    for line, row in read_rows(_FILE):
        specs[row["gpu"]] = GpuSpec(
            name=row["gpu"],
            memory_gib=required(_FILE, line, row, "memory_gib"),
            memory_type=row["memory_type"],
            memory_bandwidth_gbps=required(_FILE, line, row, "memory_bandwidth_gbps"),
            fp16_tflops=required(_FILE, line, row, "fp16_dense_tflops"),
            bf16_tflops=number(_FILE, line, row, "bf16_dense_tflops"),
            fp8_tflops=number(_FILE, line, row, "fp8_dense_tflops"),
            int8_tops=number(_FILE, line, row, "int8_dense_tops"),
            tdp_watts=required(_FILE, line, row, "tdp_watts"),
            source=row["source"],
        )
    return specs


@cache
def _by_key() -> dict[str, GpuSpec]:
    return {normalise_key(n): spec for n, spec in gpu_specs().items()}


def gpu_spec(name: str) -> GpuSpec:
    """The spec of a GPU by its table name or a common alias ("H100", "A100-80GB", "L4")."""
    specs = gpu_specs()
    by_key = _by_key()
    key = normalise_key(name)
    if key in by_key:
        return by_key[key]
    alias = _ALIASES.get(key) or _ALIASES.get(name.lower())
    if alias:
        return specs[alias]
    raise CatalogError(f"unknown GPU {name!r}; known: {', '.join(sorted(specs))}")
