"""What a rollout reads and writes: its rows in the state store (written after every
step, so a new process can resume or revert it) and its window of the time-series store.

Each function opens what it needs and returns plain values; the flow never holds a
store across a bake (a rollout may bake for hours, and the embedded chDB store is
locked while open).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlmodel import col, select

from flows.rollout_logic import RolloutRefused, merge_changes
from optiinfra.models import QualityEvent, Sample
from optiinfra.store.state import (
    AuditEvent,
    Outcome,
    Plan,
    PlanRecommendation,
    PlanStatus,
    Recommendation,
    Rollout,
    RolloutState,
    RolloutStep,
    StateStore,
    StepState,
    Verdict,
)
from optiinfra.store.state.types import utcnow
from optiinfra.store.timeseries import TimeSeriesStore
from optiinfra.store.timeseries.store import quote_datetime, quote_string

#: The actor recorded in the audit trail for what a rollout does by itself.
ACTOR = "rollout"


def owner_id() -> str:
    """``host:pid`` of this process: a later run on the same host can tell it died."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str) -> bool | None:
    """Whether the process named by ``owner`` still runs (None: another host, unknown)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PlanSpec:
    """What an approved plan changes, where (one target per plan: the coordinator merges
    proposals on the same target into one plan)."""

    plan_id: str
    tenant: str
    provider: str
    deployment: str
    change: dict[str, Any]
    expected_deltas: dict[str, Any]
    evidence: dict[str, Any] = field(default_factory=dict)
    kinds: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "provider": self.provider,
            "deployment": self.deployment,
            "change": self.change,
            "expected_deltas": self.expected_deltas,
            "evidence": self.evidence,
            "kinds": self.kinds,
        }

    @classmethod
    def from_json(cls, plan_id: str, data: dict[str, Any]) -> PlanSpec:
        """From a rollout's ``spec`` column (keys the rollout adds itself are skipped)."""
        known = ("tenant", "provider", "deployment", "change", "expected_deltas", "evidence",
                 "kinds")  # fmt: skip
        return cls(plan_id=plan_id, **{k: data[k] for k in known if k in data})


def plan_spec(state: StateStore, plan_id: str) -> PlanSpec:
    """The plan's target and merged change, from its recommendations."""
    with state.session(readonly=True) as session:
        plan = session.get(Plan, plan_id)
        if plan is None:
            raise RolloutRefused(f"plan {plan_id}: no such plan in {state.display_url}")
        recs = session.exec(
            select(Recommendation)
            .join(PlanRecommendation, PlanRecommendation.recommendation_id == Recommendation.id)
            .where(PlanRecommendation.plan_id == plan_id)
            .order_by(col(PlanRecommendation.position))
        ).all()
    if not recs:
        raise RolloutRefused(f"plan {plan_id} carries no recommendation: nothing to apply")
    targets = {(r.provider, r.target) for r in recs}
    if len(targets) != 1:
        raise RolloutRefused(f"plan {plan_id} touches several targets {sorted(targets)}")
    provider, deployment = next(iter(targets))
    if not provider:
        raise RolloutRefused(f"plan {plan_id}: its recommendations name no provider")
    evidence: dict[str, Any] = {"_recommendation_id": recs[0].id}
    for rec in recs:
        evidence = {**rec.evidence, **evidence}  # the first recommendation's evidence wins
    return PlanSpec(
        plan_id=plan_id,
        tenant=plan.tenant,
        provider=provider,
        deployment=deployment,
        change=merge_changes(r.change for r in recs),
        expected_deltas=dict(plan.expected_deltas),
        evidence=evidence,
        kinds=[r.kind for r in recs],
    )


def set_plan_status(state: StateStore, plan_id: str, status: PlanStatus) -> None:
    with state.session() as session:
        plan = session.get(Plan, plan_id)
        if plan is not None:
            plan.status = status
            plan.updated_at = utcnow()
            session.add(plan)


# ---------------------------------------------------------------- rollout rows


def create_rollout(
    state: StateStore,
    spec: PlanSpec,
    steps: list[int],
    *,
    flow_run_id: str,
    owner: str,
) -> Rollout:
    """A new rollout, ``running``, its plan ``rolling_out`` (one transaction)."""
    now = utcnow()
    with state.session() as session:
        row = Rollout(
            plan_id=spec.plan_id,
            tenant=spec.tenant,
            state=RolloutState.RUNNING,
            steps_percent=steps,
            current_step=0,
            started_at=now,
            spec=spec.as_json(),
            flow_run_id=flow_run_id,
            owner=owner,
        )
        session.add(row)
        plan = session.get(Plan, spec.plan_id)
        assert plan is not None
        plan.status = PlanStatus.ROLLING_OUT
        plan.updated_at = now
        session.add(plan)
        session.add(
            AuditEvent(tenant=spec.tenant, actor=ACTOR, action="rollout.started",
                       subject=spec.plan_id, detail={"rollout_id": row.id, "steps": steps,
                                                     "flow_run_id": flow_run_id})
        )  # fmt: skip
        session.flush()
        session.refresh(row)
        session.expunge(row)
    return row


def get_rollout(state: StateStore, rollout_id: str) -> Rollout:
    with state.session(readonly=True) as session:
        row = session.get(Rollout, rollout_id)
    if row is None:
        raise RolloutRefused(f"rollout {rollout_id}: no such rollout in {state.display_url}")
    return row


def update_rollout(store: StateStore, rollout_id: str, **values: Any) -> None:
    """Set columns of a rollout (and touch ``updated_at``: the heartbeat)."""
    with store.session() as session:
        row = session.get(Rollout, rollout_id)
        assert row is not None, rollout_id
        for key, value in values.items():
            setattr(row, key, value)
        row.updated_at = utcnow()
        session.add(row)


