"""Engine tuning: candidate argument changes judged by the capacity model.

The constructed deployments keep their figures consistent (running requests = rate x
request duration, by Little's law) so that calibrating the model on them is sane.
"""

from __future__ import annotations

from typing import Any

import pytest

from agents.common.capacity import DEFAULT_TARGETS, ReplicaCapacityEstimator
from agents.common.proposals import Proposal, Risk
from agents.performance.bottlenecks import find_bottlenecks
from agents.performance.tuning import NOT_WORSE, tuning_proposals
from optiinfra.capacity import CapacityModel, ServingConfig
from tests.agents.fleets import Fleet, context

LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture(scope="module")
def model() -> CapacityModel:
    return CapacityModel.default()


def consistent(
    *, rate: float, ttft: float, itl: float, output_tokens: float, **changes: Any
) -> Fleet:
    running = rate * (ttft + output_tokens * itl)
    return Fleet(
        "svc",
        rate=rate,
        ttft_p95=ttft,
        itl_p95=itl,
        output_tokens=output_tokens,
        running=running,
        **changes,
    )


def kv_pressured(**changes: Any) -> Fleet:
    """Llama 8B on one L40S, 4,000-token prompts, max_num_seqs 128: preempting."""
    figures: dict[str, Any] = {
        "gpu": "L40S",
        "price": 1.861,
        "instance_type": "g6e.xlarge",
        "rate": 0.3,
        "prompt_tokens": 4000.0,
        "output_tokens": 300.0,
        "ttft": 1.0,
        "itl": 0.05,
        "kv_usage": 0.97,
        "preemptions": 0.05,
        "engine_args": {"max_num_seqs": 128, "max_model_len": 16384},
    }
    figures.update(changes)
    return consistent(**figures)


def tune(
    fleet: Fleet, model: CapacityModel
) -> tuple[list[Proposal], list[str], dict[str, Any], dict[str, Any], ReplicaCapacityEstimator]:
    ctx = context([fleet])
    capacity = ReplicaCapacityEstimator(model, ctx)
    [(deployment, stats)] = list(ctx.deployment_rows())
    assert stats is not None
    found = find_bottlenecks(deployment, stats, capacity.targets(deployment))
    actionable = [b for b in found if b.kind != "low_occupancy"]
    proposals, notes = tuning_proposals(deployment, stats, actionable, capacity)
    return proposals, notes, deployment, stats, capacity


def test_kv_pressure_gets_a_max_num_seqs_the_kv_cache_holds(model: CapacityModel) -> None:
    proposals, notes, deployment, stats, capacity = tune(kv_pressured(), model)
    assert notes == []
    [p] = proposals
    assert (p.agent, p.kind, p.detector, p.target) == (
        "performance",
        "engine_tuning",
        "kv_pressure",
        "svc",
    )
    assert p.risk is Risk.LOW
    # The KV cache of one L40S at max_model_len 16,384 holds this many 4,300-token
    # sequences; the proposal caps the batch there.
    now = ServingConfig(gpu="L40S", model=LLAMA_8B, max_num_seqs=128, max_model_len=16384)
    holds = model.memory(now).max_concurrent_sequences(4300.0)
    assert 1 <= holds < 128
    assert p.change == {"engine_args": {"max_num_seqs": holds}}
    assert p.evidence["sequences_kv_holds_now"] == holds
    # Preemptions stop, and the prompt recomputation they caused goes with them.
    assert p.expected_deltas["preemptions_per_s"].value == pytest.approx(-0.05)
    assert p.expected_deltas["recomputed_prefill_tokens_per_s"].value == pytest.approx(
        -0.05 * 4300.0
    )
    # A predicted TTFT delta: the observed 1.0 s scaled by the model's after/before ratio,
    # which must not be worse than the tolerance.
    ttft = p.expected_deltas["ttft_p95_s"]
    ratio = p.evidence["predicted_ttft_ratio"]
    assert ratio <= NOT_WORSE
    assert ttft.value == pytest.approx(1.0 * ratio - 1.0, abs=1e-3)
    assert ttft.unit == "s"
    assert "itl_p95_s" in p.expected_deltas
    # The candidate is not saturated at today's per-replica rate under the calibrated model.
    cfg = capacity.config(deployment, engine_args=p.change["engine_args"])
    workload = capacity.workload(stats)
    after = capacity.calibrated(deployment, stats).predict(cfg, workload, 0.3)
    assert not after.saturated


def test_no_token_counts_is_noted(model: CapacityModel) -> None:
    proposals, notes, *_ = tune(kv_pressured(prompt_tokens=0.0, output_tokens=0.0), model)
    assert proposals == []
    assert notes == ["sandbox/svc: no token counts; tuning effects cannot be predicted"]


