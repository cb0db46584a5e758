"""Cross-assessment: the performance agent checks cost changes against the latency
targets; the cost agent prices changes that add GPUs."""

from __future__ import annotations

from typing import Any

import pytest

from agents.common.agent import AgentDeps
from agents.common.proposals import HOURS_PER_MONTH, Delta, Proposal, Verdict
from agents.cost.agent import CostAgent
from agents.cost.detectors.rightsize import ReplicaCapacityEstimator, detect_right_size
from agents.cost.thresholds import CostThresholds
from agents.performance.agent import PerformanceAgent
from optiinfra.capacity import CapacityModel
from optiinfra.config import OptiInfraConfig
from optiinfra.config.schema import SLO
from tests.agents.fleets import Fleet, context, default_like


@pytest.fixture(scope="module")
def deps() -> AgentDeps:
    return AgentDeps(capacity=CapacityModel.default())


def proposal(kind: str, target: str, change: dict[str, Any], **fields: Any) -> Proposal:
    return Proposal(
        agent=fields.pop("agent", "cost"),
        kind=kind,
        detector=fields.pop("detector", kind),
        provider="sandbox",
        target=target,
        title=f"{kind} {target}",
        change=change,
        confidence=0.7,
        **fields,
    )


def code_3b() -> Fleet:
    return next(f for f in default_like() if f.name == "code-3b")


@pytest.fixture(scope="module")
def code_3b_right_size(deps: AgentDeps) -> Proposal:
    """The cost agent's own right-size of code-3b (A100 80GB -> a cheaper GPU)."""
    ctx = context([code_3b()])
    capacity = ReplicaCapacityEstimator(deps.capacity_model(), ctx)
    [p], _ = detect_right_size(ctx, CostThresholds(), capacity)
    return p


def slo(deployment: str, **targets: float) -> OptiInfraConfig:
    return OptiInfraConfig(slos=[SLO(deployment=deployment, **targets)])


# -- performance agent: right-size ---------------------------------------------------------


def test_right_size_within_the_assumed_targets_is_ok(
    code_3b_right_size: Proposal, deps: AgentDeps
) -> None:
    verdict = PerformanceAgent().assess(code_3b_right_size, context([code_3b()]), deps)
    assert verdict is not None
    assert verdict.verdict is Verdict.OK
    assert verdict.proposal_key == code_3b_right_size.key
    assert verdict.agent == "performance"
    predicted = verdict.predicted_deltas["ttft_p95_s"].value
    assert predicted == pytest.approx(code_3b_right_size.evidence["predicted_ttft_p95_s"]["value"])


@pytest.mark.parametrize("deployment", ["code-3b", "*"])
def test_right_size_breaking_a_configured_slo_is_blocked(
    code_3b_right_size: Proposal, deps: AgentDeps, deployment: str
) -> None:
    predicted = code_3b_right_size.evidence["predicted_ttft_p95_s"]["value"]
    target = round(predicted / 2, 3)  # a configured TTFT target the new GPU misses
    ctx = context([code_3b()], config=slo(deployment, ttft_p95_seconds=target))
    verdict = PerformanceAgent().assess(code_3b_right_size, ctx, deps)
    assert verdict is not None
    assert verdict.verdict is Verdict.BLOCK
    assert "breaks the SLO" in verdict.reason
    assert f"default/{deployment}" in verdict.reason
    assert verdict.predicted_deltas["ttft_p95_s"].value > target


def heavy(rate: float) -> Fleet:
    """Llama 8B on one A100 80GB (context capped at 8,192) with 2,000-token prompts."""
    return Fleet(
        "heavy",
        gpu="A100 80GB SXM",
        cloud="gcp",
        region="us-central1",
        price=2.94582,
        instance_type="a2-ultragpu-1g",
        rate=rate,
        prompt_tokens=2000.0,
        output_tokens=200.0,
        running=10.0,
        ttft_p95=0.3,
        itl_p95=0.02,
        engine_args={"max_model_len": 8192},
    )


TO_ONE_L4 = {"gpu": "L4", "gpu_count": 1, "replicas": 1, "market": "on-demand"}


