"""The sandbox against Argonne's measured vLLM runs (A100 40GB SXM, H100 SXM).

Each table row is replayed through the sandbox's own engine simulator (its scheduler
over the step-time model, in virtual time), so the figures measure what a sandbox
server does. Run with ``-s`` to see them; they are also recorded as test properties.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from optiinfra.catalog import GpuSpec, ModelSpec
from optiinfra.sandbox.calibration import (
    compare_power_with_argonne,
    compare_ttft_with_argonne,
    compare_with_argonne,
    default_run_batch,
    engine_run_batch,
    static_batch_run,
)
from optiinfra.sandbox.perf import StepTimeModel
from optiinfra.sandbox.spec import EngineArgs

Record = Callable[[str, object], None]


@pytest.fixture(scope="module")
def comparison():  # type: ignore[no-untyped-def]
    return compare_with_argonne(engine_run_batch)


def test_median_errors_of_latency_and_throughput_are_below_25_percent(
    comparison, record_property: Record
) -> None:
    s = comparison.attrs
    for key, value in s.items():
        record_property(key, value)
    by_gpu = comparison.groupby("gpu")["latency_rel_error"].agg(lambda e: float(e.abs().median()))
    print(
        f"\nArgonne vLLM rows modelled: {int(s['rows'])} "
        f"(by GPU: {comparison['gpu'].value_counts().to_dict()})\n"
        f"latency    |rel error| median {s['latency_median_abs_error']:.1%}, "
        f"p90 {s['latency_p90_abs_error']:.1%}\n"
        f"throughput |rel error| median {s['throughput_median_abs_error']:.1%}, "
        f"p90 {s['throughput_p90_abs_error']:.1%}\n"
        f"latency median by GPU: {by_gpu.round(3).to_dict()}"
    )
    assert s["rows"] >= 550
    assert s["latency_median_abs_error"] < 0.25
    assert s["throughput_median_abs_error"] < 0.25
    # tighter than the target, so a regression of the fitted constants shows
    assert s["latency_median_abs_error"] < 0.08
    assert s["latency_p90_abs_error"] < 0.25


def test_every_modelable_configuration_is_covered(comparison) -> None:  # type: ignore[no-untyped-def]
    assert set(comparison["gpu"]) == {"A100 40GB SXM", "H100 SXM"}
    assert {"fp8"} <= set(comparison["weight_dtype"]) and {"fp8"} <= set(
        comparison["kv_cache_dtype"]
    )
    assert "mistralai/Mixtral-8x7B-v0.1" in set(comparison["model"])
    assert {1, 2, 4} <= set(comparison["gpus"])
    # throughput follows Argonne's definition from the predicted latency
    row = comparison.iloc[0]
    tokens = row.batch_size * (row.input_tokens + row.output_tokens)
    assert row.predicted_throughput_tok_s == pytest.approx(tokens / row.predicted_latency_s)
    # each configuration's errors are centred: no group is off by more than 15 % in median
    groups = comparison.groupby(["gpu", "model", "gpus", "weight_dtype", "kv_cache_dtype"])
    worst = groups["latency_rel_error"].median().abs().max()
    assert worst < 0.15


def test_ttft_and_power_tables_are_matched_too(record_property: Record) -> None:
    ttft = compare_ttft_with_argonne()
    power = compare_power_with_argonne()
    record_property("ttft_max_abs_error", float(ttft["rel_error"].abs().max()))
    record_property("power_median_abs_error", float(power["rel_error"].abs().median()))
    print(
        f"\nTTFT (Fig 22, {len(ttft)} rows) max |rel error| {ttft['rel_error'].abs().max():.1%}; "
        f"power (Fig 16, {len(power)} rows) median {power['rel_error'].abs().median():.1%}"
    )
    assert len(ttft) == 6 and len(power) == 16
    assert ttft["rel_error"].abs().max() < 0.1
    assert power["rel_error"].abs().median() < 0.15


def test_the_run_batch_seam_is_what_gets_compared() -> None:
    calls: list[tuple[str, str, int, int, int, int]] = []

    def twice_as_slow(
        gpu: GpuSpec, model: ModelSpec, args: EngineArgs, batch: int, prompt: int, output: int
    ) -> tuple[float, float]:
        calls.append((gpu.name, model.name, args.tensor_parallel_size, batch, prompt, output))
        latency, ttft = default_run_batch(gpu, model, args, batch, prompt, output)
        return 2 * latency, ttft

    slow = compare_with_argonne(run_batch=twice_as_slow)
    assert len(calls) == len(slow)
    assert slow.attrs["latency_median_abs_error"] > 0.7  # every latency doubled
    assert calls[0][0] in {"A100 40GB SXM", "H100 SXM"}


def test_static_batch_preempts_when_the_kv_cache_is_too_small() -> None:
    from optiinfra.catalog import gpu_spec, model_spec

    args = EngineArgs(enable_chunked_prefill=False, max_num_batched_tokens=4096)
    m = StepTimeModel(gpu_spec("A100"), model_spec("meta-llama/Llama-2-7b-hf"), args)
    fits = static_batch_run(m, 8, 2048, 2048)
    crowded = static_batch_run(m, 32, 2048, 2048)  # 32 x 4096 tokens > the cache
    assert fits.preemptions == 0
    assert crowded.preemptions > 0
    assert crowded.latency_s > 2.5 * fits.latency_s
    assert 0 < crowded.ttft_s < crowded.latency_s
