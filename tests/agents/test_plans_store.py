"""What the coordinator decided, stored: recommendations, plans, links, audit, refreshes.

Every test runs on SQLite and on PostgreSQL (``state_url``). The agents run on the
default-like fleet once per module; the stored result is that run's coordinator result
plus two hand-made proposals, so every decision status (planned, discarded,
superseded) reaches the store.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from sqlmodel import select

from agents.common.agent import Agent, AgentDeps
from agents.common.proposals import Assessment, Delta, Proposal, Risk, Verdict
from agents.context import FleetContext
from agents.coordinator import CoordinatorResult, Decision, PlanDraft, coordinate
from agents.plans import StoredPlan, json_safe, pending_plans, save_result
from agents.registry import all_agents
from optiinfra.config.schema import OptiInfraConfig, Policy
from optiinfra.store.state import (
    AuditEvent,
    Plan,
    PlanRecommendation,
    PlanStatus,
    Recommendation,
    RecommendationStatus,
    StateStore,
    open_state,
)
from tests.agents.fleets import Fleet, context, default_like, handmade_proposals
from tests.store.state_fixtures import state_url

__all__ = ["state_url"]

#: The tenant forbids reserved capacity, so the hand-made reservation is discarded.
CONFIG = OptiInfraConfig(policies=[Policy(forbidden_changes=["reserved_capacity"])])


@dataclass(frozen=True)
class Run:
    """One optimize run's analysis: the context, the agents and what they proposed."""

    context: FleetContext
    agents: list[Agent]
    proposals: list[Proposal]

    def coordinate(self, without: Sequence[tuple[str, str]] = ()) -> CoordinatorResult:
        """The coordinator's result, leaving out the proposals of the (target, kind)s given."""
        kept = [p for p in self.proposals if (p.target, p.kind) not in without]
        return coordinate(kept, self.agents, self.context, AgentDeps())


def _analyse(fleets: list[Fleet]) -> Run:
    ctx = context(fleets, config=CONFIG)
    agents = all_agents()
    proposals = [p for agent in agents for p in agent.propose(ctx, AgentDeps())]
    return Run(ctx, agents, proposals + handmade_proposals())


@pytest.fixture(scope="module")
def first() -> Run:
    return _analyse(default_like())


@pytest.fixture(scope="module")
def pricier() -> Run:
    """The next run: the same findings, every price 10% higher (so new figures)."""
    return _analyse([replace(f, price=f.price * 1.1 if f.price else None) for f in default_like()])


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    opened = open_state(state_url)
    opened.sync_config(CONFIG)  # the tenant rows the flow syncs before it saves
    yield opened
    opened.close()


def _rows(store: StateStore, table: type[Any]) -> list[Any]:
    with store.session(readonly=True) as session:
        return list(session.exec(select(table)).all())


def _plans_by_id(store: StateStore) -> dict[str, Plan]:
    return {p.id: p for p in _rows(store, Plan)}


def _linked(store: StateStore, plan_id: str) -> list[Recommendation]:
    """A plan's recommendations in link order."""
    with store.session(readonly=True) as session:
        rows = session.exec(
            select(Recommendation, PlanRecommendation.position)
            .join(PlanRecommendation, PlanRecommendation.recommendation_id == Recommendation.id)
            .where(PlanRecommendation.plan_id == plan_id)
            .order_by(PlanRecommendation.position)
        ).all()
    assert [position for _, position in rows] == list(range(len(rows)))
    return [rec for rec, _ in rows]


def _deltas(plan: PlanDraft | Proposal) -> dict[str, Any]:
    return json_safe({k: v.model_dump() for k, v in plan.expected_deltas.items()})


def _by_target(stored: list[StoredPlan]) -> dict[str, StoredPlan]:
    return {s.target: s for s in stored}


# ---------------------------------------------------------------- one run


