"""Serving predictions at a request rate, saturation, and the SLO-bound rate."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest

from optiinfra.capacity import (
    CapacityError,
    CapacityModel,
    Estimate,
    ServingConfig,
    ServingPrediction,
    Workload,
)

H100_8B = ServingConfig(gpu="H100", model="llama-3.1-8b", max_model_len=8192)
L4_8B_FP8 = ServingConfig(gpu="L4", model="llama-3.1-8b", weight_dtype="fp8", max_model_len=8192)
CHAT = Workload(prompt_tokens=1000, output_tokens=200)


@pytest.fixture(scope="module")
def model() -> CapacityModel:
    return CapacityModel.default()


def _estimates(p: ServingPrediction) -> list[Estimate]:
    return [getattr(p, f.name) for f in fields(p) if isinstance(getattr(p, f.name), Estimate)]


def test_zero_rate_is_an_idle_replica_with_finite_latency(model: CapacityModel) -> None:
    p = model.predict(H100_8B, CHAT, 0.0)
    assert not p.saturated
    assert p.running_batch.value == 0.0 and p.gpu_busy_fraction.value == 0.0
    assert p.output_tokens_per_s.value == 0.0
    assert 0 < p.ttft_p50_s.value <= p.ttft_p95_s.value < 1.0
    assert 0 < p.itl_p95_s.value < 0.05


def test_every_estimate_brackets_its_value(model: CapacityModel) -> None:
    for config in (H100_8B, L4_8B_FP8):
        capacity = model.predict(config, CHAT, 0.0).capacity_rps.value
        for rate in (0.0, 0.3 * capacity, 0.9 * capacity):
            for e in _estimates(model.predict(config, CHAT, rate)):
                assert e.low <= e.value <= e.high, e
            assert model.predict(config, CHAT, rate).output_tokens_per_s.value == pytest.approx(
                rate * CHAT.output_tokens
            )


def test_latency_and_occupancy_rise_with_rate(model: CapacityModel) -> None:
    capacity = model.predict(L4_8B_FP8, CHAT, 0.0).capacity_rps.value
    previous = model.predict(L4_8B_FP8, CHAT, 0.0)
    for fraction in (0.2, 0.4, 0.6, 0.8, 0.95):
        p = model.predict(L4_8B_FP8, CHAT, fraction * capacity)
        assert p.ttft_p95_s.value >= previous.ttft_p95_s.value
        assert p.itl_p95_s.value >= previous.itl_p95_s.value
        assert p.running_batch.value > previous.running_batch.value
        assert p.gpu_busy_fraction.value >= previous.gpu_busy_fraction.value
        previous = p
    assert previous.ttft_p95_s.value > 2 * model.predict(L4_8B_FP8, CHAT, 0.0).ttft_p95_s.value


def test_rate_beyond_capacity_is_flagged_saturated(model: CapacityModel) -> None:
    capacity = model.predict(H100_8B, CHAT, 0.0).capacity_rps
    assert capacity.low < capacity.value < capacity.high
    p = model.predict(H100_8B, CHAT, 2 * capacity.value)
    assert p.saturated and p.reason
    assert math.isinf(p.ttft_p95_s.value) and math.isinf(p.itl_p95_s.value)
    assert p.output_tokens_per_s.value == pytest.approx(capacity.value * CHAT.output_tokens)
    assert p.gpu_busy_fraction.value == 1.0
    assert not model.predict(H100_8B, CHAT, 0.9 * capacity.value).saturated


def test_prefix_cache_hits_cut_ttft_and_raise_capacity(model: CapacityModel) -> None:
    cold = model.predict(H100_8B, Workload(4000, 100), 1.0)
    warm = model.predict(H100_8B, Workload(4000, 100, prefix_hit_ratio=0.75), 1.0)
    assert warm.ttft_p50_s.value < cold.ttft_p50_s.value / 2
    assert warm.capacity_rps.value > cold.capacity_rps.value
    off = ServingConfig(
        gpu="H100", model="llama-3.1-8b", max_model_len=8192, enable_prefix_caching=False
    )
    assert model.predict(off, Workload(4000, 100, prefix_hit_ratio=0.75), 1.0).ttft_p50_s.value == (
        pytest.approx(cold.ttft_p50_s.value)
    )


def test_max_rate_is_monotone_in_the_slo(model: CapacityModel) -> None:
    capacity = model.max_rate(L4_8B_FP8, CHAT)
    assert capacity.value == pytest.approx(model.predict(L4_8B_FP8, CHAT, 0).capacity_rps.value)
    previous = 0.0
    for itl in (0.04, 0.06, 0.08, 0.12, 0.2, 1.0):
        rate = model.max_rate(L4_8B_FP8, CHAT, itl_p95_s=itl)
        assert rate.low <= rate.value <= rate.high
        assert rate.value >= previous
        assert rate.value <= capacity.value
        previous = rate.value
    previous = 0.0
    for ttft in (1.0, 1.5, 2.0, 4.0, 10.0):
        rate = model.max_rate(L4_8B_FP8, CHAT, ttft_p95_s=ttft, itl_p95_s=0.2)
        assert rate.value >= previous
        previous = rate.value
    # Near the slot limit the admission queue makes TTFT climb: a tight TTFT SLO binds.
    assert model.max_rate(L4_8B_FP8, CHAT, ttft_p95_s=1.0).value < capacity.value
    both = model.max_rate(L4_8B_FP8, CHAT, ttft_p95_s=2.0, itl_p95_s=0.08).value
    assert both <= model.max_rate(L4_8B_FP8, CHAT, ttft_p95_s=2.0).value
    assert both <= model.max_rate(L4_8B_FP8, CHAT, itl_p95_s=0.08).value


def test_max_rate_meets_the_slo_it_was_asked_for(model: CapacityModel) -> None:
    rate = model.max_rate(H100_8B, CHAT, ttft_p95_s=0.5, itl_p95_s=0.03)
    assert rate.value > 0
    p = model.predict(H100_8B, CHAT, rate.value)
    assert p.ttft_p95_s.value <= 0.5 + 1e-9 and p.itl_p95_s.value <= 0.03 + 1e-9
    assert model.max_rate(H100_8B, CHAT, itl_p95_s=1e-4).value == 0.0


def test_cheaper_gpu_serves_less_at_the_same_slo(model: CapacityModel) -> None:
    slo = {"ttft_p95_s": 3.0, "itl_p95_s": 0.15}
    h100 = model.max_rate(H100_8B, CHAT, **slo)
    l4 = model.max_rate(L4_8B_FP8, CHAT, **slo)
    assert 0 < l4.value < h100.value


def test_a_gpu_outside_the_benchmark_gets_a_wider_interval(model: CapacityModel) -> None:
    def width(e: Estimate) -> float:
        return math.log(e.high / e.low)

    a100 = model.predict(ServingConfig(gpu="A100-40GB", model="llama-3-8b"), CHAT, 0.0)
    a100_80 = model.predict(ServingConfig(gpu="A100-80GB", model="llama-3-8b"), CHAT, 0.0)
    assert width(a100_80.itl_p95_s) > 1.5 * width(a100.itl_p95_s)
    assert any("spec-sheet" in note for note in a100_80.notes)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Workload(float("nan"), 10), "prompt_tokens"),
        (lambda: Workload(100, float("inf")), "output_tokens"),
        (lambda: Workload(100, 0), "output_tokens"),
        (lambda: Workload(0, 10), "prompt_tokens"),
        (lambda: Workload(100, 10, prefix_hit_ratio=1.5), "prefix_hit_ratio"),
        (lambda: Workload(100, 10, prompt_cv=float("nan")), "prompt_cv"),
        (
            lambda: ServingConfig(gpu="H100", model="m", gpu_memory_utilization=float("nan")),
            "gpu_memory_utilization",
        ),
        (lambda: ServingConfig(gpu="H100", model="m", tensor_parallel=0), "tensor_parallel"),
    ],
)
def test_bad_inputs_raise_naming_the_field(build: object, field: str) -> None:
    with pytest.raises(CapacityError, match=field):
        build()  # type: ignore[operator]


def test_bad_rates_and_slos_raise(model: CapacityModel) -> None:
    for rate in (float("nan"), -1.0, float("inf")):
        with pytest.raises(CapacityError, match="rate_rps"):
            model.predict(H100_8B, CHAT, rate)
    with pytest.raises(CapacityError, match="ttft_p95_s"):
        model.max_rate(H100_8B, CHAT, ttft_p95_s=float("nan"))
    with pytest.raises(CapacityError, match="itl_p95_s"):
        model.max_rate(H100_8B, CHAT, itl_p95_s=0.0)


@pytest.mark.parametrize(("gpu", "ttft", "itl"), [("L4", 2.0, 0.15), ("H100", 0.5, None)])
def test_central_rate_is_max_rates_central_value(
    model: CapacityModel, gpu: str, ttft: float, itl: float | None
) -> None:
    config = ServingConfig(gpu=gpu, model="llama-3-8b", max_model_len=8192)
    workload = Workload(1000, 200)
    full = model.max_rate(config, workload, ttft_p95_s=ttft, itl_p95_s=itl)
    assert model.central_rate(config, workload, ttft_p95_s=ttft, itl_p95_s=itl) == full.value
    assert full.low <= full.value <= full.high
