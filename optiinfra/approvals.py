"""Approval decisions on plans: stored once, with who, when and why.

The optimize flow pauses for a person's answer (``flows/approval.py``); whatever the
answer's route (the Prefect UI form, ``optiinfra approve``, Prefect's REST API), it ends
here, in plain functions over the state store that know nothing of Prefect, so the
flow, the CLI and the rollout share one rule set:

* a plan moves ``pending_approval`` → ``approved`` or ``rejected`` exactly once; the
  first stored decision stands and a second answer is reported as already answered,
  changing nothing (answering twice is harmless);
* a pause that times out stores an ``expired`` decision by reviewer ``timeout`` and the
  plan becomes ``rejected``: no answer is a no;
* nothing is applied without a stored approval: :func:`approved_plans` and
  :func:`require_approval` are what a rollout asks before touching anything.

Example::

    outcome = record_decision(state, plan_id, "approve", "alice", "go", {"max_rollout_percent": 50})
    if outcome.recorded:
        ...  # this call stored it; otherwise outcome.message says who answered first
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlmodel import col, select

from optiinfra.errors import OptiInfraError
from optiinfra.store.state import (
    Approval,
    ApprovalDecision,
    AuditEvent,
    Plan,
    PlanStatus,
    StateStore,
)
from optiinfra.store.state.types import utcnow

#: What a reviewer answers.
Answer = Literal["approve", "reject"]

#: The reviewer recorded when a pause times out without an answer.
TIMEOUT_REVIEWER = "timeout"

#: The plan status each decision leads to (an expired approval is a rejection).
_PLAN_STATUS = {
    ApprovalDecision.APPROVED: PlanStatus.APPROVED,
    ApprovalDecision.REJECTED: PlanStatus.REJECTED,
    ApprovalDecision.EXPIRED: PlanStatus.REJECTED,
}

#: What people type or send, mapped onto the stored decision.
_DECISIONS: dict[str, ApprovalDecision] = {
    "approve": ApprovalDecision.APPROVED,
    "approved": ApprovalDecision.APPROVED,
    "reject": ApprovalDecision.REJECTED,
    "rejected": ApprovalDecision.REJECTED,
    "expired": ApprovalDecision.EXPIRED,
}

_MIN_PREFIX = 6


class ApprovalError(OptiInfraError):
    """A plan that cannot be found or answered (unknown or ambiguous id)."""


class ApprovalLimits(BaseModel):
    """Limits a reviewer attaches to an approval; the rollout must honour them.

    Times are UTC; a time given without a zone is read as UTC.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_rollout_percent: int | None = Field(
        default=None, ge=1, le=100, description="Never roll out to more than this percentage."
    )
    not_before: datetime | None = Field(default=None, description="Start no earlier (UTC).")
    not_after: datetime | None = Field(default=None, description="Start no later (UTC).")

    @field_validator("not_before", "not_after")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _window(self) -> ApprovalLimits:
        if self.not_before and self.not_after and self.not_after <= self.not_before:
            raise ValueError("not_after must be later than not_before")
        return self

    def stored(self) -> dict[str, Any]:
        """The JSON kept in ``approvals.limits``: only the limits that were set."""
        return self.model_dump(mode="json", exclude_none=True)


@dataclass(frozen=True)
class DecisionOutcome:
    """What :func:`record_decision` did, and the decision that stands afterwards."""

    plan_id: str
    #: True when this call stored the decision; False when nothing changed.
    recorded: bool
    #: The plan's status after the call.
    status: PlanStatus
    #: The stored decision that stands (None when the plan was never answered, e.g.
    #: superseded before anyone answered it).
    approval: Approval | None
    message: str


@dataclass(frozen=True)
class ApprovedPlan:
    """A plan a person approved, with the approval (and its limits) a rollout obeys."""

    plan: Plan
    approval: Approval

    @property
    def limits(self) -> ApprovalLimits:
        return ApprovalLimits.model_validate(self.approval.limits or {})


