"""Store what the coordinator decided: recommendations, plans, and their links.

A plan waits for approval (``pending_approval``). The optimize flow runs every 15
minutes, so the same finding comes back run after run: a plan whose set of proposals
(by :attr:`Proposal.key`) matches a plan still pending is *refreshed* (figures and
assessments updated) instead of stored again, so people never see duplicates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete
from sqlmodel import select

from agents.common.proposals import Proposal
from agents.coordinator import CoordinatorResult, Decision, PlanDraft
from optiinfra.store.state import StateStore
from optiinfra.store.state.tables import (
    Plan,
    PlanRecommendation,
    PlanStatus,
    Recommendation,
    RecommendationStatus,
    Risk,
)
from optiinfra.store.state.types import utcnow

_STATUS = {
    "planned": RecommendationStatus.PLANNED,
    "discarded": RecommendationStatus.DISCARDED,
    "superseded": RecommendationStatus.SUPERSEDED,
}


@dataclass(frozen=True)
class StoredPlan:
    plan_id: str
    rank: int
    target: str
    new: bool


def json_safe(value: Any) -> Any:
    """JSON columns refuse NaN and infinity: they become None (unknown / unbounded)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, int | str | bool) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        return json_safe(value.item())
    return str(value)


def _deltas(proposal_or_plan: Any) -> dict[str, Any]:
    return json_safe({k: v.model_dump() for k, v in proposal_or_plan.expected_deltas.items()})


def _recommendation(decision: Decision, run_id: str) -> Recommendation:
    p: Proposal = decision.proposal
    evidence = dict(p.evidence)
    evidence["_key"] = p.key
    evidence["_run_id"] = run_id
    evidence["_detector"] = p.detector
    if decision.reason:
        evidence["_decision_reason"] = decision.reason
    if decision.assessments:
        evidence["_assessments"] = [a.model_dump() for a in decision.assessments]
    if p.recalled:
        evidence["_recalled"] = p.recalled
    return Recommendation(
        tenant=p.tenant,
        provider=p.provider,
        agent=p.agent,
        kind=p.kind,
        target=p.target,
        change=json_safe(p.change),
        expected_deltas=_deltas(p),
        confidence=p.confidence,
        risk=Risk(p.risk.value),
        evidence=json_safe(evidence),
        narrative=p.narrative,
        status=_STATUS[decision.status],
    )


def _pending_by_keys(store: StateStore) -> dict[frozenset[str], Plan]:
    """Pending plans by the set of their proposals' keys."""
    with store.session(readonly=True) as session:
        plans = session.exec(select(Plan).where(Plan.status == PlanStatus.PENDING_APPROVAL)).all()
        found: dict[frozenset[str], Plan] = {}
        for plan in plans:
            rows = session.exec(
                select(Recommendation)
                .join(
                    PlanRecommendation,
                    PlanRecommendation.recommendation_id == Recommendation.id,
                )
                .where(PlanRecommendation.plan_id == plan.id)
            ).all()
            keys = frozenset(str(r.evidence.get("_key", "")) for r in rows)
            found[keys] = plan
    return found


def save_result(
    store: StateStore, result: CoordinatorResult, *, run_id: str, flow_run_id: str | None = None
) -> list[StoredPlan]:
    """Persist every decision and every plan; return the plans in rank order."""
    pending = _pending_by_keys(store)
    stored: list[StoredPlan] = []
    with store.session() as session:
        rec_ids: dict[str, str] = {}
        for decision in result.decisions:
            row = _recommendation(decision, run_id)
            session.add(row)
            rec_ids[decision.proposal.key] = row.id
        session.flush()
        live_ids: set[str] = set()
        for plan in result.plans:
            keys = frozenset(p.key for p in plan.proposals)
            existing = pending.get(keys)
            if existing is not None:
                row = session.get(Plan, existing.id)
                assert row is not None
                _fill(row, plan, flow_run_id)
                row.updated_at = utcnow()
                session.execute(
                    delete(PlanRecommendation).where(PlanRecommendation.plan_id == row.id)
                )
                new = False
            else:
                row = Plan(tenant=plan.tenant, status=PlanStatus.PENDING_APPROVAL)
                _fill(row, plan, flow_run_id)
                session.add(row)
                new = True
            session.flush()
            for position, proposal in enumerate(plan.proposals):
                session.add(
                    PlanRecommendation(
                        plan_id=row.id, position=position, recommendation_id=rec_ids[proposal.key]
                    )
                )
            stored.append(StoredPlan(plan_id=row.id, rank=plan.rank, target=plan.target, new=new))
            live_ids.add(row.id)
            session.add(_audit(plan, row.id, run_id, new))
        _supersede_stale(session, result, pending, live_ids, run_id)
    return stored


def _supersede_stale(
    session: Any,
    result: CoordinatorResult,
    pending: dict[frozenset[str], Plan],
    live_ids: set[str],
    run_id: str,
) -> None:
    """A pending plan for a target this run planned differently is out of date: it is
    marked superseded (never deleted), so reviewers see one current plan per target."""
    from optiinfra.store.state.tables import AuditEvent

    targets = {(p.tenant, p.target) for p in result.plans}
    for plan in pending.values():
        if plan.id in live_ids or (plan.tenant, _plan_target(session, plan)) not in targets:
            continue
        row = session.get(Plan, plan.id)
        if row is None or row.status != PlanStatus.PENDING_APPROVAL:
            continue
        row.status = PlanStatus.SUPERSEDED
        row.updated_at = utcnow()
        session.add(
            AuditEvent(
                tenant=row.tenant,
                actor="optimize",
                action="plan.superseded",
                subject=row.id,
                detail={"run_id": run_id},
            )
        )


def _plan_target(session: Any, plan: Plan) -> str:
    rec = session.exec(
        select(Recommendation)
        .join(PlanRecommendation, PlanRecommendation.recommendation_id == Recommendation.id)
        .where(PlanRecommendation.plan_id == plan.id)
    ).first()
    return rec.target if rec is not None else ""


def _fill(row: Plan, plan: PlanDraft, flow_run_id: str | None) -> None:
    row.rank = plan.rank
    row.assessments = json_safe([a.model_dump() for a in plan.assessments])
    row.expected_deltas = _deltas(plan)
    row.summary = plan.title
    if flow_run_id:
        row.flow_run_id = flow_run_id


def _audit(plan: PlanDraft, plan_id: str, run_id: str, new: bool) -> Any:
    from optiinfra.store.state.tables import AuditEvent

    return AuditEvent(
        tenant=plan.tenant,
        actor="optimize",
        action="plan.proposed" if new else "plan.refreshed",
        subject=plan_id,
        detail=json_safe(
            {
                "run_id": run_id,
                "target": plan.target,
                "title": plan.title,
                "monthly_saving_usd": round(plan.monthly_saving_usd, 2),
            }
        ),
    )


def pending_plans(store: StateStore) -> Sequence[Plan]:
    """Plans waiting for a decision, best rank first."""
    with store.session(readonly=True) as session:
        return session.exec(
            select(Plan).where(Plan.status == PlanStatus.PENDING_APPROVAL).order_by(Plan.rank)
        ).all()