def test_a_run_stores_every_decision_every_plan_their_links_and_audit(
    store: StateStore, first: Run
) -> None:
    result = first.coordinate()
    assert Counter(d.status for d in result.decisions) == {
        "planned": len(result.decisions) - 2,
        "discarded": 1,
        "superseded": 1,
    }

    stored = save_result(store, result, run_id="run-1", flow_run_id="flow-1")

    recs = {r.evidence["_key"]: r for r in _rows(store, Recommendation)}
    assert len(recs) == len(result.decisions) == len(_rows(store, Recommendation))
    for decision in result.decisions:
        rec = recs[decision.proposal.key]
        p = decision.proposal
        assert rec.status == RecommendationStatus(decision.status)
        assert (rec.agent, rec.kind, rec.target, rec.tenant) == (
            p.agent,
            p.kind,
            p.target,
            p.tenant,
        )
        assert rec.change == json_safe(p.change)
        assert rec.expected_deltas == _deltas(p)
        assert rec.confidence == pytest.approx(p.confidence)
        assert rec.risk.value == p.risk.value
        assert rec.narrative == p.narrative
        assert rec.evidence["_run_id"] == "run-1"
        assert rec.evidence["_detector"] == p.detector
        assert rec.evidence.get("_decision_reason", "") == decision.reason
        assert [a["verdict"] for a in rec.evidence.get("_assessments", [])] == [
            a.verdict.value for a in decision.assessments
        ]
    discarded = next(d for d in result.decisions if d.status == "discarded")
    superseded = next(d for d in result.decisions if d.status == "superseded")
    assert "forbidden" in recs[discarded.proposal.key].evidence["_decision_reason"]
    assert "shutdown" in recs[superseded.proposal.key].evidence["_decision_reason"]

    assert [s.rank for s in stored] == [p.rank for p in result.plans]
    assert all(s.new for s in stored)
    rows = _plans_by_id(store)
    assert len(rows) == len(result.plans)
    for plan, saved in zip(result.plans, stored, strict=True):
        row = rows[saved.plan_id]
        assert row.status == PlanStatus.PENDING_APPROVAL
        assert (row.rank, row.summary, row.tenant) == (plan.rank, plan.title, plan.tenant)
        assert row.flow_run_id == "flow-1"
        assert row.expected_deltas == _deltas(plan)
        assert [a["agent"] for a in row.assessments] == [a.agent for a in plan.assessments]
        assert [r.evidence["_key"] for r in _linked(store, row.id)] == [
            p.key for p in plan.proposals
        ]
    assert [p.id for p in pending_plans(store)] == [s.plan_id for s in stored]

    audit = [e for e in _rows(store, AuditEvent) if e.actor == "optimize"]
    assert sorted(e.subject for e in audit) == sorted(rows)
    for event in audit:
        assert event.action == "plan.proposed"
        assert event.detail["run_id"] == "run-1"
        assert event.detail["title"] == rows[event.subject].summary


# ---------------------------------------------------------------- later runs


def test_saving_the_same_result_again_refreshes_and_adds_no_plan(
    store: StateStore, first: Run
) -> None:
    result = first.coordinate()
    before = save_result(store, result, run_id="run-1")

    again = save_result(store, result, run_id="run-2")

    assert [s.plan_id for s in again] == [s.plan_id for s in before]
    assert not any(s.new for s in again)
    assert len(_rows(store, Plan)) == len(result.plans)
    actions = Counter(e.action for e in _rows(store, AuditEvent) if e.actor == "optimize")
    assert actions == {"plan.proposed": len(result.plans), "plan.refreshed": len(result.plans)}
    for plan, saved in zip(result.plans, again, strict=True):
        linked = _linked(store, saved.plan_id)  # the old links are gone, not doubled
        assert [r.evidence["_key"] for r in linked] == [p.key for p in plan.proposals]
        assert {r.evidence["_run_id"] for r in linked} == {"run-2"}