def steps_of(state: StateStore, rollout_id: str) -> list[RolloutStep]:
    with state.session(readonly=True) as session:
        return list(
            session.exec(
                select(RolloutStep)
                .where(RolloutStep.rollout_id == rollout_id)
                .order_by(col(RolloutStep.position))
            ).all()
        )


def record_step(
    state: StateStore,
    rollout_id: str,
    position: int,
    percent: int,
    step_state: StepState,
    *,
    verdict: Verdict | None = None,
    reason: str | None = None,
    metrics: dict[str, Any] | None = None,
) -> None:
    """Create or update step ``position`` of a rollout, and the rollout's current step."""
    now = utcnow()
    with state.session() as session:
        step = session.exec(
            select(RolloutStep).where(
                RolloutStep.rollout_id == rollout_id, RolloutStep.position == position
            )
        ).first()
        if step is None:
            step = RolloutStep(rollout_id=rollout_id, position=position, percent=percent)
        if step_state == StepState.APPLYING:
            step.started_at = now
            step.verdict = None
        step.state = step_state
        if verdict is not None:
            step.verdict = verdict
            step.checked_at = now
        if reason is not None:
            step.reason = reason
        if metrics is not None:
            step.metrics = metrics
        step.updated_at = now
        session.add(step)
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None
        rollout.current_step = position
        rollout.updated_at = now
        session.add(rollout)


def running_rollouts(state: StateStore) -> list[Rollout]:
    """Rollouts some process started and did not finish (running or rolling back)."""
    with state.session(readonly=True) as session:
        return list(
            session.exec(
                select(Rollout).where(
                    col(Rollout.state).in_([RolloutState.RUNNING, RolloutState.ROLLING_BACK])
                )
            ).all()
        )


def audit(state: StateStore, tenant: str, action: str, subject: str, **detail: Any) -> None:
    with state.session() as session:
        session.add(
            AuditEvent(tenant=tenant, actor=ACTOR, action=action, subject=subject, detail=detail)
        )


def store_outcome(
    state: StateStore,
    rollout: Rollout,
    *,
    realised: dict[str, Any],
    rolled_back: bool,
    notes: str,
) -> str:
    """The outcome of a rollout (one per rollout: a repeat updates it); its id."""
    with state.session() as session:
        row = session.exec(select(Outcome).where(Outcome.rollout_id == rollout.id)).first()
        if row is None:
            row = Outcome(plan_id=rollout.plan_id, rollout_id=rollout.id, tenant=rollout.tenant)
        row.realised_deltas = realised
        row.rolled_back = rolled_back
        row.notes = notes
        row.updated_at = utcnow()
        session.add(row)
        session.flush()
        return row.id


def set_memory_id(state: StateStore, outcome_id: str, memory_id: str) -> None:
    with state.session() as session:
        row = session.get(Outcome, outcome_id)
        if row is not None:
            row.memory_id = memory_id
            session.add(row)


# ---------------------------------------------------------------- time series


def quality_rows(
    store: TimeSeriesStore, tenant: str, deployment: str, since: datetime
) -> pd.DataFrame:
    """Quality events of a deployment since ``since`` (``QualityEvent.COLUMNS``)."""
    frame = store.query_df(
        f"SELECT {', '.join(QualityEvent.COLUMNS)} FROM quality_events FINAL "
        f"WHERE tenant = {quote_string(tenant)} AND deployment = {quote_string(deployment)} "
        f"AND ts >= {quote_datetime(since)} ORDER BY ts"
    )
    return frame if len(frame) else pd.DataFrame(columns=list(QualityEvent.COLUMNS))


def sample_rows(
    store: TimeSeriesStore, tenant: str, provider: str, deployment: str, since: datetime
) -> pd.DataFrame:
    """Samples of a deployment since ``since`` (``Sample.COLUMNS``, labels as JSON text)."""
    frame = store.query_df(
        f"SELECT {', '.join(Sample.COLUMNS)} FROM samples FINAL "
        f"WHERE tenant = {quote_string(tenant)} AND provider = {quote_string(provider)} "
        f"AND deployment = {quote_string(deployment)} AND ts >= {quote_datetime(since)} "
        "AND isFinite(value) ORDER BY ts"
    )
    return frame if len(frame) else pd.DataFrame(columns=list(Sample.COLUMNS))


def price_rows(
    store: TimeSeriesStore,
    tenant: str,
    provider: str,
    deployment: str,
    since: datetime,
    until: datetime,
) -> pd.DataFrame:
    """``price_usd_per_hour`` samples of a deployment's instances in [since, until]."""
    frame = store.query_df(
        "SELECT instance, ts, value FROM samples FINAL "
        f"WHERE tenant = {quote_string(tenant)} AND provider = {quote_string(provider)} "
        f"AND deployment = {quote_string(deployment)} AND metric = 'price_usd_per_hour' "
        f"AND ts >= {quote_datetime(since)} AND ts <= {quote_datetime(until)} "
        "AND isFinite(value)"
    )
    return frame if len(frame) else pd.DataFrame(columns=["instance", "ts", "value"])


def last_price_window(
    store: TimeSeriesStore, tenant: str, provider: str, deployment: str, until: datetime
) -> pd.DataFrame:
    """The prices of the deployment's most recent collection at or before ``until``
    (within a day): what it cost just before a rollout started."""
    since = until - timedelta(days=1)
    frame = price_rows(store, tenant, provider, deployment, since, until)
    if frame.empty:
        return frame
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    latest = frame["ts"].max()
    return frame[frame["ts"] == latest]