def test_no_traffic_gives_nothing_to_predict_at(model: CapacityModel) -> None:
    # Mean token counts need completed requests: without traffic there are none.
    proposals, notes, *_ = tune(kv_pressured(rate=0.0), model)
    assert proposals == []
    assert notes == ["sandbox/svc: no token counts; tuning effects cannot be predicted"]


def test_nothing_left_to_try_is_noted(model: CapacityModel) -> None:
    # fp8 KV already, and max_num_seqs already within what the cache holds: no candidate.
    args = {"max_num_seqs": 8, "max_model_len": 16384, "kv_cache_dtype": "fp8"}
    fleet = kv_pressured(engine_args=args)
    proposals, notes, *_ = tune(fleet, model)
    # No free engine change is left: only a paid one (more GPUs) or a quality risk.
    assert all(p.kind in ("parallelism", "quantization") for p in proposals)
    for p in proposals:
        if p.kind == "parallelism":
            assert p.expected_deltas["gpus"].value > 0
            assert p.expected_deltas["cost_usd_per_month"].value > 0
    if not proposals:
        assert any(n.startswith("sandbox/svc: kv_pressure") for n in notes)


def test_queueing_and_batch_cap_share_one_proposal(model: CapacityModel) -> None:
    # 16 slots on an L40S with room for far more: both rules ask for a larger batch.
    fleet = consistent(
        gpu="L40S",
        price=1.861,
        instance_type="g6e.xlarge",
        rate=2.0,
        prompt_tokens=500.0,
        output_tokens=200.0,
        ttft=1.5,
        itl=0.05,
        waiting=5.0,
        kv_usage=0.5,
        engine_args={"max_num_seqs": 16},
    )
    proposals, _, deployment, stats, _ = tune(fleet, model)
    kinds = [b.kind for b in find_bottlenecks(deployment, stats, DEFAULT_TARGETS)]
    assert {"queueing", "batch_capped"} <= set(kinds)
    [p] = proposals
    assert p.detector == "queueing"
    assert p.change["engine_args"]["max_num_seqs"] > 16
    assert p.evidence["predicted_ttft_ratio"] <= 0.9


def test_decode_bound_on_an_fp8_gpu_proposes_fp8_weights(model: CapacityModel) -> None:
    fleet = consistent(
        gpu="L4",
        rate=1.0,
        prompt_tokens=500.0,
        output_tokens=300.0,
        ttft=0.5,
        itl=0.2,
        kv_usage=0.5,
        engine_args={"max_model_len": 8192},
    )
    proposals, _, *_ = tune(fleet, model)
    [p] = proposals
    assert p.detector == "decode_bound"
    assert p.evidence["predicted_itl_ratio"] <= 0.9
    assert p.expected_deltas["itl_p95_s"].value < 0
    # Paid (more GPUs) is tried before a quality risk (FP8 weights).
    if p.kind == "parallelism":
        assert p.change["engine_args"] == {"tensor_parallel_size": 2}
        assert p.change["gpu_count"] >= 2 and p.expected_deltas["cost_usd_per_month"].value > 0
        assert p.risk is Risk.LOW
    else:
        assert p.change == {"engine_args": {"quantization": "fp8"}}
        assert p.risk is Risk.HIGH


def test_decode_bound_without_fp8_tensor_cores_is_noted(model: CapacityModel) -> None:
    fleet = consistent(
        gpu="A10G",
        price=1.006,
        instance_type="g5.xlarge",
        rate=1.0,
        prompt_tokens=500.0,
        output_tokens=300.0,
        ttft=0.5,
        itl=0.2,
        kv_usage=0.5,
        engine_args={"max_model_len": 8192},
    )
    proposals, notes, *_ = tune(fleet, model)
    # No FP8 tensor cores on an A10G: never FP8 weights (INT8, or more GPUs, instead).
    for p in proposals:
        assert p.change["engine_args"].get("quantization") in (None, "int8")
    if not proposals:
        assert any("decode_bound" in n for n in notes)


def test_predicted_latency_after_a_change_is_never_zero(model: CapacityModel) -> None:
    # The model calls today's config saturated at 3 requests/s; the metrics say it serves.
    fleet = consistent(
        gpu="L4",
        rate=3.0,
        prompt_tokens=500.0,
        output_tokens=300.0,
        ttft=0.5,
        itl=0.2,
        kv_usage=0.5,
        engine_args={"max_model_len": 8192},
    )
    [p], _, *_ = tune(fleet, model)
    assert p.evidence["predicted_saturated_before_after"][0] is True
    for name, observed in (("ttft_p95_s", 0.5), ("itl_p95_s", 0.2)):
        delta = p.expected_deltas.get(name)
        # No ratio can be applied to a saturated "before": no figure rather than 0 s.
        assert delta is None or observed + delta.value > 0
