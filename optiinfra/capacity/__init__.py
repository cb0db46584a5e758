"""What a GPU can serve for an LLM: the planner's capacity model.

A first-principles step-time model (prefill bound by tensor FLOPs, decode by memory
bandwidth) with efficiencies fitted on Argonne's public vLLM benchmark, a memory model
(weights, reserve, KV cache), a continuous-batching queueing approximation for latency
at a request rate, and a bounded correction from the fleet's own metrics. It never reads
the sandbox; see ``docs/capacity.md``.

Example::

    >>> from optiinfra.capacity import CapacityModel, ServingConfig, Workload
    >>> model = CapacityModel.default()
    >>> p = model.predict(ServingConfig(gpu="H100", model="llama-3-8b"), Workload(512, 128), 2.0)
    >>> p.saturated, p.itl_p95_s.unit
    (False, 's')
"""

from optiinfra.capacity.model import CapacityModel
from optiinfra.capacity.records import (
    CapacityError,
    Estimate,
    MemoryFit,
    Observation,
    ServingConfig,
    ServingPrediction,
    Workload,
)

__all__ = [
    "CapacityError",
    "CapacityModel",
    "Estimate",
    "MemoryFit",
    "Observation",
    "ServingConfig",
    "ServingPrediction",
    "Workload",
]
