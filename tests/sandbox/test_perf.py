"""The GPU step-time roofline: directions of change, memory accounting, clear errors."""

from __future__ import annotations

import math

import pytest

from optiinfra.catalog import gpu_spec, model_spec
from optiinfra.errors import OptiInfraError
from optiinfra.sandbox.perf import (
    FITTED,
    ModelDoesNotFitError,
    StepTimeModel,
    constants_with,
)
from optiinfra.sandbox.spec import EngineArgs

LLAMA8 = "meta-llama/Meta-Llama-3-8B"


def perf(gpu: str = "H100", model: str = LLAMA8, **args: object) -> StepTimeModel:
    return StepTimeModel(gpu_spec(gpu), model_spec(model), EngineArgs(**args))  # type: ignore[arg-type]


def test_more_decode_sequences_take_longer_but_give_more_tokens_per_second() -> None:
    m = perf()
    previous_seconds, previous_rate = 0.0, 0.0
    for seqs in (1, 8, 32, 128, 256):
        seconds = m.step(0, seqs, seqs * 1000).seconds
        rate = seqs / seconds
        assert seconds > previous_seconds
        assert rate > previous_rate
        previous_seconds, previous_rate = seconds, rate


def test_longer_contexts_take_longer() -> None:
    m = perf()
    times = [m.step(0, 32, 32 * ctx).seconds for ctx in (128, 1024, 4096, 8192)]
    assert times == sorted(times)
    assert times[-1] > 1.5 * times[0]  # KV reads dominate at 32 x 8k tokens


def test_prefill_attention_grows_with_what_the_chunk_attends_to() -> None:
    m = perf()
    fresh = m.step(2048, 0, 0, prefill_attended=2048 * 1024).seconds
    late_chunk = m.step(2048, 0, 0, prefill_attended=2048 * 30_000).seconds
    assert late_chunk > fresh
    assert m.step(2048, 0, 0).seconds == pytest.approx(fresh, rel=1e-6)  # P^2/2 default


def test_fp8_weights_are_faster_than_fp16_on_h100_but_not_for_compute_on_a100() -> None:
    # a compute-bound prefill: H100 has FP8 tensor cores, the A100 does not
    h16, h8 = perf("H100"), perf("H100", quantization="fp8")
    assert h8.step(8192, 0, 0).seconds < 0.7 * h16.step(8192, 0, 0).seconds
    a16, a8 = perf("A100-80GB"), perf("A100-80GB", quantization="fp8")
    assert a8.step(8192, 0, 0).seconds >= a16.step(8192, 0, 0).seconds
    # decode reads half the weight bytes on both (weight-only FP8 on the A100)
    assert h8.step(0, 1, 1000).seconds < h16.step(0, 1, 1000).seconds
    assert a8.step(0, 1, 1000).seconds < a16.step(0, 1, 1000).seconds


def test_int4_shrinks_weights_but_computes_at_fp16_speed_or_slower() -> None:
    base, q4 = perf("L40S"), perf("L40S", quantization="int4")
    # 4-bit linear layers; embeddings and lm_head stay 16-bit (an AWQ Llama-3-8B: ~5.7 GB)
    assert 5.5e9 < q4.weight_bytes_per_gpu < 0.4 * base.weight_bytes_per_gpu
    assert q4.kv_cache_tokens > base.kv_cache_tokens
    assert q4.step(0, 1, 1000).seconds < base.step(0, 1, 1000).seconds
    assert q4.step(8192, 0, 0).seconds > base.step(8192, 0, 0).seconds


def test_bigger_gpu_memory_holds_more_kv_tokens() -> None:
    tokens = [perf(g).kv_cache_tokens for g in ("L4", "A100", "A100-80GB", "H200")]
    assert tokens == sorted(tokens)
    assert tokens[0] > 0


def test_fp8_kv_cache_doubles_capacity() -> None:
    auto, fp8 = perf("H100"), perf("H100", kv_cache_dtype="fp8")
    assert fp8.kv_bytes_per_token * 2 == auto.kv_bytes_per_token
    assert fp8.kv_cache_tokens == pytest.approx(2 * auto.kv_cache_tokens, rel=0.001)


def test_kv_capacity_follows_memory_arithmetic() -> None:
    m = perf("H100", gpu_memory_utilization=0.8)
    budget = gpu_spec("H100").memory_bytes * 0.8
    per_token = model_spec(LLAMA8).kv_bytes_per_token(2)
    assert m.kv_bytes_per_token == per_token == 131072
    expected = (budget - m.weight_bytes_per_gpu - m.reserve_bytes) // per_token
    assert m.kv_cache_tokens == expected
    assert 15.5e9 < m.weight_bytes_per_gpu < 16.5e9  # 8.03 B parameters x 2 bytes


def test_a_70b_model_on_one_l4_is_refused_clearly() -> None:
    with pytest.raises(ModelDoesNotFitError) as info:
        perf("L4", "meta-llama/Meta-Llama-3-70B")
    message = str(info.value)
    assert isinstance(info.value, OptiInfraError)
    for part in ("Meta-Llama-3-70B", "L4", "quantization none", "GiB short"):
        assert part in message
    short = float(message.split(" GiB short")[0].rsplit(" ", 1)[1])
    assert 100 < short < 130  # ~131 GiB of weights into ~21.6 GiB


