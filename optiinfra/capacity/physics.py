"""Step times of a transformer forward pass from first principles, scaled by fitted
efficiencies.

Why this shape: a prefill pass multiplies every prompt token through every active
weight, so it is bound by tensor-core FLOPs; a decode step produces one token per
running sequence and must stream every weight (and every cached key/value it attends
to) from HBM, so it is bound by memory bandwidth. Real engines reach a fraction of the
datasheet peaks and pay a fixed scheduling / kernel-launch cost per step, plus a cost per
running sequence (sampling, block tables); those four numbers are what
:mod:`optiinfra.capacity.fit` fits on the Argonne tables. Everything else (bytes per
parameter, KV shape, tensor-parallel all-reduces, mixture-of-experts routing) is
arithmetic on the catalog's spec sheets, so a GPU the benchmark never ran is predicted
from its own datasheet with the same efficiencies.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from optiinfra.capacity.records import CapacityError, ServingConfig
from optiinfra.catalog import CatalogError, GpuSpec, ModelSpec, gpu_spec, model_spec

#: Bytes per stored weight. int4 (AWQ/GPTQ, group size 128) carries one fp16 scale per
#: group: 0.5 + 2/128 bytes.
WEIGHT_BYTES = {"fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5 + 2 / 128}
#: Bytes per cached key/value element; "auto" is the activation dtype (fp16/bf16).
KV_BYTES = {"auto": 2.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0}

#: Per-direction GPU-to-GPU bandwidth in bytes/s used for tensor-parallel all-reduces:
#: NVLink 3 (A100 SXM, 600 GB/s both ways), NVLink 4 (H100/H200 SXM, 900 GB/s both
#: ways), the H100 NVL bridge (600 GB/s); everything else talks over PCIe (Gen4 x16,
#: ~25 GB/s achieved). The spec table has no interconnect column, hence this map.
_LINK_BYTES_S = {
    "A100 40GB SXM": 300e9,
    "A100 80GB SXM": 300e9,
    "H100 SXM": 450e9,
    "H200 SXM": 450e9,
    "H100 NVL": 300e9,
    "V100 SXM2 32GB": 150e9,
}
_PCIE_BYTES_S = 25e9

#: Mixture-of-experts routing: (experts, experts per token). Only what the catalog holds;
#: an unlisted MoE model (active < total params) is assumed to route top-2 of 8.
_MOE_ROUTING = {"mistralai/Mixtral-8x7B-v0.1": (8, 2)}

#: Step-time functions take floats or numpy arrays (the fit evaluates whole tables).
Num = float | np.ndarray


@dataclass(frozen=True)
class Efficiencies:
    """The fitted constants (see :mod:`optiinfra.capacity.fitted`).

    ``compute``: fraction of dense tensor peak a prefill reaches; ``bandwidth``: fraction
    of HBM peak a decode step reaches; ``step_overhead_s``: fixed cost of one forward
    step (scheduler, launches); ``per_sequence_s``: cost per running sequence per step;
    ``allreduce_s``: latency of one tensor-parallel all-reduce;
    ``quantized_weight_efficiency``: how much of ``bandwidth`` quantized-weight kernels
    (fp8/int8/int4) reach; ``fp8_kv_native`` / ``fp8_kv_emulated``: how much slower per
    byte an fp8 KV cache is read than fp16 on a GPU with / without fp8 units;
    ``time_scale``: a multiplier on every step time, 1.0 for the fit itself, moved by the
    uncertainty band and by calibration.
    """

    compute: float
    bandwidth: float
    step_overhead_s: float
    per_sequence_s: float
    allreduce_s: float
    quantized_weight_efficiency: float = 1.0
    fp8_kv_native: float = 1.0
    fp8_kv_emulated: float = 1.0
    time_scale: float = 1.0

    def scaled(self, factor: float) -> Efficiencies:
        """The same constants with every step time multiplied by ``factor``."""
        return replace(self, time_scale=self.time_scale * factor)


@dataclass(frozen=True)
class Deployment:
    """A :class:`ServingConfig` resolved against the catalog: the numbers step times need."""

    gpu: GpuSpec
    model: ModelSpec
    tp: int
    pp: int
    weight_bytes_per_param: float
    kv_bytes_per_value: float
    peak_flops: float  # per GPU, for the weight dtype's compute path
    bandwidth: float  # per GPU, bytes/s
    link_bytes_s: float
    experts: int
    experts_per_token: int
    quantized_weights: bool
    kv_fp8: bool

    def kv_read_factor(self, eff: Efficiencies) -> float:
        """Time per KV byte relative to fp16 (fp8 caches dequantise on read)."""
        if not self.kv_fp8:
            return 1.0
        return eff.fp8_kv_native if self.gpu.fp8_tflops else eff.fp8_kv_emulated

    def weight_read_factor(self, eff: Efficiencies) -> float:
        return 1.0 / eff.quantized_weight_efficiency if self.quantized_weights else 1.0

    @property
    def shared_params(self) -> float:
        """Parameters every token uses (attention, embeddings; all of a dense model)."""
        if self.experts <= 1:
            return self.model.params_b * 1e9
        return self.model.active_params_b * 1e9 - self.experts_per_token * self.expert_params

    @property
    def expert_params(self) -> float:
        """Parameters of one expert summed over layers (0 for a dense model)."""
        if self.experts <= 1:
            return 0.0
        total, active = self.model.params_b * 1e9, self.model.active_params_b * 1e9
        return (total - active) / (self.experts - self.experts_per_token)

    def weight_bytes_per_gpu(self, tokens: Num) -> Num:
        """Weight bytes one GPU streams in a step over ``tokens`` tokens: an MoE step
        reads only the experts its tokens were routed to (uniform routing assumed)."""
        gpus = self.tp * self.pp
        if self.experts <= 1:
            return self.model.params_b * 1e9 * self.weight_bytes_per_param / gpus
        touched = 1.0 - (1.0 - self.experts_per_token / self.experts) ** np.maximum(tokens, 1.0)
        params = self.shared_params + self.experts * self.expert_params * touched
        return params * self.weight_bytes_per_param / gpus

    def kv_bytes_per_token_per_gpu(self) -> float:
        """KV bytes of one token on one GPU: KV heads split across TP (replicated when
        there are fewer heads than GPUs), layers split across PP."""
        heads = max(self.model.kv_heads / self.tp, 1.0)
        layers = self.model.layers / self.pp
        return 2.0 * layers * heads * self.model.head_dim * self.kv_bytes_per_value

    @property
    def query_dim(self) -> int:
        return self.model.attention_heads * self.model.head_dim


def resolve(config: ServingConfig) -> Deployment:
    """Look the config's GPU and model up in the catalog; a clear error names the unknown."""
    try:
        gpu = gpu_spec(config.gpu)
    except CatalogError as exc:
        raise CapacityError(f"unknown GPU {config.gpu!r}: {exc.message}") from exc
    try:
        model = model_spec(config.model)
    except CatalogError as exc:
        raise CapacityError(f"unknown model {config.model!r}: {exc.message}") from exc
    weight_dtype = config.weight_dtype.lower()
    kv_dtype = config.kv_cache_dtype.lower()
    if weight_dtype not in WEIGHT_BYTES:
        raise CapacityError(f"unknown weight dtype {config.weight_dtype!r}")
    if kv_dtype not in KV_BYTES:
        raise CapacityError(f"unknown KV-cache dtype {config.kv_cache_dtype!r}")
    # int4 kernels (Marlin/AWQ) dequantise to fp16 and multiply at fp16 rate.
    compute_dtype = "fp16" if weight_dtype == "int4" else weight_dtype
    experts, per_token = 1, 1
    if model.active_params_b < model.params_b:
        experts, per_token = _MOE_ROUTING.get(model.name, (8, 2))
    return Deployment(
        gpu=gpu,
        model=model,
        tp=config.tensor_parallel,
        pp=config.pipeline_parallel,
        weight_bytes_per_param=WEIGHT_BYTES[weight_dtype],
        kv_bytes_per_value=KV_BYTES[kv_dtype],
        peak_flops=gpu.tensor_tflops(compute_dtype) * 1e12,
        bandwidth=gpu.memory_bandwidth_gbps * 1e9,
        link_bytes_s=_LINK_BYTES_S.get(gpu.name, _PCIE_BYTES_S),
        experts=experts,
        experts_per_token=per_token,
        quantized_weights=WEIGHT_BYTES[weight_dtype] < 2.0,
        kv_fp8=KV_BYTES[kv_dtype] < 2.0,
    )