def test_a_later_run_with_the_same_findings_updates_the_pending_plans_figures(
    store: StateStore, first: Run, pricier: Run
) -> None:
    old, new = first.coordinate(), pricier.coordinate()
    assert [sorted(p.key for p in x.proposals) for x in old.plans] == [
        sorted(p.key for p in x.proposals) for x in new.plans
    ]
    saved = _by_target(save_result(store, old, run_id="run-1"))
    created = {p.id: p.created_at for p in _rows(store, Plan)}

    refreshed = _by_target(save_result(store, new, run_id="run-2"))

    assert {t: s.plan_id for t, s in refreshed.items()} == {t: s.plan_id for t, s in saved.items()}
    rows = _plans_by_id(store)
    assert len(rows) == len(new.plans)
    changed = 0
    for plan in new.plans:
        row = rows[refreshed[plan.target].plan_id]
        assert row.status == PlanStatus.PENDING_APPROVAL
        assert row.created_at == created[row.id]
        assert row.expected_deltas == _deltas(plan)
        assert row.rank == plan.rank
        old_plan = next(p for p in old.plans if p.target == plan.target)
        if plan.monthly_saving_usd > 0:
            # Higher prices, larger savings: the stored figures are the new run's.
            assert plan.monthly_saving_usd > old_plan.monthly_saving_usd * 1.01
            assert row.expected_deltas != _deltas(old_plan)
            changed += 1
            detail = next(
                e.detail
                for e in _rows(store, AuditEvent)
                if e.subject == row.id and e.action == "plan.refreshed"
            )
            assert detail["monthly_saving_usd"] == round(plan.monthly_saving_usd, 2)
    assert changed >= 3  # the saving of every cost plan moved with the prices


def test_a_plan_with_a_different_set_of_proposals_is_a_new_plan(
    store: StateStore, first: Run
) -> None:
    full = first.coordinate()
    chat = next(p for p in full.plans if p.target == "chat-8b")
    assert [p.kind for p in chat.proposals] == ["right_size", "spot_migration"]
    before = _by_target(save_result(store, full, run_id="run-1"))

    # The next run finds chat-8b's right-sizing but no longer its spot move.
    after = _by_target(
        save_result(
            store, first.coordinate(without=[("chat-8b", "spot_migration")]), run_id="run-2"
        )
    )

    assert after["chat-8b"].new
    assert after["chat-8b"].plan_id != before["chat-8b"].plan_id
    assert [r.kind for r in _linked(store, after["chat-8b"].plan_id)] == ["right_size"]
    for target, saved in after.items():
        if target != "chat-8b":
            assert (saved.plan_id, saved.new) == (before[target].plan_id, False)
    assert len(_rows(store, Plan)) == len(full.plans) + 1
    # The old chat-8b plan is out of date: superseded (kept, never deleted), with an audit
    # event, so reviewers see one current plan per target.
    plans = _plans_by_id(store)
    assert plans[before["chat-8b"].plan_id].status == PlanStatus.SUPERSEDED
    assert plans[after["chat-8b"].plan_id].status == PlanStatus.PENDING_APPROVAL
    pending = [p for p in plans.values() if p.status == PlanStatus.PENDING_APPROVAL]
    assert len(pending) == len(full.plans)
    audit = [e for e in _rows(store, AuditEvent) if e.action == "plan.superseded"]
    assert [e.subject for e in audit] == [before["chat-8b"].plan_id]


def test_a_plan_no_longer_pending_is_not_refreshed(store: StateStore, first: Run) -> None:
    result = first.coordinate()
    before = _by_target(save_result(store, result, run_id="run-1"))
    approved_id = before["legacy-7b"].plan_id
    with store.session() as session:
        row = session.get(Plan, approved_id)
        assert row is not None
        row.status = PlanStatus.APPROVED
    approved_before = _plans_by_id(store)[approved_id]

    after = _by_target(save_result(store, result, run_id="run-2"))

    assert after["legacy-7b"].new
    assert after["legacy-7b"].plan_id != approved_id
    rows = _plans_by_id(store)
    assert rows[after["legacy-7b"].plan_id].status == PlanStatus.PENDING_APPROVAL
    approved = rows[approved_id]
    assert approved.status == PlanStatus.APPROVED
    assert approved.updated_at == approved_before.updated_at
    assert {r.evidence["_run_id"] for r in _linked(store, approved_id)} == {"run-1"}
    assert all(not s.new for t, s in after.items() if t != "legacy-7b")
    assert len(rows) == len(result.plans) + 1
    assert approved_id not in {p.id for p in pending_plans(store)}


# ---------------------------------------------------------------- unbounded figures


