"""The records the capacity model takes and returns.

They are frozen dataclasses so that agents can hash them, put them in sets and compare
them, and so that a prediction can never be edited after the model made it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from optiinfra.errors import OptiInfraError


class CapacityError(OptiInfraError):
    """A capacity question cannot be answered: unknown GPU, model or dtype, bad numbers."""


def _finite(owner: str, name: str, value: float | None, *, minimum: float = 0.0) -> None:
    """Refuse NaN, infinities and values below ``minimum``, naming the field."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CapacityError(f"{owner}.{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise CapacityError(f"{owner}.{name} must be a finite number, got {value!r}")
    if value < minimum:
        raise CapacityError(f"{owner}.{name} must be >= {minimum}, got {value!r}")


WEIGHT_DTYPES = ("fp16", "bf16", "fp8", "int8", "int4")
KV_CACHE_DTYPES = ("auto", "fp16", "bf16", "fp8")


@dataclass(frozen=True)
class ServingConfig:
    """One serving replica's hardware and engine arguments (vLLM's names).

    ``gpu_count`` is the GPUs of the machine or pod the replicas run on; it must be a
    multiple of ``tensor_parallel x pipeline_parallel`` and defaults to exactly that (one
    replica). Predictions are per replica; :attr:`replicas` says how many fit.
    ``max_num_batched_tokens`` None means vLLM's chunked-prefill default (2048).

    Example::

        >>> ServingConfig(gpu="L4", model="llama-3-8b", weight_dtype="fp8").gpus_per_replica
        1
    """

    gpu: str
    model: str
    gpu_count: int | None = None
    weight_dtype: str = "fp16"
    kv_cache_dtype: str = "auto"
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    enable_prefix_caching: bool = True

    def __post_init__(self) -> None:
        for name in ("tensor_parallel", "pipeline_parallel", "max_num_seqs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CapacityError(f"ServingConfig.{name} must be an integer >= 1, got {value!r}")
        for name in ("gpu_count", "max_num_batched_tokens", "max_model_len"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise CapacityError(
                    f"ServingConfig.{name} must be an integer >= 1 or None, got {value!r}"
                )
        if self.gpu_count is not None and self.gpu_count % self.gpus_per_replica:
            raise CapacityError(
                f"ServingConfig.gpu_count={self.gpu_count} is not a multiple of "
                f"tensor_parallel x pipeline_parallel = {self.gpus_per_replica}"
            )
        _finite("ServingConfig", "gpu_memory_utilization", self.gpu_memory_utilization)
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise CapacityError(
                "ServingConfig.gpu_memory_utilization must be in (0, 1], got "
                f"{self.gpu_memory_utilization!r}"
            )
        if self.weight_dtype.lower() not in WEIGHT_DTYPES:
            raise CapacityError(
                f"unknown weight dtype {self.weight_dtype!r}; known: {', '.join(WEIGHT_DTYPES)}"
            )
        if self.kv_cache_dtype.lower() not in KV_CACHE_DTYPES:
            raise CapacityError(
                f"unknown KV-cache dtype {self.kv_cache_dtype!r}; "
                f"known: {', '.join(KV_CACHE_DTYPES)}"
            )

    @property
    def gpus_per_replica(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel

    @property
    def replicas(self) -> int:
        """Replicas that ``gpu_count`` GPUs hold (1 when ``gpu_count`` is None)."""
        return 1 if self.gpu_count is None else self.gpu_count // self.gpus_per_replica


@dataclass(frozen=True)
class Workload:
    """Mean request shape. ``prompt_cv`` is the coefficient of variation of prompt
    lengths (1.0 = as spread as an exponential; chat traces are near 1)."""

    prompt_tokens: float
    output_tokens: float
    prefix_hit_ratio: float = 0.0
    prompt_cv: float = 1.0

    def __post_init__(self) -> None:
        _finite("Workload", "prompt_tokens", self.prompt_tokens)
        _finite("Workload", "output_tokens", self.output_tokens)
        _finite("Workload", "prefix_hit_ratio", self.prefix_hit_ratio)
        _finite("Workload", "prompt_cv", self.prompt_cv)
        if self.prompt_tokens < 1:
            raise CapacityError(f"Workload.prompt_tokens must be >= 1, got {self.prompt_tokens!r}")
        if self.output_tokens < 1:
            raise CapacityError(
                "Workload.output_tokens must be >= 1 (the first token comes out of the "
                f"prefill; a request always generates one), got {self.output_tokens!r}"
            )
        if self.prefix_hit_ratio > 1.0:
            raise CapacityError(
                f"Workload.prefix_hit_ratio must be in [0, 1], got {self.prefix_hit_ratio!r}"
            )


@dataclass(frozen=True)
class Estimate:
    """A predicted figure with its uncertainty interval (``low <= value <= high``).

    ``high`` is ``math.inf`` where the pessimistic end of the interval is saturated.
    """

    value: float
    low: float
    high: float
    unit: str

    def within(self, limit: float) -> bool:
        """True when the central value meets an upper limit (a latency SLO)."""
        return self.value <= limit


@dataclass(frozen=True)
class MemoryFit:
    """Whether a config fits in GPU memory, per GPU, and how much KV cache is left."""

    fits: bool
    gpu_memory_gib: float  # one GPU's memory
    usable_gib: float  # x gpu_memory_utilization
    weights_gib: float  # per GPU
    activation_reserve_gib: float  # per GPU
    kv_cache_gib: float  # per GPU, 0 when it does not fit
    kv_bytes_per_token: float  # per GPU
    kv_capacity_tokens: int  # per replica
    shortfall_gib: float  # per GPU; 0 when it fits
    max_model_len: int

    def max_concurrent_sequences(self, tokens_per_sequence: float) -> int:
        """Sequences of ``tokens_per_sequence`` (prompt + output) whose KV fits at once."""
        _finite("max_concurrent_sequences", "tokens_per_sequence", tokens_per_sequence)
        if tokens_per_sequence <= 0:
            raise CapacityError("tokens_per_sequence must be > 0")
        return int(self.kv_capacity_tokens // tokens_per_sequence)


@dataclass(frozen=True)
class ServingPrediction:
    """What one replica does at a request rate (continuous batching, steady state).

    When ``saturated`` is True the rate exceeds what the replica can serve: queues grow
    without bound, the latencies are ``math.inf`` and ``throughput`` is the capacity.
    """

    config: ServingConfig
    workload: Workload
    rate_rps: float
    saturated: bool
    reason: str
    capacity_rps: Estimate
    output_tokens_per_s: Estimate
    prompt_tokens_per_s: Estimate
    running_batch: Estimate  # mean sequences decoding at once
    batch_occupancy: Estimate  # running_batch / max concurrent sequences
    ttft_p50_s: Estimate
    ttft_p95_s: Estimate
    itl_mean_s: Estimate
    itl_p95_s: Estimate
    gpu_busy_fraction: Estimate
    correction: float = 1.0  # the calibration time factor applied (1 = none)
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Observation:
    """What the fleet measured on one (gpu, model, config), for :meth:`calibrate`.

    Give one of the three kinds (more fields may be set; each set figure counts once):

    - ``generation_tokens_per_s`` with ``running_batch``: decode throughput at the
      observed mean number of running sequences (``mean_context_tokens`` optional).
    - ``itl_p95_s`` and/or ``ttft_p95_s`` with ``workload`` and ``rate_rps``: latency
      percentiles at an observed request rate per replica.
    """

    config: ServingConfig
    generation_tokens_per_s: float | None = None
    running_batch: float | None = None
    mean_context_tokens: float | None = None
    workload: Workload | None = None
    rate_rps: float | None = None
    ttft_p95_s: float | None = None
    itl_p95_s: float | None = None

    def __post_init__(self) -> None:
        for name in (
            "generation_tokens_per_s",
            "running_batch",
            "mean_context_tokens",
            "rate_rps",
            "ttft_p95_s",
            "itl_p95_s",
        ):
            _finite("Observation", name, getattr(self, name))
        if self.generation_tokens_per_s is not None:
            if self.running_batch is None or self.running_batch <= 0:
                raise CapacityError("Observation.generation_tokens_per_s needs running_batch > 0")
            if self.generation_tokens_per_s <= 0:
                raise CapacityError("Observation.generation_tokens_per_s must be > 0")
        latency = self.ttft_p95_s is not None or self.itl_p95_s is not None
        if latency and (self.workload is None or self.rate_rps is None):
            raise CapacityError("Observation.ttft_p95_s / itl_p95_s need workload and rate_rps")
        if not latency and self.generation_tokens_per_s is None:
            raise CapacityError(
                "Observation has no observed figure (generation_tokens_per_s, ttft_p95_s "
                "or itl_p95_s)"
            )
