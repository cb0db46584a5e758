"""The decision vector: fixed layout, kind dominates, similar contexts are nearer."""

from __future__ import annotations

import math

import pytest

from agents.common.proposals import Delta, Proposal
from agents.memory import DecisionFeatures, decision_vector, features_for, similarity
from agents.memory.features import KINDS, USED_DIMENSIONS, WEIGHTS, gpu_class
from optiinfra.store.memory import DECISION_VECTOR_SIZE
from tests.agents.fleets import Fleet, context


def _proposal(kind: str, target: str, *, saving_h: float = -0.4, **change: object) -> Proposal:
    return Proposal(
        agent="cost",
        kind=kind,
        detector=kind,
        provider="sandbox",
        target=target,
        title=f"{kind} {target}",
        change=change or {"replicas": 0},
        expected_deltas={
            "cost_usd_per_hour": Delta(value=saving_h, unit="USD/h"),
            "cost_usd_per_month": Delta(value=saving_h * 730, unit="USD/month"),
        },
        confidence=0.8,
    )


def _features(kind: str, fleet: Fleet, **change: object) -> DecisionFeatures:
    return features_for(_proposal(kind, fleet.name, **change), context([fleet]))


def test_features_come_from_the_deployment_and_its_window() -> None:
    fleet = Fleet(
        "chat",
        replicas=2,
        rate=3.0,
        running=16,
        gpu_util=0.6,
        kv_usage=0.4,
        engine_args={"max_num_seqs": 64},
    )
    f = _features("spot_migration", fleet, market="spot")
    assert (f.kind, f.provider, f.cloud, f.target) == ("spot_migration", "sandbox", "aws", "chat")
    assert (f.gpu, f.gpu_count, f.replicas) == ("L4", 1, 2)
    assert f.params_b == pytest.approx(8.03)
    assert f.load_rps_per_replica == pytest.approx(1.5)
    assert f.batch_occupancy == pytest.approx(16 / 64)
    assert (f.gpu_util, f.kv_usage) == (pytest.approx(0.6), pytest.approx(0.4))
    # -0.4 $/h on 2 × 0.8048 $/h
    assert f.price_gap == pytest.approx(-0.4 / (2 * 0.8048))
    assert (f.on_demand_share, f.spot_share, f.reserved_share) == (1.0, 0.0, 0.0)
    assert f.target_market == "spot"
    assert f.quantization_step == 0.0
    assert f.expected_saving_usd_per_month == pytest.approx(0.4 * 730)
    # round trip through evidence (JSON) and back
    assert DecisionFeatures(**f.model_dump(mode="json")) == f


def test_quantization_step_and_unknown_targets() -> None:
    fleet = Fleet("rag", engine_args={"quantization": "fp8"})
    f = _features("quantization", fleet, engine_args={"quantization": "awq"})
    assert f.quantization_step == pytest.approx((8 - 4) / 16)
    # A commitment's target is not a deployment: what the evidence says is used.
    p = _proposal("reserved_capacity", "aws/us-east-1/L4x1").model_copy(
        update={"evidence": {"gpu": "L4", "cloud": "aws"}}
    )
    r = features_for(p, context([fleet]))
    assert (r.gpu, r.cloud, r.target_market) == ("L4", "aws", "reserved")
    assert r.load_rps_per_replica is None and r.price_gap is None
    assert len(decision_vector(r)) == DECISION_VECTOR_SIZE


