"""What a sandbox fleet is made of, as written in a fleet YAML file.

A fleet is a list of deployments; each deployment is one model served by one engine on
``replicas`` identical servers, each server holding ``tensor_parallel_size x
pipeline_parallel_size`` GPUs of one type, bought on one cloud market. The field names
of :class:`EngineArgs` are vLLM's command-line arguments (with ``-`` as ``_``), because
that is what a platform engineer will recognise and what a recommendation changes.

Example (YAML)::

    deployments:
      - name: chat-8b
        model: meta-llama/Llama-3.1-8B-Instruct
        gpu: L4
        replicas: 2
        market: spot
        engine_args: {max_num_seqs: 64, quantization: fp8}
        load: {kind: trace, trace: azure-conv, rate_scale: 0.05}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

EngineKind = Literal["vllm", "sglang", "tgi"]
Market = Literal["on-demand", "spot"]
Quantization = Literal["none", "fp8", "int8", "int4"]
KvCacheDtype = Literal["auto", "fp8"]
TraceName = Literal["azure-conv", "azure-code", "mooncake"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineArgs(_Strict):
    """Engine arguments that change behaviour in the sandbox (vLLM's names and defaults)."""

    max_num_seqs: PositiveInt = Field(
        256, description="Most sequences in one running batch (vLLM --max-num-seqs)."
    )
    max_num_batched_tokens: PositiveInt = Field(
        8192,
        description="Most tokens (prefill + decode) one engine step processes "
        "(vLLM --max-num-batched-tokens); long prompts are prefilled in chunks of this.",
    )
    gpu_memory_utilization: float = Field(
        0.9,
        gt=0.05,
        le=0.99,
        description="Fraction of each GPU's memory the engine preallocates for weights, "
        "activations and KV cache (vLLM --gpu-memory-utilization).",
    )
    enable_prefix_caching: bool = Field(
        True, description="Reuse KV blocks of prompts that share a prefix."
    )
    enable_chunked_prefill: bool = Field(
        True, description="Mix prefill chunks with decode steps in one batch."
    )
    quantization: Quantization = Field(
        "none",
        description="Weight quantization: none (FP16/BF16), fp8, int8 (W8A8) or int4 "
        "(weight-only, AWQ/GPTQ-like). Lower precision is faster and may answer worse.",
    )
    kv_cache_dtype: KvCacheDtype = Field(
        "auto", description="KV-cache element type: auto (the model dtype) or fp8."
    )
    tensor_parallel_size: PositiveInt = Field(1, description="GPUs the model is split across.")
    pipeline_parallel_size: PositiveInt = Field(1, description="Pipeline stages (GPUs each).")
    max_model_len: PositiveInt | None = Field(
        None, description="Longest prompt + output accepted; default the model's context."
    )

    @property
    def gpus(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size


class DailyCycle(_Strict):
    """A day-and-week shape laid over a replayed trace (arrivals thinned by it).

    The factor at UTC time ``t`` is ``w(t) * (1 + a cos(2 pi (h(t) - peak_hour_utc) / 24))
    / (1 + a)`` with ``a = (p - 1) / (p + 1)``, ``h`` the hour of day and ``w`` 1 on
    weekdays, ``weekend_factor`` on Saturday and Sunday (1 at a weekday's peak hour,
    ``1 / peak_to_trough`` twelve hours away), times the day's level (``day_jitter``).
    It follows wall-clock UTC time, so a history written for past hours and a live run
    agree on the hour's load.
    """

    peak_to_trough: float = Field(
        3.0, ge=1, description="Ratio of a weekday's busiest to its quietest instant."
    )
    peak_hour_utc: float = Field(15.0, ge=0, lt=24, description="UTC hour of the daily peak.")
    weekend_factor: float = Field(
        0.6, gt=0, le=1, description="Saturday's and Sunday's load relative to a weekday's."
    )
    day_jitter: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Each UTC day's level is 1 - day_jitter x u, u uniform in [0, 1) and "
        "fixed per day: days differ as real ones do.",
    )


class LoadSpec(_Strict):
    """The offered load on one deployment (spread over its replicas)."""

    kind: Literal["none", "trace", "poisson", "diurnal"] = Field(
        "none", description="none, a replayed public trace, or a synthetic profile."
    )
    trace: TraceName = Field("azure-conv", description="Which bundled trace to replay.")
    rate_scale: float = Field(
        1.0,
        gt=0,
        description="Multiply the trace's request rate by this (thinning or "
        "superposing arrivals); for poisson/diurnal, unused.",
    )
    time_scale: float = Field(
        1.0, gt=0, description="Play the trace this many times faster than real time."
    )
    rps: float = Field(
        1.0, ge=0, description="poisson: mean requests per second; diurnal: the mean over a day."
    )
    peak_to_trough: float = Field(
        4.0,
        ge=1,
        description="diurnal: ratio of the highest to the lowest instantaneous arrival rate.",
    )
    day_seconds: float = Field(
        86400.0, gt=0, description="diurnal: length of one simulated day in seconds."
    )
    prompt_tokens: PositiveInt = Field(512, description="poisson/diurnal: mean prompt length.")
    output_tokens: PositiveInt = Field(128, description="poisson/diurnal: mean output length.")
    cycle: DailyCycle | None = Field(
        None,
        description="trace: thin the replay by a daily and weekly shape (UTC); rate_scale "
        "is then the scale at a weekday's peak hour.",
    )
    seed: int | None = Field(None, description="Random seed; default derived from the fleet's.")

    @model_validator(mode="after")
    def _cycle_needs_trace(self) -> LoadSpec:
        if self.cycle is not None and self.kind != "trace":
            raise ValueError(f"cycle shapes a replayed trace; kind is {self.kind!r}")
        return self


class DeploymentSpec(_Strict):
    """One model served by one engine on ``replicas`` identical servers."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="Unique name.")
    model: str = Field(description="Hugging Face model name (see optiinfra.catalog).")
    engine: EngineKind = Field("vllm", description="Which engine's /metrics format to imitate.")
    gpu: str = Field(description="GPU type, as in optiinfra.catalog (e.g. H100, A100-80GB, L4).")
    replicas: int = Field(1, ge=0, description="Identical servers (0 = scaled to zero).")
    cloud: Literal["aws", "gcp", "azure", "lambda", "runpod"] = Field(
        "aws", description="Whose price table prices this deployment."
    )
    region: str = Field("us-east-1", description="Cloud region for prices.")
    market: Market = Field("on-demand", description="on-demand or spot.")
    provider: str = Field("sandbox", description="The provider label its samples carry.")
    tenant: str = Field("default", description="The tenant that pays for it.")
    stateless: bool = Field(
        True, description="No local state worth keeping: safe to move to spot or restart."
    )
    dcgm: bool = Field(True, description="Serve a DCGM-exporter /metrics for its GPUs too.")
    engine_args: EngineArgs = Field(default_factory=EngineArgs)
    load: LoadSpec = Field(default_factory=LoadSpec)
    note: str = Field("", description="What this deployment is for (e.g. a planted problem).")
    quantization_sensitivity: float = Field(
        1.0,
        ge=0,
        le=1000,
        description="Planted fault, for tests: multiplies the answer-quality penalties of "
        "weight quantization and an FP8 KV cache (optiinfra/sandbox/quality.py); 1 follows "
        "the published figures, 0 makes quantization free, 100 makes FP8 break answers. "
        "Agents never see it.",
    )


class SandboxSettings(_Strict):
    """Settings of the simulated world itself."""

    host: str = Field("127.0.0.1", description="Interface the servers listen on (loopback).")
    base_port: int = Field(
        0, ge=0, le=65000, description="First port; 0 lets the OS choose free ports."
    )
    seed: int = Field(0, description="Seed for noise, answers, arrivals and interruptions.")
    noise: float = Field(
        0.05, ge=0, le=0.5, description="Relative jitter of step times (a real GPU's spread)."
    )
    spot_interruptions_per_hour: float = Field(
        0.0, ge=0, description="Rate at which each spot server is interrupted (Poisson)."
    )
    spot_restart_seconds: float = Field(
        120.0, ge=0, description="How long an interrupted spot server stays down."
    )


class FleetSpec(_Strict):
    """A whole sandbox fleet."""

    version: Literal[1] = 1
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    deployments: list[DeploymentSpec] = Field(default_factory=list)

    @field_validator("deployments")
    @classmethod
    def _unique_names(cls, deployments: list[DeploymentSpec]) -> list[DeploymentSpec]:
        seen: set[str] = set()
        for d in deployments:
            if d.name in seen:
                raise ValueError(f"duplicate deployment name {d.name!r}")
            seen.add(d.name)
        return deployments

    def deployment(self, name: str) -> DeploymentSpec:
        for d in self.deployments:
            if d.name == name:
                return d
        raise KeyError(name)