def _unbounded_result(cost: Delta) -> CoordinatorResult:
    """One plan of one proposal with an unbounded interval, a NaN evidence value and an
    assessment whose predicted figure is NaN (a price the cost agent did not know)."""
    proposal = Proposal(
        agent="performance",
        kind="engine_tuning",
        detector="kv_pressure",
        provider="sandbox",
        target="rag-8b",
        title="Tune rag-8b",
        change={"engine_args": {"max_num_seqs": 64}},
        expected_deltas={
            "cost_usd_per_month": cost,
            "ttft_p95_s": Delta(value=-0.5, unit="s", low=-float("inf"), high=0.1),
        },
        confidence=0.6,
        evidence={"kv_usage_p95": math.nan, "samples": 12, "spread": [1.0, math.inf]},
        narrative="Tune rag-8b.",
    )
    assessment = Assessment(
        agent="cost",
        proposal_key=proposal.key,
        verdict=Verdict.CONCERN,
        reason="price unknown",
        predicted_deltas={"cost_usd_per_month": Delta(value=math.nan, unit="USD/month")},
    )
    plan = PlanDraft(
        tenant="default",
        provider="sandbox",
        target="rag-8b",
        proposals=[proposal],
        assessments=[assessment],
        risk=Risk.MEDIUM,
        confidence=0.6,
        expected_deltas=dict(proposal.expected_deltas),
        relieves_performance=True,
        rank=1,
    )
    return CoordinatorResult(
        plans=[plan], decisions=[Decision(proposal, "planned", "", [assessment])]
    )


def test_nan_and_infinite_figures_are_stored_as_null(store: StateStore) -> None:
    cost = Delta(value=-120.0, unit="USD/month", low=-150.0, high=math.inf)

    [saved] = save_result(store, _unbounded_result(cost), run_id="run-1")

    [rec] = _rows(store, Recommendation)
    assert rec.expected_deltas["cost_usd_per_month"]["high"] is None
    assert rec.expected_deltas["cost_usd_per_month"]["low"] == -150.0
    assert rec.expected_deltas["ttft_p95_s"]["low"] is None
    assert rec.expected_deltas["ttft_p95_s"]["high"] == 0.1
    assert rec.evidence["kv_usage_p95"] is None
    assert rec.evidence["samples"] == 12
    assert rec.evidence["spread"] == [1.0, None]
    assert (
        rec.evidence["_assessments"][0]["predicted_deltas"]["cost_usd_per_month"]["value"] is None
    )
    plan = _plans_by_id(store)[saved.plan_id]
    assert plan.expected_deltas["cost_usd_per_month"]["high"] is None
    assert plan.assessments[0]["predicted_deltas"]["cost_usd_per_month"]["value"] is None
    [event] = [e for e in _rows(store, AuditEvent) if e.actor == "optimize"]
    assert event.detail["monthly_saving_usd"] == 120.0


def test_a_nan_saving_is_stored_as_null_not_refused(store: StateStore) -> None:
    """An unknown saving must not make the audit insert refuse the whole run."""
    cost = Delta(value=math.nan, unit="USD/month")

    [saved] = save_result(store, _unbounded_result(cost), run_id="run-1")

    [rec] = _rows(store, Recommendation)
    assert rec.expected_deltas["cost_usd_per_month"]["value"] is None
    [event] = [e for e in _rows(store, AuditEvent) if e.actor == "optimize"]
    assert event.subject == saved.plan_id
    assert event.detail["monthly_saving_usd"] is None


# ---------------------------------------------------------------- json_safe


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (math.nan, None),
        (-math.inf, None),
        (1.5, 1.5),
        ({"a": (1, math.inf), 2: {"b": math.nan}}, {"a": [1, None], "2": {"b": None}}),
        ([True, None, "x"], [True, None, "x"]),
    ],
)
def test_json_safe_turns_non_finite_floats_into_null(value: Any, expected: Any) -> None:
    assert json_safe(value) == expected


def test_json_safe_unwraps_numpy_scalars() -> None:
    import numpy as np

    assert json_safe({"n": np.int64(3), "x": np.float64("nan"), "y": np.float32(0.5)}) == {
        "n": 3,
        "x": None,
        "y": 0.5,
    }