@pytest.mark.parametrize(
    ("rate", "reason"),
    [
        (0.5, "breaks the SLO"),  # predicted latency over the targets, not saturated
        (1.0, "predicted to saturate"),  # more than one L4 can serve
    ],
)
def test_without_a_configured_slo_a_breaking_change_is_at_most_a_concern(
    deps: AgentDeps, rate: float, reason: str
) -> None:
    change = proposal("right_size", "heavy", TO_ONE_L4)
    agent = PerformanceAgent()
    assumed = agent.assess(change, context([heavy(rate)]), deps)
    assert assumed is not None
    assert assumed.verdict is Verdict.CONCERN
    assert reason in assumed.reason
    configured = agent.assess(
        change,
        context([heavy(rate)], config=slo("heavy", ttft_p95_seconds=2.0, itl_p95_seconds=0.15)),
        deps,
    )
    assert configured is not None
    assert configured.verdict is Verdict.BLOCK
    assert reason in configured.reason


def test_an_e2e_only_slo_does_not_wave_through_a_latency_breaking_change(
    deps: AgentDeps,
) -> None:
    change = proposal("right_size", "heavy", TO_ONE_L4)
    ctx = context([heavy(0.5)], config=slo("heavy", e2e_p95_seconds=120.0))
    verdict = PerformanceAgent().assess(change, ctx, deps)
    assert verdict is not None
    assert verdict.verdict is not Verdict.OK


def test_right_size_of_a_deployment_without_metrics_is_a_concern(deps: AgentDeps) -> None:
    change = proposal("right_size", "ghost", TO_ONE_L4)
    verdict = PerformanceAgent().assess(change, context([code_3b()]), deps)
    assert verdict is not None
    assert verdict.verdict is Verdict.CONCERN
    assert "no serving metrics" in verdict.reason


# -- performance agent: idle, spot, others -------------------------------------------------


def test_idle_shutdown_is_ok(deps: AgentDeps) -> None:
    change = proposal("idle_shutdown", "legacy-7b", {"replicas": 0, "from_replicas": 1})
    verdict = PerformanceAgent().assess(change, context(default_like()), deps)
    assert verdict is not None and verdict.verdict is Verdict.OK


@pytest.mark.parametrize(
    ("carries", "expected"),
    [(False, Verdict.CONCERN), (True, Verdict.OK), (None, Verdict.OK)],
)
def test_spot_is_a_concern_only_when_the_floor_cannot_carry_the_load(
    deps: AgentDeps, carries: bool | None, expected: Verdict
) -> None:
    change = proposal(
        "spot_migration",
        "chat-8b",
        {"market": "spot", "replicas_to_spot": 2, "keep_on_demand": 1},
        evidence={"on_demand_floor_carries_load": carries},
    )
    verdict = PerformanceAgent().assess(change, context(default_like()), deps)
    assert verdict is not None and verdict.verdict is expected


def test_performance_agent_has_no_view_on_its_own_tuning(deps: AgentDeps) -> None:
    change = proposal(
        "engine_tuning", "rag-8b", {"engine_args": {"max_num_seqs": 32}}, agent="performance"
    )
    assert PerformanceAgent().assess(change, context(default_like()), deps) is None


# -- cost agent ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fleet", "per_gpu"),
    [
        (Fleet("chat", price=0.8048), 0.8048),
        (Fleet("wide", gpu_count=4, price=4.6016, instance_type="g6.12xlarge"), 1.1504),
    ],
)
def test_cost_agent_prices_a_change_that_adds_gpus(fleet: Fleet, per_gpu: float) -> None:
    change = proposal(
        "parallelism",
        fleet.name,
        {"engine_args": {"tensor_parallel_size": 2}},
        agent="performance",
        expected_deltas={"gpus": Delta(value=2, unit="GPUs")},
    )
    verdict = CostAgent().assess(change, context([fleet]))
    assert verdict is not None
    assert verdict.verdict is Verdict.CONCERN
    monthly = per_gpu * 2 * HOURS_PER_MONTH
    assert verdict.predicted_deltas["cost_usd_per_month"].value == pytest.approx(monthly)
    assert "adds 2 GPUs" in verdict.reason
    assert f"${monthly:,.0f}/month" in verdict.reason


@pytest.mark.parametrize(
    "deltas",
    [{}, {"gpus": Delta(value=-1, unit="GPUs")}, {"gpus": Delta(value=0, unit="GPUs")}],
)
def test_cost_agent_is_ok_with_changes_that_add_no_gpus(deltas: dict[str, Delta]) -> None:
    change = proposal(
        "engine_tuning",
        "chat",
        {"engine_args": {"max_num_seqs": 32}},
        agent="performance",
        expected_deltas=deltas,
    )
    verdict = CostAgent().assess(change, context([Fleet("chat")]))
    assert verdict is not None
    assert verdict.verdict is Verdict.OK
    assert verdict.predicted_deltas == {}