def test_a_model_that_fits_weights_but_not_one_full_sequence_is_refused() -> None:
    with pytest.raises(ModelDoesNotFitError, match="max_model_len"):
        perf("L4", "meta-llama/Llama-3.2-3B", gpu_memory_utilization=0.5)
    # the same deployment with a shorter context fits
    assert perf("L4", "meta-llama/Llama-3.2-3B", max_model_len=8192).kv_cache_tokens > 8192


def test_tensor_parallel_halves_weights_and_kv_per_gpu() -> None:
    one, two = perf("A100-80GB"), perf("A100-80GB", tensor_parallel_size=2)
    assert two.weight_bytes_per_gpu == pytest.approx(one.weight_bytes_per_gpu / 2)
    assert two.kv_bytes_per_token == one.kv_bytes_per_token // 2
    assert two.kv_cache_tokens > 2 * one.kv_cache_tokens  # freed weight memory holds KV too


def test_tensor_parallel_beyond_kv_heads_replicates_them() -> None:
    # Qwen2-7B has 4 KV heads: 8 GPUs hold one head each, not half a head
    four = perf("L4", "Qwen/Qwen2-7B", tensor_parallel_size=4)
    eight = perf("L4", "Qwen/Qwen2-7B", tensor_parallel_size=8)
    assert eight.kv_bytes_per_token == four.kv_bytes_per_token


def test_tensor_parallel_adds_all_reduce_time_but_shortens_decode_of_a_big_model() -> None:
    one, four = perf("H100"), perf("H100", tensor_parallel_size=4)
    assert one.step(0, 1, 100).comm_seconds == 0
    assert four.step(0, 1, 100).comm_seconds > 64 * FITTED.allreduce_latency_s * 0.99
    big1 = perf("H200", "meta-llama/Meta-Llama-3-70B", quantization="fp8")
    big4 = perf("H200", "meta-llama/Meta-Llama-3-70B", quantization="fp8", tensor_parallel_size=4)
    assert big4.step(0, 16, 16_000).seconds < 0.6 * big1.step(0, 16, 16_000).seconds


def test_pipeline_stages_split_memory_and_add_a_bubble() -> None:
    one = perf("A100-80GB", "meta-llama/Meta-Llama-3-70B", tensor_parallel_size=2)
    pp = perf(
        "A100-80GB",
        "meta-llama/Meta-Llama-3-70B",
        tensor_parallel_size=2,
        pipeline_parallel_size=2,
    )
    assert pp.weight_bytes_per_gpu == pytest.approx(one.weight_bytes_per_gpu / 2)
    assert pp.kv_bytes_per_token == one.kv_bytes_per_token // 2
    assert pp.step(0, 8, 8000).seconds > 0.5 * one.step(0, 8, 8000).seconds


def test_mixture_of_experts_reads_more_experts_as_the_batch_grows() -> None:
    m = perf("H100", "mistralai/Mixtral-8x7B-v0.1", tensor_parallel_size=2)
    dense_equivalent = model_spec("mistralai/Mixtral-8x7B-v0.1").params_b * 1e9 * 2 / 2
    assert m.weight_bytes_per_gpu == pytest.approx(dense_equivalent, rel=0.01)
    one = m.step(0, 1, 100).memory_seconds
    many = m.step(0, 32, 3200).memory_seconds
    assert many > 2.5 * one  # 1 token reads 2 of 8 experts; 32 tokens nearly all 8
    # 12.9 B active of 46.7 B: one token's weight reads are ~28 % of all weights
    bandwidth = gpu_spec("H100").memory_bandwidth_gbps * 1e9 * FITTED.mem_efficiency
    assert one * bandwidth == pytest.approx(0.28 * m.weight_bytes_per_gpu, rel=0.1)


def test_activity_fractions_and_power_stay_in_range() -> None:
    for m in (perf("H100"), perf("L4", quantization="fp8"), perf("A10G", quantization="int4")):
        spec = m.gpu
        for args in ((0, 1, 100), (8192, 0, 0), (512, 200, 400_000), (0, 256, 10_000)):
            cost = m.step(*args)
            assert cost.seconds > 0
            for value in (cost.sm_active, cost.tensor_active, cost.dram_active):
                assert 0 <= value <= 1
            assert 0.1 * spec.tdp_watts <= cost.power_watts <= spec.tdp_watts
    m = perf("H100")
    decode, prefill = m.step(0, 1, 100), m.step(8192, 0, 0)
    assert decode.dram_active > decode.tensor_active  # memory-bound
    assert prefill.tensor_active > prefill.dram_active  # compute-bound
    assert prefill.power_watts > decode.power_watts


def test_constants_are_injectable_and_change_the_result() -> None:
    gpu, model, args = gpu_spec("H100"), model_spec(LLAMA8), EngineArgs()
    slow = StepTimeModel(gpu, model, args, constants_with(step_overhead_s=0.05))
    assert slow.step(0, 1, 100).seconds > 0.05
    ideal = constants_with(kv_fp8_read_cost_fp8_gpu=0.25)  # 1 / (32 heads / 8 KV heads)
    m = StepTimeModel(gpu, model, EngineArgs(kv_cache_dtype="fp8"), ideal)
    auto = StepTimeModel(gpu, model, args, ideal)
    assert m.step(0, 64, 64 * 4000).seconds < auto.step(0, 64, 64 * 4000).seconds
    assert math.isclose(FITTED.mem_efficiency, perf().constants.mem_efficiency)
