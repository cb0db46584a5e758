"""Does a config fit in GPU memory, and how many tokens of KV cache are left?

vLLM's budget per GPU is ``gpu_memory_utilization x memory``; from it come the weights
(split across tensor and pipeline stages), a reserve for activations, the CUDA context
and CUDA graphs (vLLM measures it with a profiling pass; we estimate it), and what
remains is KV cache, handed out in blocks to running sequences.
"""

from __future__ import annotations

from optiinfra.capacity.physics import Deployment, resolve
from optiinfra.capacity.records import MemoryFit, ServingConfig

_GIB = 1024**3
#: CUDA context, NCCL buffers and captured CUDA graphs, per GPU.
_FIXED_RESERVE_BYTES = 1.0 * _GIB
#: Live activation bytes per batched token per unit of hidden size (fp16 residual,
#: attention output, MLP intermediate ~3.5x hidden, a few copies): ~16 x 2 bytes.
_ACTIVATION_BYTES_PER_TOKEN_HIDDEN = 32.0
#: Default token budget of one step when ``max_num_batched_tokens`` is None (vLLM's
#: chunked-prefill default for online serving).
DEFAULT_BATCHED_TOKENS = 2048


def batched_tokens(config: ServingConfig) -> int:
    return config.max_num_batched_tokens or DEFAULT_BATCHED_TOKENS


def activation_reserve_bytes(config: ServingConfig, dep: Deployment) -> float:
    """Estimated peak non-weight, non-KV memory of one GPU: a fixed part, activations of
    a full step (split by TP), and fp32 logits of ``max_num_seqs`` sequences."""
    tokens = batched_tokens(config)
    activations = tokens * dep.model.hidden_size * _ACTIVATION_BYTES_PER_TOKEN_HIDDEN / dep.tp
    logits = min(config.max_num_seqs, tokens) * dep.model.vocab_size * 4.0
    return _FIXED_RESERVE_BYTES + activations + logits


def memory_fit(config: ServingConfig, dep: Deployment | None = None) -> MemoryFit:
    """Per-GPU memory budget of ``config``.

    It fits when the weights, the reserve and the KV cache of one ``max_model_len``
    sequence (vLLM refuses to start otherwise) fit in the budget; ``shortfall_gib`` is
    how much more memory per GPU that would take.

    Example::

        >>> fit = memory_fit(ServingConfig(gpu="A10G", model="llama-2-70b"))
        >>> fit.fits, round(fit.shortfall_gib)
        (False, 110)
    """
    dep = dep or resolve(config)
    total = dep.gpu.memory_gib * _GIB
    usable = total * config.gpu_memory_utilization
    weights = dep.weight_bytes_per_gpu(tokens=1e9)  # every expert resident
    reserve = activation_reserve_bytes(config, dep)
    per_token = dep.kv_bytes_per_token_per_gpu()
    max_len = config.max_model_len or dep.model.max_context
    kv_bytes = usable - weights - reserve
    needed_kv = max_len * per_token
    shortfall = max(0.0, needed_kv - kv_bytes)
    fits = shortfall == 0.0
    kv_tokens = int(max(kv_bytes, 0.0) // per_token) if fits else 0
    return MemoryFit(
        fits=fits,
        gpu_memory_gib=dep.gpu.memory_gib,
        usable_gib=usable / _GIB,
        weights_gib=weights / _GIB,
        activation_reserve_gib=reserve / _GIB,
        kv_cache_gib=max(kv_bytes, 0.0) / _GIB if fits else 0.0,
        kv_bytes_per_token=per_token,
        kv_capacity_tokens=kv_tokens,
        shortfall_gib=shortfall / _GIB,
        max_model_len=max_len,
    )