def _allreduce_time(dep: Deployment, eff: Efficiencies, tokens: float) -> float:
    """Two ring all-reduces per layer (after attention and after the MLP) of the
    activations: latency plus 2(tp-1)/tp of the bytes over the link."""
    if dep.tp == 1:
        return 0.0
    payload = tokens * dep.model.hidden_size * 2.0
    one = eff.allreduce_s + 2.0 * (dep.tp - 1) / dep.tp * payload / dep.link_bytes_s
    return 2.0 * dep.model.layers / dep.pp * one


def step_time(
    dep: Deployment,
    eff: Efficiencies,
    *,
    new_tokens: Num,
    sequences: Num,
    attended_tokens: Num,
    cached_tokens: Num,
) -> Num:
    """Seconds of one engine step (all pipeline stages) that pushes ``new_tokens``
    tokens of ``sequences`` sequences through the model.

    ``attended_tokens``: sum over the new tokens of how many positions each attends to
    (attention FLOPs); ``cached_tokens``: KV entries read from HBM (the running
    sequences' contexts). The step costs the larger of its compute time and its memory
    time (they overlap), plus the fixed and per-sequence overheads and the TP
    all-reduces. With pipeline parallelism the batch is split into ``pp`` micro-batches
    in flight at once, so a step is ``pp`` stage times of one micro-batch.
    """
    pp = dep.pp
    micro_tokens = np.where(np.asarray(sequences) >= pp, np.divide(new_tokens, pp), new_tokens)
    share = micro_tokens / new_tokens
    gpus = dep.tp * pp
    active = dep.model.active_params_b * 1e9
    flops = 2.0 * active * micro_tokens + 4.0 * dep.model.layers * dep.query_dim * (
        attended_tokens * share
    )
    compute = flops / gpus / (dep.peak_flops * eff.compute)
    memory_bytes = dep.weight_bytes_per_gpu(micro_tokens) * dep.weight_read_factor(eff) + (
        cached_tokens * share * dep.kv_bytes_per_token_per_gpu() * dep.kv_read_factor(eff)
    )
    memory = memory_bytes / (dep.bandwidth * eff.bandwidth)
    stage = (
        np.maximum(compute, memory)
        + eff.step_overhead_s / pp
        + eff.per_sequence_s * sequences * share
        + _allreduce_time(dep, eff, micro_tokens)
    )
    return pp * stage * eff.time_scale  # type: ignore[no-any-return]