def test_the_vector_has_a_fixed_layout_and_length() -> None:
    f = _features("idle_shutdown", Fleet("idle", rate=0.0, running=0.0))
    vector = decision_vector(f)
    assert len(vector) == DECISION_VECTOR_SIZE == 64
    assert USED_DIMENSIONS == 58 and vector[USED_DIMENSIONS:] == [0.0] * 6
    # Every block has the same length whatever the values: the vector's norm is fixed.
    assert math.sqrt(sum(x * x for x in vector)) == pytest.approx(math.sqrt(sum(WEIGHTS.values())))
    sparse = DecisionFeatures(kind="autoscaling")
    assert math.sqrt(sum(x * x for x in decision_vector(sparse))) == pytest.approx(
        math.sqrt(sum(WEIGHTS.values()))
    )
    # The kind block comes first, one-hot.
    assert vector[KINDS.index("idle_shutdown")] == pytest.approx(math.sqrt(WEIGHTS["kind"]))
    assert sum(1 for x in vector[: len(KINDS)] if x) == 1


def test_same_kind_and_context_is_about_one_and_another_kind_is_low() -> None:
    base = Fleet("chat", replicas=3, rate=2.0, running=6, gpu_util=0.5)
    same = _features("spot_migration", base, market="spot")
    again = _features(
        "spot_migration",
        Fleet("chat", replicas=3, rate=2.1, running=6.2, gpu_util=0.52),
        market="spot",
    )
    assert similarity(same, same) == pytest.approx(1.0)
    assert similarity(same, again) > 0.999
    other_kind = _features("right_size", base, market="spot")
    kind_share = WEIGHTS["kind"] / sum(WEIGHTS.values())
    assert similarity(same, other_kind) == pytest.approx(1 - kind_share)  # 0.30
    # Even a same-kind decision in a wholly different context stays above any other kind.
    far = DecisionFeatures(
        kind="spot_migration",
        cloud="hetzner",
        gpu="H200",
        gpu_count=8,
        replicas=200,
        params_b=400,
        load_rps_per_replica=900,
        batch_occupancy=1.0,
        gpu_util=1.0,
        kv_usage=1.0,
        price_gap=1.0,
        on_demand_share=0.0,
        spot_share=0.0,
        reserved_share=1.0,
        target_market="reserved",
        quantization_step=1.0,
    )
    assert similarity(same, far) > similarity(same, other_kind)


def test_similar_contexts_are_nearer_than_dissimilar_ones() -> None:
    ref = _features("spot_migration", Fleet("a", replicas=4, rate=4.0), market="spot")
    alike = _features("spot_migration", Fleet("b", replicas=3, rate=2.5), market="spot")
    bigger_gpu = _features(
        "spot_migration",
        Fleet("c", gpu="H100", replicas=4, rate=4.0, price=6.88),
        market="spot",
    )
    unlike = _features(
        "spot_migration",
        Fleet(
            "d",
            model="meta-llama/Llama-3.1-70B",
            gpu="H100",
            gpu_count=4,
            cloud="gcp",
            replicas=16,
            rate=200.0,
            running=120,
            gpu_util=0.95,
            kv_usage=0.9,
            price=40.0,
        ),
        market="spot",
    )
    s_alike, s_gpu, s_unlike = (similarity(ref, x) for x in (alike, bigger_gpu, unlike))
    assert 1.0 > s_alike > s_gpu > s_unlike >= WEIGHTS["kind"] / sum(WEIGHTS.values())


def test_unknown_matches_unknown_only() -> None:
    known = DecisionFeatures(kind="autoscaling", gpu_util=0.5)
    unknown = DecisionFeatures(kind="autoscaling")
    assert similarity(unknown, unknown) == pytest.approx(1.0)
    assert similarity(known, unknown) < 1.0
    assert similarity(known, DecisionFeatures(kind="autoscaling", gpu_util=0.55)) > similarity(
        known, unknown
    )


@pytest.mark.parametrize(
    "gpu, count, expected",
    [
        ("L4", 1, "gpu_24g"),
        ("A100 40GB SXM", 1, "gpu_48g"),
        ("H100", 8, "gpu_96g"),
        ("H200", 8, "gpu_large"),
        ("", 0, "none"),
        ("TPU v5e", 1, "unknown"),
    ],
)
def test_gpu_classes(gpu: str, count: int, expected: str) -> None:
    assert gpu_class(gpu, count) == expected
