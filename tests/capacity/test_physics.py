"""Physics sanity of step times and the memory model."""

from __future__ import annotations

import pytest

from optiinfra.capacity import CapacityError, CapacityModel, ServingConfig, Workload


@pytest.fixture(scope="module")
def model() -> CapacityModel:
    return CapacityModel.default()


def test_more_bandwidth_decodes_faster(model: CapacityModel) -> None:
    # Same tensor FLOPs, more HBM bandwidth: A100 80GB (2039 GB/s) vs 40GB (1555 GB/s);
    # H200 (4800) vs H100 (3350).
    for slow, fast in (("A100-40GB", "A100-80GB"), ("H100", "H200")):
        a = model.decode_tokens_per_s(ServingConfig(gpu=slow, model="llama-3-8b"), 32, 1024)
        b = model.decode_tokens_per_s(ServingConfig(gpu=fast, model="llama-3-8b"), 32, 1024)
        assert b.value > a.value * 1.1


def test_fp8_weights_decode_faster_and_take_less_memory(model: CapacityModel) -> None:
    for gpu in ("H100", "L4", "A100-80GB"):
        fp16 = ServingConfig(gpu=gpu, model="llama-3.1-8b", max_model_len=4096)
        fp8 = ServingConfig(gpu=gpu, model="llama-3.1-8b", weight_dtype="fp8", max_model_len=4096)
        assert (
            model.decode_tokens_per_s(fp8, 8, 1024).value
            > model.decode_tokens_per_s(fp16, 8, 1024).value
        )
        assert model.memory(fp8).weights_gib == pytest.approx(model.memory(fp16).weights_gib / 2)
        assert model.memory(fp8).kv_capacity_tokens > model.memory(fp16).kv_capacity_tokens


def test_fp8_kv_cache_doubles_the_tokens_that_fit(model: CapacityModel) -> None:
    auto = model.memory(ServingConfig(gpu="H100", model="llama-3-8b"))
    fp8 = model.memory(ServingConfig(gpu="H100", model="llama-3-8b", kv_cache_dtype="fp8"))
    assert abs(fp8.kv_capacity_tokens - 2 * auto.kv_capacity_tokens) <= 1
    assert auto.kv_bytes_per_token == 32 * 2 * 8 * 128 * 2


def test_70b_fp16_does_not_fit_one_24gb_gpu_and_says_by_how_much(model: CapacityModel) -> None:
    config = ServingConfig(gpu="A10G", model="llama-3.1-70b", max_model_len=4096)
    fit = model.memory(config)
    assert not fit.fits
    # 70.6e9 params x 2 bytes = 131.5 GiB of weights against 21.6 GiB usable.
    assert fit.weights_gib == pytest.approx(131.5, abs=0.1)
    assert fit.shortfall_gib > 110
    assert fit.kv_capacity_tokens == 0 and fit.max_concurrent_sequences(1000) == 0
    prediction = model.predict(config, Workload(500, 100), 0.1)
    assert prediction.saturated and "does not fit" in prediction.reason
    assert any("GiB short" in note for note in prediction.notes)
    assert model.max_rate(config, Workload(500, 100)).value == 0.0


def test_tensor_parallel_fits_what_one_gpu_cannot(model: CapacityModel) -> None:
    one = ServingConfig(gpu="H100", model="llama-3.1-70b", max_model_len=8192)
    two = ServingConfig(gpu="H100", model="llama-3.1-70b", max_model_len=8192, tensor_parallel=2)
    assert not model.memory(one).fits and model.memory(one).shortfall_gib > 50
    fit = model.memory(two)
    assert fit.fits and fit.kv_capacity_tokens > 8192
    assert fit.weights_gib == pytest.approx(model.memory(one).weights_gib / 2)
    assert model.predict(two, Workload(1000, 200), 1.0).saturated is False


def test_tensor_parallel_speeds_decode_less_than_linearly(model: CapacityModel) -> None:
    tp1 = model.decode_tokens_per_s(ServingConfig(gpu="H100", model="llama-3-8b"), 16, 1024)
    tp2 = model.decode_tokens_per_s(
        ServingConfig(gpu="H100", model="llama-3-8b", tensor_parallel=2), 16, 1024
    )
    assert tp1.value < tp2.value < 2 * tp1.value


def test_pipeline_parallel_splits_memory_and_widens_the_interval(model: CapacityModel) -> None:
    pp1 = ServingConfig(gpu="L40S", model="llama-3.1-70b", tensor_parallel=2, max_model_len=4096)
    pp2 = ServingConfig(
        gpu="L40S",
        model="llama-3.1-70b",
        tensor_parallel=2,
        pipeline_parallel=2,
        max_model_len=4096,
    )
    assert not model.memory(pp1).fits and model.memory(pp2).fits
    assert pp2.gpus_per_replica == 4
    prediction = model.predict(pp2, Workload(500, 100), 0.2)
    assert any("pipeline parallel" in note for note in prediction.notes)


def test_moe_reads_only_routed_experts_but_stores_all(model: CapacityModel) -> None:
    mixtral = ServingConfig(gpu="H100", model="mixtral-8x7b", tensor_parallel=2)
    llama70 = ServingConfig(gpu="H100", model="llama-2-70b", tensor_parallel=2)
    # 46.7B stored, 12.9B active: at batch 1 it reads ~2/8 of expert weights.
    assert model.memory(mixtral).weights_gib == pytest.approx(46.7e9 * 2 / 2**30 / 2, rel=1e-3)
    one = model.decode_tokens_per_s(mixtral, 1, 512).value
    assert one > 2 * model.decode_tokens_per_s(llama70, 1, 512).value
    # Large batches touch every expert: per-sequence speed falls more than a dense model's.
    per_seq_64 = model.decode_tokens_per_s(mixtral, 64, 512).value / 64
    assert per_seq_64 < one / 2


def test_prefill_is_compute_bound_and_grows_with_the_prompt(model: CapacityModel) -> None:
    config = ServingConfig(gpu="L4", model="llama-3-8b")
    short = model.predict(config, Workload(500, 50, prompt_cv=0.0), 0.0).ttft_p50_s.value
    long = model.predict(config, Workload(4000, 50, prompt_cv=0.0), 0.0).ttft_p50_s.value
    assert 6 < long / short < 10
    # L4 (121 TFLOPs) vs H100 (989 TFLOPs): prefill time ratio near the FLOPs ratio.
    h100 = model.predict(
        ServingConfig(gpu="H100", model="llama-3-8b"), Workload(4000, 50, prompt_cv=0.0), 0.0
    ).ttft_p50_s.value
    assert 5 < long / h100 < 9


def test_unknown_names_raise_capacity_error_naming_them(model: CapacityModel) -> None:
    with pytest.raises(CapacityError, match="'B300'"):
        model.memory(ServingConfig(gpu="B300", model="llama-3-8b"))
    with pytest.raises(CapacityError, match="'gpt-5'"):
        model.predict(ServingConfig(gpu="H100", model="gpt-5"), Workload(100, 10), 1.0)
    with pytest.raises(CapacityError, match="'fp4'"):
        ServingConfig(gpu="H100", model="llama-3-8b", weight_dtype="fp4")
    with pytest.raises(CapacityError, match="'int8'"):
        ServingConfig(gpu="H100", model="llama-3-8b", kv_cache_dtype="int8")
    with pytest.raises(CapacityError, match="gpu_count"):
        ServingConfig(gpu="H100", model="llama-3-8b", tensor_parallel=2, gpu_count=3)
    assert ServingConfig(gpu="H100", model="x", tensor_parallel=2, gpu_count=8).replicas == 4