def parse_decision(value: str | ApprovalDecision) -> ApprovalDecision:
    """``approve``/``approved`` → APPROVED, ``reject``/``rejected`` → REJECTED, …"""
    if isinstance(value, ApprovalDecision):
        return value
    found = _DECISIONS.get(str(value).strip().lower())
    if found is None:
        raise ApprovalError(f"decision {value!r}: expected approve or reject")
    return found


def describe(approval: Approval) -> str:
    """One line: ``approved by alice at 2026-11-24 10:00 UTC ("go ahead")``."""
    when = approval.decided_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = f"{approval.decision.value} by {approval.reviewer} at {when}"
    if approval.comment:
        text += f' ("{approval.comment}")'
    if approval.limits:
        text += " limits " + ", ".join(f"{k}={v}" for k, v in sorted(approval.limits.items()))
    return text


def record_decision(
    state: StateStore,
    plan_id: str,
    decision: str | ApprovalDecision,
    reviewer: str,
    comment: str = "",
    limits: ApprovalLimits | Mapping[str, Any] | None = None,
    at: datetime | None = None,
    *,
    flow_run_id: str | None = None,
) -> DecisionOutcome:
    """Store one decision on a pending plan, once.

    The plan row is locked for the transaction (``BEGIN IMMEDIATE`` on SQLite,
    ``FOR UPDATE`` on PostgreSQL), so two answers racing from the UI and the CLI store
    one decision: the first. A plan that is no longer pending changes nothing and the
    outcome names the decision that stands. ``flow_run_id`` is the paused run the answer
    came through (kept in the audit trail).
    """
    chosen = parse_decision(decision)
    who = reviewer.strip()
    if not who:
        raise ApprovalError(f"plan {plan_id}: a decision needs a reviewer")
    checked = limits if isinstance(limits, ApprovalLimits) else ApprovalLimits(**(limits or {}))
    when = (at or utcnow()).astimezone(UTC)
    with state.session() as session:
        plan = session.exec(select(Plan).where(Plan.id == plan_id).with_for_update()).first()
        if plan is None:
            raise ApprovalError(f"plan {plan_id}: no such plan in {state.display_url}")
        standing = _standing_approval(session, plan_id)
        if plan.status != PlanStatus.PENDING_APPROVAL:
            if standing is not None:
                message = f"plan {plan_id} was already answered: {describe(standing)}"
            else:
                message = f"plan {plan_id} is {plan.status.value}, not waiting for approval"
            return DecisionOutcome(plan_id, False, plan.status, standing, message)
        approval = Approval(
            plan_id=plan_id,
            tenant=plan.tenant,
            decision=chosen,
            reviewer=who,
            comment=comment.strip(),
            limits=checked.stored() if chosen == ApprovalDecision.APPROVED else {},
            decided_at=when,
        )
        session.add(approval)
        plan.status = _PLAN_STATUS[chosen]
        plan.updated_at = when
        session.add(
            AuditEvent(
                tenant=plan.tenant,
                actor=who,
                action=f"plan.{chosen.value}",
                subject=plan_id,
                detail={
                    "comment": approval.comment,
                    "limits": approval.limits,
                    "flow_run_id": flow_run_id,
                    "decided_at": when.isoformat(),
                },
            )
        )
        status = plan.status
    return DecisionOutcome(plan_id, True, status, approval, f"plan {plan_id}: {describe(approval)}")


def record_timeout(
    state: StateStore,
    plan_id: str,
    *,
    timeout_seconds: float,
    flow_run_id: str | None = None,
    at: datetime | None = None,
) -> DecisionOutcome:
    """No answer before the pause timed out: store an expired (rejecting) decision.

    When a later optimize run has taken the plan over (its ``flow_run_id`` names another
    run that is still waiting), the earlier run's timeout leaves it alone.
    """
    if flow_run_id is not None:
        with state.session(readonly=True) as session:
            plan = session.get(Plan, plan_id)
        if (
            plan is not None
            and plan.status == PlanStatus.PENDING_APPROVAL
            and plan.flow_run_id not in (None, flow_run_id)
        ):
            return DecisionOutcome(
                plan_id,
                False,
                plan.status,
                None,
                f"plan {plan_id}: now waiting on run {plan.flow_run_id}; left pending",
            )
    return record_decision(
        state,
        plan_id,
        ApprovalDecision.EXPIRED,
        TIMEOUT_REVIEWER,
        f"no answer within {timeout_seconds:g} s; counted as rejected",
        None,
        at,
        flow_run_id=flow_run_id,
    )


