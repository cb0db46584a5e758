"""The coordinator's policy: customer constraints > performance > cost."""

from __future__ import annotations

import pytest

from agents.common.agent import AgentDeps
from agents.common.proposals import Delta, Proposal, Risk, Verdict
from agents.coordinator import coordinate
from agents.registry import all_agents
from optiinfra.capacity import CapacityModel
from optiinfra.config import OptiInfraConfig
from optiinfra.config.schema import SLO, Policy
from tests.agents.fleets import context, default_like


@pytest.fixture(scope="module")
def deps() -> AgentDeps:
    return AgentDeps(capacity=CapacityModel.default())


def _proposals(ctx, deps: AgentDeps) -> list[Proposal]:
    return [p for agent in all_agents() for p in agent.propose(ctx, deps)]


def _cost(kind: str, target: str, saving: float, **change: object) -> Proposal:
    return Proposal(
        agent="cost", kind=kind, detector=kind, provider="sandbox", target=target,
        title=f"{kind} {target}", change=dict(change), confidence=0.8, risk=Risk.MEDIUM,
        expected_deltas={"cost_usd_per_month": Delta(value=-saving, unit="USD/month")},
    )  # fmt: skip


def test_default_like_fleet_gives_one_plan_per_planted_problem(deps: AgentDeps) -> None:
    ctx = context(default_like())
    result = coordinate(_proposals(ctx, deps), all_agents(), ctx, deps)
    assert {p.target for p in result.plans} == {"chat-8b", "code-3b", "rag-8b", "legacy-7b"}
    # Performance relief ranks first; then risk-adjusted savings, largest first.
    assert result.plans[0].relieves_performance
    savings = [p.score for p in result.plans if not p.relieves_performance]
    assert savings == sorted(savings, reverse=True)
    assert [p.rank for p in result.plans] == list(range(1, len(result.plans) + 1))


def test_a_forbidden_change_is_never_planned(deps: AgentDeps) -> None:
    config = OptiInfraConfig(
        policies=[Policy(forbidden_changes=["spot_migration", "idle_shutdown"])]
    )
    ctx = context(default_like(), config=config)
    proposals = _proposals(ctx, deps)
    assert any(p.kind == "spot_migration" for p in proposals)  # proposed, then refused
    result = coordinate(proposals, all_agents(), ctx, deps)
    planned = {p.kind for plan in result.plans for p in plan.proposals}
    assert not planned & {"spot_migration", "idle_shutdown"}
    kinds = ("spot_migration", "idle_shutdown")
    refused = [d for d in result.decisions if d.proposal.kind in kinds]
    assert refused and all(d.status == "discarded" for d in refused)
    assert all("forbidden" in d.reason for d in refused)


def test_a_cost_change_that_breaks_a_configured_slo_is_blocked(deps: AgentDeps) -> None:
    # code-3b measured at 10 ms ITL on its A100; the SLO asks for 12 ms.
    config = OptiInfraConfig(slos=[SLO(deployment="code-3b", itl_p95_seconds=0.012)])
    ctx = context(default_like(), config=config)
    downgrade = _cost("right_size", "code-3b", 1600.0, gpu="L4", gpu_count=1, replicas=1,
                      engine_args={"max_model_len": 16384})  # fmt: skip
    result = coordinate([downgrade], all_agents(), ctx, deps)
    assert result.plans == []
    [decision] = result.decisions
    assert decision.status == "discarded"
    [assessment] = [a for a in decision.assessments if a.agent == "performance"]
    assert assessment.verdict == Verdict.BLOCK
    assert "configured target 0.012" in assessment.reason
    assert assessment.predicted_deltas["itl_p95_s"].value > 0.012


def test_without_a_configured_slo_the_same_change_is_only_a_concern(deps: AgentDeps) -> None:
    ctx = context(default_like())
    # An L4 at 20x code-3b's load: over the assumed default targets, not a customer's SLO.
    loaded = [f if f.name != "code-3b" else type(f)(**{**f.__dict__, "rate": 30.0})
              for f in default_like()]  # fmt: skip
    ctx = context(loaded)
    downgrade = _cost("right_size", "code-3b", 1600.0, gpu="L4", gpu_count=1, replicas=1,
                      engine_args={"max_model_len": 16384})  # fmt: skip
    result = coordinate([downgrade], all_agents(), ctx, deps)
    [decision] = result.decisions
    [assessment] = [a for a in decision.assessments if a.agent == "performance"]
    assert assessment.verdict == Verdict.CONCERN
    [plan] = result.plans
    assert plan.risk == Risk.HIGH  # a concern raises the risk one step


def test_idle_shutdown_supersedes_other_changes_to_its_target(deps: AgentDeps) -> None:
    ctx = context(default_like())
    idle = _cost("idle_shutdown", "legacy-7b", 734.0, replicas=0)
    spot = _cost("spot_migration", "legacy-7b", 300.0, market="spot")
    result = coordinate([spot, idle], all_agents(), ctx, deps)
    [plan] = result.plans
    assert [p.kind for p in plan.proposals] == ["idle_shutdown"]
    superseded = [d for d in result.decisions if d.status == "superseded"]
    assert [d.proposal.kind for d in superseded] == ["spot_migration"]


def test_performance_relief_outranks_a_cost_change_of_the_same_target(deps: AgentDeps) -> None:
    ctx = context(default_like())
    relief = Proposal(
        agent="performance", kind="engine_tuning", detector="kv_pressure", provider="sandbox",
        target="rag-8b", title="relief", change={"engine_args": {"max_num_seqs": 2}},
        confidence=0.6,
    )  # fmt: skip
    shrink = _cost("right_size", "rag-8b", 200.0, gpu="L4", gpu_count=1, replicas=1)
    result = coordinate([shrink, relief], all_agents(), ctx, deps)
    [plan] = result.plans
    assert [p.kind for p in plan.proposals] == ["engine_tuning"]
    [lost] = [d for d in result.decisions if d.status == "superseded"]
    assert lost.proposal.kind == "right_size" and "performance outranks cost" in lost.reason


def test_fewer_replicas_and_spot_on_one_target_merge_in_order(deps: AgentDeps) -> None:
    ctx = context(default_like())
    fewer = _cost("right_size", "chat-8b", 587.5, gpu="L4", gpu_count=1, replicas=2)
    fewer = fewer.model_copy(update={"evidence": {"same_hardware": True}})
    spot = _cost("spot_migration", "chat-8b", 581.7, market="spot", replicas_to_spot=2,
                 keep_on_demand=1)  # fmt: skip
    spot = spot.model_copy(update={"evidence": {"replicas": 3}})
    result = coordinate([spot, fewer], all_agents(), ctx, deps)
    [plan] = result.plans
    assert [p.kind for p in plan.proposals] == ["right_size", "spot_migration"]
    moved = plan.proposals[1]
    assert moved.change["replicas_to_spot"] == 1  # of the 2 left, one stays on-demand
    assert moved.monthly_saving_usd() == pytest.approx(581.7 / 2)
    assert plan.monthly_saving_usd == pytest.approx(587.5 + 581.7 / 2)


def test_the_same_proposal_twice_is_planned_once(deps: AgentDeps) -> None:
    ctx = context(default_like())
    idle = _cost("idle_shutdown", "legacy-7b", 734.0, replicas=0)
    result = coordinate([idle, idle.model_copy()], all_agents(), ctx, deps)
    assert len(result.plans) == 1 and len(result.decisions) == 1
