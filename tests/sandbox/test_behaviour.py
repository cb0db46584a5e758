"""The bundled fleets behave as documented, replayed in virtual time.

Each test runs a deployment of ``fleets/default.yaml`` or ``fleets/healthy.yaml``
through the real scheduler, step-time model, traces and prompts
(:func:`simulate_deployment`), so it checks the sandbox a user starts, not a toy.
"""

from __future__ import annotations

import pytest

from optiinfra.sandbox.fleet import load_fleet
from optiinfra.sandbox.offline import simulate_deployment
from optiinfra.sandbox.spec import DeploymentSpec, LoadSpec


@pytest.fixture(scope="module")
def default_fleet():  # type: ignore[no-untyped-def]
    return load_fleet("default")


@pytest.fixture(scope="module")
def healthy_fleet():  # type: ignore[no-untyped-def]
    return load_fleet("healthy")


def _summary(deployment: DeploymentSpec, seconds: float = 600.0) -> dict:  # type: ignore[type-arg]
    engines = simulate_deployment(deployment, seconds)
    return engines[0].truth.summary(engines[0].clock)


def test_kv_pressure_deployment_preempts_and_its_healthy_twin_does_not(
    default_fleet, healthy_fleet
) -> None:
    pressured = _summary(default_fleet.deployment("rag-8b"))
    healthy = _summary(healthy_fleet.deployment("rag-8b"))
    assert pressured["finished"] > 30 and healthy["finished"] > 30
    assert pressured["preemptions"] > 0
    assert healthy["preemptions"] == 0
    assert pressured["ttft_seconds"]["p95"] > 3 * healthy["ttft_seconds"]["p95"]


def test_more_offered_load_raises_queueing_and_time_to_first_token(default_fleet) -> None:
    chat = default_fleet.deployment("chat-8b")
    light = _summary(
        chat.model_copy(update={"load": chat.load.model_copy(update={"rate_scale": 0.1})}), 300
    )
    heavy = _summary(
        chat.model_copy(update={"load": chat.load.model_copy(update={"rate_scale": 1.0})}), 300
    )
    assert heavy["arrived"] > 5 * light["arrived"]
    assert heavy["queue_seconds"]["p95"] > light["queue_seconds"]["p95"]
    assert heavy["ttft_seconds"]["p50"] > 1.5 * light["ttft_seconds"]["p50"]
    assert heavy["itl_seconds"]["p50"] > light["itl_seconds"]["p50"]  # bigger batches


def test_shared_prefixes_of_the_mooncake_trace_hit_the_prefix_cache(healthy_fleet) -> None:
    rag = healthy_fleet.deployment("rag-8b")
    cached = _summary(rag)
    args = rag.engine_args.model_copy(update={"enable_prefix_caching": False})
    uncached = _summary(rag.model_copy(update={"engine_args": args}))
    assert cached["cached_prompt_tokens"] > 0.05 * cached["prompt_tokens"]
    assert uncached["cached_prompt_tokens"] == 0
    assert cached["ttft_seconds"]["p50"] < uncached["ttft_seconds"]["p50"]


def test_the_idle_deployment_receives_nothing(default_fleet) -> None:
    idle = default_fleet.deployment("legacy-7b")
    assert idle.load.kind == "none"
    assert _summary(idle)["arrived"] == 0


def test_fp8_weights_cut_decode_time_on_a_gpu_with_fp8(default_fleet) -> None:
    chat = default_fleet.deployment("chat-8b")  # L4 has FP8 tensor cores
    steady = LoadSpec(kind="poisson", rps=0.5, prompt_tokens=256, output_tokens=128, seed=3)
    fp16 = _summary(chat.model_copy(update={"load": steady, "replicas": 1}), 120)
    args = chat.engine_args.model_copy(update={"quantization": "fp8"})
    fp8 = _summary(
        chat.model_copy(update={"load": steady, "replicas": 1, "engine_args": args}), 120
    )
    assert fp8["itl_seconds"]["p50"] < 0.75 * fp16["itl_seconds"]["p50"]