def stored_approval(state: StateStore, plan_id: str) -> Approval | None:
    """The decision that stands on a plan, or None if it was never answered."""
    with state.session(readonly=True) as session:
        return _standing_approval(session, plan_id)


def find_plan(state: StateStore, plan_id: str) -> Plan:
    """A plan by id, or by a unique prefix of at least six characters (for the CLI)."""
    wanted = plan_id.strip()
    with state.session(readonly=True) as session:
        plan = session.get(Plan, wanted)
        if plan is not None:
            return plan
        if len(wanted) < _MIN_PREFIX:
            raise ApprovalError(f"plan {wanted!r}: no such plan (give the full id)")
        found = session.exec(
            select(Plan).where(col(Plan.id).startswith(wanted, autoescape=True)).limit(2)
        ).all()
    if not found:
        raise ApprovalError(f"plan {wanted!r}: no such plan in {state.display_url}")
    if len(found) > 1:
        raise ApprovalError(f"plan {wanted!r}: more than one plan starts so; give more of the id")
    return found[0]


def pending_plans(state: StateStore) -> list[Plan]:
    """Plans waiting for a decision, best rank first, then oldest first."""
    with state.session(readonly=True) as session:
        return list(
            session.exec(
                select(Plan)
                .where(Plan.status == PlanStatus.PENDING_APPROVAL)
                .order_by(col(Plan.rank), col(Plan.created_at))
            ).all()
        )


def still_pending(state: StateStore, plan_ids: Iterable[str]) -> list[str]:
    """The ids among ``plan_ids`` that still wait for a decision, in the order given."""
    wanted = list(plan_ids)
    if not wanted:
        return []
    with state.session(readonly=True) as session:
        pending = set(
            session.exec(
                select(Plan.id).where(
                    col(Plan.id).in_(wanted), Plan.status == PlanStatus.PENDING_APPROVAL
                )
            ).all()
        )
    return [p for p in wanted if p in pending]


def approved_plans(state: StateStore, plan_ids: Sequence[str] | None = None) -> list[ApprovedPlan]:
    """Plans approved and not yet rolled out, each with its stored approval.

    ``plan_ids`` narrows the answer (e.g. to one optimize run's plans). A plan counts
    only with both the ``approved`` status and a stored ``approved`` decision, so a
    status edited by hand is not enough to apply anything.
    """
    with state.session(readonly=True) as session:
        query = select(Plan).where(Plan.status == PlanStatus.APPROVED)
        if plan_ids is not None:
            query = query.where(col(Plan.id).in_(list(plan_ids)))
        plans = session.exec(query.order_by(col(Plan.rank))).all()
        out = []
        for plan in plans:
            approval = _standing_approval(session, plan.id)
            if approval is not None and approval.decision == ApprovalDecision.APPROVED:
                out.append(ApprovedPlan(plan, approval))
    return out


def require_approval(state: StateStore, plan_id: str) -> ApprovedPlan:
    """The approval a rollout must hold before it changes anything; raises without one."""
    found = approved_plans(state, [plan_id])
    if not found:
        standing = stored_approval(state, plan_id)
        why = describe(standing) if standing is not None else "no stored decision"
        raise ApprovalError(f"plan {plan_id} is not approved ({why}); nothing may be applied")
    return found[0]


def _standing_approval(session: Any, plan_id: str) -> Approval | None:
    return session.exec(
        select(Approval)
        .where(Approval.plan_id == plan_id)
        .order_by(col(Approval.decided_at), col(Approval.created_at))
    ).first()