def decode_step_time(dep: Deployment, eff: Efficiencies, batch: Num, context: Num) -> Num:
    """One decode step of ``batch`` sequences whose mean context is ``context`` tokens."""
    return step_time(
        dep,
        eff,
        new_tokens=batch,
        sequences=batch,
        attended_tokens=batch * context,
        cached_tokens=batch * context,
    )


def prefill_time(
    dep: Deployment,
    eff: Efficiencies,
    prompt_tokens: Num,
    sequences: Num = 1.0,
    chunk_tokens: Num | None = None,
    cached_prefix: Num = 0.0,
) -> Num:
    """Prefill of ``sequences`` prompts of ``prompt_tokens`` new tokens each (after a
    ``cached_prefix`` served from the prefix cache), in steps of at most
    ``chunk_tokens`` tokens. Causal attention: token i attends to ``cached_prefix + i``.
    """
    total = np.multiply(prompt_tokens, sequences)
    steps = 1.0 if chunk_tokens is None else np.maximum(1.0, np.ceil(total / chunk_tokens))
    per_step = total / steps
    attended = sequences * (prompt_tokens * cached_prefix + prompt_tokens**2 / 2.0) / steps
    one = step_time(
        dep,
        eff,
        new_tokens=per_step,
        sequences=np.minimum(sequences, per_step),
        attended_tokens=attended,
        cached_tokens=sequences * cached_prefix / steps,
    )
    return steps * one


def prefill_compute_time(
    dep: Deployment, eff: Efficiencies, prompt_tokens: float, cached_prefix: float = 0.0
) -> float:
    """Marginal GPU time one prompt adds when mixed into steps that stream the weights
    anyway (chunked prefill beside decodes): its FLOPs only."""
    gpus = dep.tp * dep.pp
    active = dep.model.active_params_b * 1e9
    attended = prompt_tokens * cached_prefix + prompt_tokens**2 / 2.0
    flops = 2.0 * active * prompt_tokens + 4.0 * dep.model.layers * dep.query_dim * attended
    return flops / gpus / (dep.peak_flops * eff.compute) * eff.time_scale
