"""How long one engine iteration takes on a GPU, and how much KV cache fits: a roofline.

The engine simulator (:mod:`optiinfra.sandbox.engine`) asks :meth:`StepTimeModel.step`
once per iteration, so the call is plain float arithmetic on constants computed in
``__init__`` (about 2 us). The figures come from the catalog (GPU datasheets, model
configs); a handful of global constants (:class:`PerfConstants`) were fitted to the
public Argonne LLM-Inference-Bench vLLM tables (:mod:`optiinfra.sandbox.calibration`).

Memory (per GPU; ``tp`` = tensor-parallel size, ``pp`` = pipeline stages)
    weights  = (body x q + vocab x hidden x 2 x (1 if tied else 2)) / (tp x pp), where
               body = params - embedding (- lm_head when untied), q = bytes per weight:
               2 (none), 1 (fp8, int8), 0.53 (int4: 4 bits + a 16-bit scale and zero per
               group of 128). Embedding and lm_head stay 16-bit, as in vLLM. A model's
               embeddings are taken as tied when vocab x hidden > 10 % of its parameters
               (true of Llama-3.2-1B/3B, false of the 7B+ models in the catalog).
    reserve  = reserve_gib (CUDA context, CUDA graphs, NCCL and allocator slack; fitted)
               + max_num_batched_tokens x hidden x 24 B / tp (activations of vLLM's
               profiling pass) + min(max_num_seqs, max_num_batched_tokens) x vocab x 4 B
               / tp (fp32 logits).
    KV/token = 2 x layers x kv_heads x head_dim x b x ceil(kv_heads/tp) / kv_heads / pp,
               b = 2 (auto) or 1 (fp8); heads are split by tensor parallelism (replicated
               when tp > kv_heads), layers by pipeline stages.
    kv_cache_tokens = floor((memory x gpu_memory_utilization - weights - reserve) / KV/token)
    It must hold one sequence of max_model_len (default: the model's context) tokens, as
    vLLM demands, or :class:`ModelDoesNotFitError` says how much memory is missing.

One step (``P`` prefill tokens, ``D`` decode sequences holding ``C`` context tokens,
``T = P + D``), per GPU of one pipeline stage:
    bytes    = weights read + C x KV/token x kv_read_cost + T x KV/token (writes), where
               weights read = body x q / (tp pp) + lm_head x 2 / tp for dense models. For
               mixture-of-experts (E experts, k per token; Mixtral 8 and 2):
               shared x q + E x (1 - (1 - k/E)^T) x expert x q, the expected number of
               distinct experts hit when each of the T tokens picks k experts uniformly
               and independently -- one token reads k experts, a batch of 16 nearly all.
               expert = (params - active) / (E - k), shared = body - E x expert.
    flops    = 2 x active body x T / (tp pp) + 2 x vocab x hidden x (D + [P > 0]) / tp
               + 4 x layers x heads x head_dim x (C + A) / (tp pp), A = the sum over this
               step's prefill tokens of the tokens each attends to (default P^2/2).
    memory_s = bytes / (bandwidth x mem_efficiency)
    compute_s = flops / (tensor peak x compute_efficiency); the peak is the weight
               dtype's (fp8 / int8 tensor rate where the GPU has one). Otherwise the
               weights are dequantised to fp16 inside the GEMM (weight-only: int4 always;
               FP8 on an A100, as vLLM's FP8 Marlin kernel does), computed at the fp16 rate
               / (1 + weight_only_dequant_overhead): less memory traffic, no faster math.
    gpu_s    = max(compute_s, memory_s) + overlap x min(compute_s, memory_s)
    comm_s   = 2 x layers/pp all-reduces when tp > 1, each allreduce_latency_s +
               2 (tp-1)/tp x T x hidden x 2 B / link bandwidth (NVLink per direction:
               V100 150, A100 300, H100/H200 SXM 450, H100 NVL 300 GB/s; PCIe cards 25).
    busy     = (gpu_s + comm_s) x (1 + (pp-1) x pp_bubble)
               + (pp-1) x (allreduce_latency_s + T x hidden x 2 B / link bandwidth)
    cpu_s    = step_overhead_s + per_seq_overhead_s x D + per_prefill_token_overhead_s x P
               (scheduler, input preparation, sampling, detokenisation; the GPU waits)
    seconds  = busy + cpu_s
KV fp8 halves KV bytes, so capacity doubles; reading it costs kv_read_cost = (heads /
kv_heads) x kv_fp8_read_cost_* per byte relative to 16-bit KV (1 for 16-bit KV). Why: the
vLLM of the Argonne runs (0.5.x) ran fp8 KV through its own paged-attention kernel, which
reads the KV once per *query* head (4x for Llama-3's grouped-query attention) instead of
FlashAttention, and converted fp8 in software on GPUs without FP8 (A100): fp8 KV was
slower per token than fp16 there (on H100 by ~30 % at batch 64, on A100 by ~4x). Set
both constants to 1 / (heads / kv_heads) for an ideal FP8 attention kernel.

Activity (what DCGM would read, per GPU, over the step):
    dram_active = bytes / (bandwidth x seconds);  tensor_active = flops / (peak x seconds)
    sm_active   = busy / seconds (SMs are busy whenever a kernel runs, memory-bound or
                  not; idle while the CPU part runs)
    power_watts = idle + (TDP - idle) x min(1, power_sm x sm + power_tensor x tensor +
                  power_dram x dram),  idle = idle_power_fraction x TDP (an idle H100 SXM
                  reads 68-69 W of 700 W in the nvidia-smi output printed in
                  argonne-lcf/LLM-Inference-Bench llama.cpp/H100/README.MD)

Constants (:data:`FITTED`; fitted 2026-11-24 on 421 of the 593 modelable Argonne vLLM
rows plus the six Fig 22 TTFT rows, mean absolute log error, Nelder-Mead):
    mem_efficiency 0.798, compute_efficiency 0.842, overlap 0.99 (compute and memory
    time barely overlap in these vLLM steps), step_overhead_s 2.14 ms, per_seq_overhead_s
    61.7 us, per_prefill_token_overhead_s 7.96 us, allreduce_latency_s 27.2 us,
    kv_fp8_read_cost_fp8_gpu 0.698, kv_fp8_read_cost_other_gpu 7.12, reserve_gib 2.28;
    power_sm 0.716, power_tensor 1.393, power_dram 0 (non-negative least squares on the 16
    vLLM rows of Fig 16; DRAM activity is collinear with SM activity there).
    The CPU overheads are those of vLLM 0.5 (2024); newer vLLM has less.
Assumed, no data to fit: weight_only_dequant_overhead 0.25, pp_bubble 0.5 (Argonne has
no vLLM pipeline-parallel rows), idle_power_fraction 0.1, the 24 B/hidden activation and
the link bandwidths above. Known misses: Mistral-7B on H100 at batch >= 32 and 1-2k
tokens runs up to 2x slower than predicted (that vLLM build seems to have used the
paged-attention kernel for sliding-window models); Llama-2-70B on 4 A100 at batch 16 with
1-2k tokens (KV cache nearly full: preemption depends on exact block accounting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from optiinfra.catalog import GpuSpec, ModelSpec
from optiinfra.errors import OptiInfraError
from optiinfra.sandbox.spec import EngineArgs

GiB = 1024**3

# Per-direction GPU-to-GPU bandwidth (bytes/s) for tensor-parallel all-reduce; GPUs not
# named here talk over PCIe (~25 GB/s achieved on Gen4 x16).
_LINK_BYTES_PER_S = {
    "V100 SXM2 32GB": 150e9,
    "A100 40GB SXM": 300e9,
    "A100 80GB SXM": 300e9,
    "H100 SXM": 450e9,
    "H200 SXM": 450e9,
    "H100 NVL": 300e9,
}
_PCIE_BYTES_PER_S = 25e9

# Mixture-of-experts shapes (experts, experts per token) by catalog model name.
_MOE = {"mistralai/Mixtral-8x7B-v0.1": (8, 2)}
_DEFAULT_MOE = (8, 2)

_WEIGHT_BYTES = {"none": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.53}
_ACT_BYTES_PER_HIDDEN = 24.0
_TIED_SHARE = 0.10


class ModelDoesNotFitError(OptiInfraError):
    """The weights (plus the engine's reserve and one full-length sequence of KV cache)
    do not fit in the GPU memory the engine arguments allow."""


@dataclass(frozen=True, slots=True)
class PerfConstants:
    """The global constants of the roofline. ``FITTED`` holds the calibrated values."""

    mem_efficiency: float  # fitted: share of datasheet bandwidth weight/KV streaming gets
    compute_efficiency: float  # fitted: share of dense tensor peak the GEMMs get
    overlap: float  # fitted: share of the smaller of compute/memory time not hidden
    step_overhead_s: float  # fitted: CPU time per engine step
    per_seq_overhead_s: float  # fitted: CPU time per decoding sequence per step
    per_prefill_token_overhead_s: float  # fitted: CPU/non-GEMM time per prompt token
    allreduce_latency_s: float  # fitted: fixed cost of one tensor-parallel all-reduce
    kv_fp8_read_cost_fp8_gpu: float  # fitted (H100 rows): fp8 KV cost per byte per q head
    kv_fp8_read_cost_other_gpu: float  # fitted (A100 rows): same, GPUs without FP8
    reserve_gib: float  # fitted: per-GPU memory neither weights, activations nor KV
    weight_only_dequant_overhead: float  # assumed (no rows): extra work of dequantising GEMMs
    pp_bubble: float  # assumed (no vLLM pipeline rows): share of a stage not overlapped
    idle_power_fraction: float  # from nvidia-smi of an idle H100 (68 W / 700 W)
    power_sm: float  # fitted (Fig 16 vLLM rows): power weight of SM activity
    power_tensor: float  # fitted: power weight of tensor-pipe activity
    power_dram: float  # fitted: power weight of DRAM activity


#: Fitted on the Argonne vLLM rows (A100 40GB SXM, H100 SXM) on 2026-11-24; figures in
#: :mod:`optiinfra.sandbox.calibration`.
FITTED = PerfConstants(
    mem_efficiency=0.798,
    compute_efficiency=0.842,
    overlap=0.99,
    step_overhead_s=2.14e-3,
    per_seq_overhead_s=61.7e-6,
    per_prefill_token_overhead_s=7.96e-6,
    allreduce_latency_s=27.2e-6,
    kv_fp8_read_cost_fp8_gpu=0.698,
    kv_fp8_read_cost_other_gpu=7.12,
    reserve_gib=2.28,
    weight_only_dequant_overhead=0.25,
    pp_bubble=0.5,
    idle_power_fraction=0.1,
    power_sm=0.716,
    power_tensor=1.393,
    power_dram=0.0,
)


@dataclass(slots=True)
class StepCost:
    """One iteration: its duration and what a GPU of the server did meanwhile."""

    seconds: float
    sm_active: float  # 0-1 share of the step some kernel ran
    tensor_active: float  # 0-1 achieved FLOP/s over the dtype's dense peak
    dram_active: float  # 0-1 achieved bytes/s over the datasheet bandwidth
    power_watts: float  # per GPU
    compute_seconds: float = 0.0
    memory_seconds: float = 0.0
    comm_seconds: float = 0.0
    cpu_seconds: float = 0.0


def weight_bytes_per_param(quantization: str) -> float:
    """Bytes one linear-layer weight occupies under a quantization setting."""
    return _WEIGHT_BYTES[quantization]


class StepTimeModel:
    """Step time and KV capacity of one server: ``gpu`` x (tp x pp) serving ``model``.

    Example::

        >>> from optiinfra.catalog import gpu_spec, model_spec
        >>> m = StepTimeModel(gpu_spec("H100"), model_spec("llama-3-8b"), EngineArgs())
        >>> m.kv_cache_tokens > 400_000
        True
        >>> round(m.step(0, 1, 1000).seconds * 1000, 1)  # one decode token, in ms
        7.9
    """

    def __init__(
        self,
        gpu: GpuSpec,
        model: ModelSpec,
        args: EngineArgs,
        constants: PerfConstants = FITTED,
    ) -> None:
        self.gpu, self.model, self.args, self.constants = gpu, model, args, constants
        c = constants
        tp, pp = args.tensor_parallel_size, args.pipeline_parallel_size
        q = _WEIGHT_BYTES[args.quantization]
        vh = float(model.vocab_size * model.hidden_size)
        total = model.params_b * 1e9
        tied = vh > _TIED_SHARE * total
        body = total - vh * (1 if tied else 2)
        active_body = model.active_params_b * 1e9 - vh * (1 if tied else 2)
        self.weight_bytes_per_gpu = (body * q + vh * 2 * (1 if tied else 2)) / (tp * pp)

        # KV cache
        kv_b = 1.0 if args.kv_cache_dtype == "fp8" else 2.0
        head_share = math.ceil(model.kv_heads / tp) / model.kv_heads
        self.kv_bytes_per_token = model.kv_bytes_per_token(kv_b) * head_share / pp
        budget = gpu.memory_bytes * args.gpu_memory_utilization
        tokens = args.max_num_batched_tokens
        self.reserve_bytes = (
            c.reserve_gib * GiB
            + tokens * model.hidden_size * _ACT_BYTES_PER_HIDDEN / tp
            + min(args.max_num_seqs, tokens) * model.vocab_size * 4.0 / tp
        )
        free = budget - self.weight_bytes_per_gpu - self.reserve_bytes
        self.kv_cache_tokens = max(0, int(free // self.kv_bytes_per_token))
        self.max_model_len = args.max_model_len or model.max_context
        if self.kv_cache_tokens < self.max_model_len:
            missing = self.max_model_len * self.kv_bytes_per_token - free
            raise ModelDoesNotFitError(
                f"{model.name} (quantization {args.quantization}, kv_cache_dtype "
                f"{args.kv_cache_dtype}) does not fit on {tp * pp} x {gpu.name} "
                f"(tensor_parallel_size {tp}, pipeline_parallel_size {pp}): each GPU needs "
                f"{self.weight_bytes_per_gpu / GiB:.1f} GiB of weights + "
                f"{self.reserve_bytes / GiB:.1f} GiB reserve + "
                f"{self.max_model_len * self.kv_bytes_per_token / GiB:.1f} GiB of KV cache "
                f"for one {self.max_model_len}-token sequence, but gpu_memory_utilization "
                f"{args.gpu_memory_utilization} of {gpu.memory_gib:g} GiB allows "
                f"{budget / GiB:.1f} GiB: {missing / GiB:.1f} GiB short. Use more GPUs "
                f"(tensor_parallel_size), a bigger GPU, quantization or a smaller "
                f"max_model_len."
            )

        # bytes moved per step
        share = 1.0 / (tp * pp)
        if model.active_params_b < model.params_b:
            experts, k = _MOE.get(model.name, _DEFAULT_MOE)
            expert = (total - model.active_params_b * 1e9) / (experts - k)
            shared = body - experts * expert
            self._moe = True
            self._experts = float(experts)
            self._moe_keep = 1.0 - k / experts  # chance a token skips a given expert
            self._expert_bytes = expert * q * share
            self._w_fixed = shared * q * share + vh * 2 / tp
        else:
            self._moe = False
            self._experts = self._moe_keep = self._expert_bytes = 0.0
            self._w_fixed = body * q * share + vh * 2 / tp
        if args.kv_cache_dtype == "fp8":
            group = model.attention_heads / model.kv_heads
            fp8_gpu = bool(gpu.fp8_tflops)
            cost = group * (c.kv_fp8_read_cost_fp8_gpu if fp8_gpu else c.kv_fp8_read_cost_other_gpu)
        else:
            cost = 1.0
        self._kv_read = self.kv_bytes_per_token * cost
        self._kv_write = self.kv_bytes_per_token

        # FLOPs per step
        self._flop_tok = 2.0 * active_body * share
        self._flop_logit = 2.0 * vh / tp
        attn_dim = model.attention_heads * model.head_dim
        self._flop_attn = 4.0 * model.layers * attn_dim * share
        quant = args.quantization
        fp16 = gpu.tensor_tflops("fp16") * 1e12
        native = {"fp8": gpu.fp8_tflops, "int8": gpu.int8_tops}.get(quant)
        if quant == "none":
            self.peak_flops = fp16
        elif native:
            self.peak_flops = native * 1e12
        else:  # weight-only: int4 everywhere, fp8 / int8 where the GPU lacks the format
            self.peak_flops = fp16 / (1.0 + c.weight_only_dequant_overhead)
        self.bandwidth = gpu.memory_bandwidth_gbps * 1e9
        self._inv_bw = 1.0 / (self.bandwidth * c.mem_efficiency)
        self._inv_flops = 1.0 / (self.peak_flops * c.compute_efficiency)

        # communication
        link = _LINK_BYTES_PER_S.get(gpu.name, _PCIE_BYTES_PER_S)
        act = model.hidden_size * 2.0
        if tp > 1:
            calls = 2.0 * model.layers / pp
            self._ar_fixed = calls * c.allreduce_latency_s
            self._ar_tok = calls * 2.0 * (tp - 1) / tp * act / link
        else:
            self._ar_fixed = self._ar_tok = 0.0
        self._pp_factor = 1.0 + (pp - 1) * c.pp_bubble
        self._p2p_fixed = (pp - 1) * c.allreduce_latency_s
        self._p2p_tok = (pp - 1) * act / link
        self._idle_w = c.idle_power_fraction * gpu.tdp_watts
        self._range_w = gpu.tdp_watts - self._idle_w

    @property
    def idle_watts(self) -> float:
        """Power of one GPU while the engine runs no iteration."""
        return self._idle_w

    def step(
        self,
        prefill_tokens: int,
        decode_seqs: int,
        context_tokens: int,
        prefill_attended: int | None = None,
    ) -> StepCost:
        """One engine iteration.

        ``prefill_tokens`` prompt tokens (chunks of one or more prompts) plus one new token
        for each of ``decode_seqs`` sequences whose KV caches hold ``context_tokens`` tokens
        in all. ``prefill_attended`` is the sum over the prefill tokens of how many tokens
        each attends to (its position in its prompt, cached prefix included); by default a
        single fresh prompt, ``P^2 / 2``.
        """
        c = self.constants
        tokens = prefill_tokens + decode_seqs
        if prefill_attended is None:
            prefill_attended = prefill_tokens * prefill_tokens // 2
        weights = self._w_fixed
        if self._moe and tokens:
            weights += self._experts * (1.0 - self._moe_keep**tokens) * self._expert_bytes
        nbytes = weights + self._kv_read * context_tokens + self._kv_write * tokens
        flops = (
            self._flop_tok * tokens
            + self._flop_logit * (decode_seqs + (1 if prefill_tokens else 0))
            + self._flop_attn * (context_tokens + prefill_attended)
        )
        mem_s = nbytes * self._inv_bw
        comp_s = flops * self._inv_flops
        # the larger of the two, plus the part of the smaller one that is not hidden
        gpu_s = comp_s + c.overlap * mem_s if comp_s > mem_s else mem_s + c.overlap * comp_s
        comm_s = self._ar_fixed + self._ar_tok * tokens
        busy = (gpu_s + comm_s) * self._pp_factor + self._p2p_fixed + self._p2p_tok * tokens
        cpu_s = (
            c.step_overhead_s
            + c.per_seq_overhead_s * decode_seqs
            + c.per_prefill_token_overhead_s * prefill_tokens
        )
        seconds = busy + cpu_s
        sm = busy / seconds
        tensor = min(1.0, flops / (self.peak_flops * seconds))
        dram = min(1.0, nbytes / (self.bandwidth * seconds))
        load = min(1.0, c.power_sm * sm + c.power_tensor * tensor + c.power_dram * dram)
        return StepCost(
            seconds=seconds,
            sm_active=sm,
            tensor_active=tensor,
            dram_active=dram,
            power_watts=self._idle_w + self._range_w * load,
            compute_seconds=comp_s,
            memory_seconds=mem_s,
            comm_seconds=comm_s,
            cpu_seconds=cpu_s,
        )

    def with_constants(self, constants: PerfConstants) -> StepTimeModel:
        """The same server under other constants (used when fitting them)."""
        return StepTimeModel(self.gpu, self.model, self.args, constants)


def constants_with(**changes: float) -> PerfConstants:
    """:data:`FITTED` with some constants changed (for experiments and tests)."""
    return replace(FITTED, **changes)
