"""Approval decisions over the state store (no Prefect): stored once, with who, when and
why; a timeout is a rejection; nothing counts as approved without a stored approval.

Every test runs on SQLite and on PostgreSQL (``state_url``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from optiinfra.approvals import (
    TIMEOUT_REVIEWER,
    ApprovalError,
    ApprovalLimits,
    approved_plans,
    find_plan,
    pending_plans,
    record_decision,
    record_timeout,
    require_approval,
    still_pending,
    stored_approval,
)
from optiinfra.config.schema import OptiInfraConfig
from optiinfra.store.state import (
    Approval,
    ApprovalDecision,
    AuditEvent,
    Plan,
    PlanStatus,
    StateStore,
    open_state,
)
from tests.store.state_fixtures import run_at_once, state_url

__all__ = ["state_url"]

AT = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    opened = open_state(state_url)
    opened.sync_config(OptiInfraConfig())
    yield opened
    opened.close()


def _plan(store: StateStore, *, rank: int = 1, run: str | None = "run-1", **values: object) -> str:
    with store.session() as session:
        plan = Plan(
            tenant="default",
            rank=rank,
            summary=f"plan {rank}",
            status=values.pop("status", PlanStatus.PENDING_APPROVAL),
            flow_run_id=run,
            expected_deltas={"cost_usd_per_month": {"value": -500.0, "unit": "USD/month"}},
        )
        session.add(plan)
    return plan.id


def _rows(store: StateStore, table: type) -> list:
    with store.session(readonly=True) as session:
        return list(session.exec(select(table)).all())


def _status(store: StateStore, plan_id: str) -> PlanStatus:
    with store.session(readonly=True) as session:
        plan = session.get(Plan, plan_id)
        assert plan is not None
        return plan.status


def test_an_approval_is_stored_with_who_when_why_and_limits(store: StateStore) -> None:
    plan_id = _plan(store)
    limits = {"max_rollout_percent": 50, "not_before": "2026-11-25T02:00:00"}

    outcome = record_decision(
        store, plan_id, "approve", " alice ", "cheaper and idle", limits, AT, flow_run_id="run-1"
    )

    assert outcome.recorded and outcome.status == PlanStatus.APPROVED
    [approval] = _rows(store, Approval)
    assert approval.decision == ApprovalDecision.APPROVED
    assert (approval.reviewer, approval.comment, approval.decided_at) == (
        "alice",
        "cheaper and idle",
        AT,
    )
    # A time without a zone is read as UTC; only the limits that were set are kept.
    assert approval.limits == {"max_rollout_percent": 50, "not_before": "2026-11-25T02:00:00Z"}
    assert _status(store, plan_id) == PlanStatus.APPROVED
    [event] = [e for e in _rows(store, AuditEvent) if e.action.startswith("plan.")]
    assert (event.actor, event.action, event.subject) == ("alice", "plan.approved", plan_id)
    assert event.detail["flow_run_id"] == "run-1"

    [approved] = approved_plans(store)
    assert approved.plan.id == plan_id
    assert approved.limits.max_rollout_percent == 50
    assert require_approval(store, plan_id).approval.reviewer == "alice"


def test_a_rejection_rejects_the_plan_and_nothing_counts_as_approved(store: StateStore) -> None:
    plan_id = _plan(store)
    outcome = record_decision(store, plan_id, "reject", "bob", "not during the launch", at=AT)
    assert outcome.recorded and outcome.status == PlanStatus.REJECTED
    assert _status(store, plan_id) == PlanStatus.REJECTED
    assert stored_approval(store, plan_id).comment == "not during the launch"  # type: ignore[union-attr]
    # Limits on a rejection mean nothing and are not kept.
    assert approved_plans(store) == []
    with pytest.raises(ApprovalError, match=r"not approved .*rejected by bob"):
        require_approval(store, plan_id)


def test_answering_twice_keeps_the_first_decision_and_says_so(store: StateStore) -> None:
    plan_id = _plan(store)
    first = record_decision(store, plan_id, "approve", "alice", "go", at=AT)
    second = record_decision(store, plan_id, "reject", "bob", "no", at=AT + timedelta(minutes=5))
    again = record_decision(store, plan_id, "approve", "alice", "go", at=AT + timedelta(hours=1))

    assert first.recorded and not second.recorded and not again.recorded
    assert "already answered: approved by alice" in second.message
    assert second.approval is not None and second.approval.reviewer == "alice"
    assert len(_rows(store, Approval)) == 1
    assert _status(store, plan_id) == PlanStatus.APPROVED


def test_a_timeout_stores_an_expired_rejection_by_timeout(store: StateStore) -> None:
    plan_id = _plan(store, run="run-1")
    outcome = record_timeout(store, plan_id, timeout_seconds=86400, flow_run_id="run-1", at=AT)

    assert outcome.recorded and outcome.status == PlanStatus.REJECTED
    approval = stored_approval(store, plan_id)
    assert approval is not None
    assert approval.decision == ApprovalDecision.EXPIRED
    assert approval.reviewer == TIMEOUT_REVIEWER
    assert "86400 s" in approval.comment
    assert approved_plans(store) == []
    # A person answering after the timeout changes nothing.
    late = record_decision(store, plan_id, "approve", "alice", at=AT + timedelta(minutes=1))
    assert not late.recorded and "expired by timeout" in late.message


def test_a_timeout_leaves_alone_a_plan_a_later_run_waits_on(store: StateStore) -> None:
    plan_id = _plan(store, run="run-2")  # refreshed by run-2 after run-1 paused on it
    outcome = record_timeout(store, plan_id, timeout_seconds=60, flow_run_id="run-1")
    assert not outcome.recorded and "run-2" in outcome.message
    assert _status(store, plan_id) == PlanStatus.PENDING_APPROVAL
    assert still_pending(store, [plan_id, "nope"]) == [plan_id]


def test_a_superseded_plan_takes_no_decision(store: StateStore) -> None:
    plan_id = _plan(store, status=PlanStatus.SUPERSEDED)
    outcome = record_decision(store, plan_id, "approve", "alice")
    assert not outcome.recorded and outcome.approval is None
    assert "superseded, not waiting" in outcome.message
    assert _rows(store, Approval) == []


def test_bad_answers_are_refused_with_the_reason(store: StateStore) -> None:
    plan_id = _plan(store)
    with pytest.raises(ApprovalError, match="needs a reviewer"):
        record_decision(store, plan_id, "approve", "  ")
    with pytest.raises(ApprovalError, match="expected approve or reject"):
        record_decision(store, plan_id, "maybe", "alice")
    with pytest.raises(ApprovalError, match="no such plan"):
        record_decision(store, "0" * 32, "approve", "alice")
    with pytest.raises(ValueError, match="not_after must be later"):
        ApprovalLimits(not_before=AT, not_after=AT - timedelta(hours=1))
    with pytest.raises(ValueError, match="less than or equal to 100"):
        ApprovalLimits(max_rollout_percent=150)
    assert _rows(store, Approval) == []
    assert _status(store, plan_id) == PlanStatus.PENDING_APPROVAL


def test_plans_are_found_by_id_or_unique_prefix_and_listed_by_rank(store: StateStore) -> None:
    second = _plan(store, rank=2)
    first = _plan(store, rank=1)
    _plan(store, rank=3, status=PlanStatus.APPROVED)
    assert [p.id for p in pending_plans(store)] == [first, second]
    assert find_plan(store, first[:8]).id == first
    assert find_plan(store, second).id == second
    with pytest.raises(ApprovalError, match="give the full id"):
        find_plan(store, first[:3])
    with pytest.raises(ApprovalError, match="no such plan"):
        find_plan(store, "zzzzzzzz")


_RACE = """
import sys, pathlib, time
from optiinfra.approvals import record_decision
from optiinfra.store.state import open_state
url, plan_id, decision, reviewer, gate = sys.argv[1:]
store = open_state(url, migrate=False)
print("ready", flush=True)
while not pathlib.Path(gate).exists():
    time.sleep(0.01)
outcome = record_decision(store, plan_id, decision, reviewer)
print("recorded" if outcome.recorded else "refused")
"""


def test_racing_answers_from_two_processes_store_exactly_one(
    store: StateStore, state_url: str, tmp_path: Path
) -> None:
    plan_id = _plan(store)
    outputs = run_at_once(
        _RACE,
        [[state_url, plan_id, "approve", "ui-user"], [state_url, plan_id, "reject", "cli-user"]],
        tmp_path / "gate",
    )
    assert sorted(outputs) == ["recorded", "refused"]
    [approval] = _rows(store, Approval)
    winner = outputs.index("recorded")
    assert approval.reviewer == ("ui-user", "cli-user")[winner]
    assert _status(store, plan_id) == (PlanStatus.APPROVED, PlanStatus.REJECTED)[winner]
