"""What a simulated engine reports about itself, in engine-neutral terms.

The engine simulator (:mod:`optiinfra.sandbox.engine`) knows what happened — a request
finished, a decode step ran for so long over so many sequences, requests were
preempted — but not how vLLM, SGLang or TGI would print it. A :class:`MetricsBook`
(one per server, from :mod:`optiinfra.sandbox.exposition`) turns these events into the
counters, gauges and histograms of one engine's real ``/metrics`` format; a
:class:`GpuReading` feeds the DCGM-exporter format for the server's GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

FinishReason = Literal["stop", "length", "abort"]


@dataclass(frozen=True, slots=True)
class FinishedRequest:
    """One request the engine finished (or aborted), with its measured phases in seconds."""

    prompt_tokens: int
    generation_tokens: int
    max_tokens: int  # the request's max_tokens parameter
    finish_reason: FinishReason
    queue_seconds: float  # arrival -> first scheduled
    prefill_seconds: float  # first scheduled -> first token
    decode_seconds: float  # first token -> last token
    ttft_seconds: float  # arrival -> first token (queue + prefill)
    e2e_seconds: float  # arrival -> finished
    cached_prompt_tokens: int = 0  # prompt tokens served from the prefix cache


@dataclass(frozen=True, slots=True)
class EngineState:
    """Gauges of the engine at one instant."""

    running: int  # sequences in the running batch
    waiting: int  # queued, not yet scheduled
    kv_cache_usage: float  # 0-1 of KV-cache blocks in use
    kv_cache_blocks: int  # total KV blocks (block size 16 tokens)
    block_size: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    gpu_memory_utilization: float = 0.9


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU's state as DCGM exporter would read it."""

    index: int
    uuid: str
    model_name: str  # e.g. "NVIDIA H100 80GB HBM3"
    hostname: str
    utilization_percent: float  # DCGM_FI_DEV_GPU_UTIL
    sm_active: float  # 0-1, DCGM_FI_PROF_SM_ACTIVE
    sm_occupancy: float  # 0-1, DCGM_FI_PROF_SM_OCCUPANCY
    tensor_active: float  # 0-1, DCGM_FI_PROF_PIPE_TENSOR_ACTIVE
    dram_active: float  # 0-1, DCGM_FI_PROF_DRAM_ACTIVE
    graphics_engine_active: float  # 0-1, DCGM_FI_PROF_GR_ENGINE_ACTIVE
    memory_copy_utilization_percent: float  # DCGM_FI_DEV_MEM_COPY_UTIL
    framebuffer_used_mib: float
    framebuffer_free_mib: float
    framebuffer_reserved_mib: float
    power_watts: float
    energy_millijoules: float  # since boot, a counter
    gpu_temperature_c: float
    memory_temperature_c: float
    sm_clock_mhz: float
    memory_clock_mhz: float
    pcie_tx_bytes: float = 0.0  # counters since boot
    pcie_rx_bytes: float = 0.0


class MetricsBook(Protocol):
    """The /metrics of one simulated server, fed with events, rendered on scrape."""

    content_type: str

    def record_finished(self, request: FinishedRequest) -> None:
        """A request finished: count tokens and outcome, observe its latency histograms."""

    def record_decode_step(self, step_seconds: float, sequences: int) -> None:
        """One decode step produced one token for each of ``sequences`` sequences, each
        ``step_seconds`` after its previous token (inter-token latency observations)."""

    def record_prefill(self, tokens: int) -> None:
        """``tokens`` prompt tokens were computed (not served from the prefix cache)."""

    def record_prefix_cache(self, queried_tokens: int, hit_tokens: int) -> None:
        """A prompt looked up ``queried_tokens`` in the prefix cache; ``hit_tokens`` hit."""

    def record_preemptions(self, count: int) -> None:
        """The scheduler preempted ``count`` running sequences to free KV blocks."""

    def set_state(self, state: EngineState) -> None:
        """The engine's gauges now (set before each render)."""

    def render(self) -> str:
        """The whole exposition text, as the real engine would serve it."""


class GpuBook(Protocol):
    """The DCGM-exporter /metrics of one simulated server's GPUs."""

    content_type: str

    def render(self, readings: list[GpuReading]) -> str:
        """The whole exposition text for these GPUs."""
