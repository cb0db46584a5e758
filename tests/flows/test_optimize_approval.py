"""The optimize flow pauses on its plans with one form; answers arrive through Prefect's
API (as the UI and ``optiinfra approve`` send them) and are stored with who, when, why.

A real flow run under the test harness, in a background thread; two idle deployments
seeded into the embedded store give it two plans to ask about.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect.exceptions import NotPausedError
from prefect.flow_runs import resume_flow_run
from sqlmodel import select

from optiinfra.approvals import TIMEOUT_REVIEWER, approved_plans, stored_approval
from optiinfra.runtime import load_runtime
from optiinfra.store.state import Approval, ApprovalDecision, Plan, PlanStatus
from tests.flows.idle_fleet import BackgroundOptimize, seed_idle, write_config

pytestmark = pytest.mark.prefect

DEPLOYMENTS = ("idle-a", "idle-b")


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = write_config(tmp_path)
    seed_idle(path, DEPLOYMENTS)
    return path


def _plans(config: str) -> dict[str, Plan]:
    state = load_runtime(config).open_state()
    try:
        with state.session(readonly=True) as session:
            return {p.id: p for p in session.exec(select(Plan)).all()}
    finally:
        state.close()


def _approvals(config: str) -> list[Approval]:
    state = load_runtime(config).open_state()
    try:
        with state.session(readonly=True) as session:
            return list(session.exec(select(Approval)).all())
    finally:
        state.close()


def test_the_run_pauses_on_its_plans_and_stores_the_approval(
    prefect_harness: None, config: str
) -> None:
    run = BackgroundOptimize(config, wait_for_approval=True, approval_poll_seconds=1).start()
    paused = run.wait_paused()
    plans = _plans(config)
    assert len(plans) == 2
    assert {p.flow_run_id for p in plans.values()} == {paused.run_id}
    assert all(p.status == PlanStatus.PENDING_APPROVAL for p in plans.values())
    # The form's description is both plans in full.
    form = paused.description
    for plan_id in plans:
        assert f"plan id: `{plan_id}`" in form
    for part in (
        "### What changes",
        '"replicas": 0',
        "cost_usd_per_month: -$588/month",
        "gpus: -1 GPUs",
        "### Similar past outcomes",
    ):
        assert part in form
    assert "tenant `default`, provider `fleet`, target `idle-a`" in form
    assert "No answer within 24h (by " in form

    # The server checks the answer against the form's schema: a wrong one is refused and
    # the run keeps waiting.
    with pytest.raises(RuntimeError, match="decision"):
        resume_flow_run(paused.run_id, run_input={"decision": "maybe", "reviewer": "x"})
    assert not [a for a in _approvals(config)]

    before = datetime.now(UTC)
    resume_flow_run(
        paused.run_id,
        run_input={
            "decision": "approve",
            "reviewer": "alice",
            "comment": "both idle since noon",
            "max_rollout_percent": 50,
        },
    )
    summary = run.join()
    after = datetime.now(UTC)

    assert summary.approval is not None
    assert sorted(summary.approved_plan_ids) == sorted(plans)
    assert summary.approval.answers == 1 and not summary.approval.timed_out
    approvals = _approvals(config)
    assert len(approvals) == 2
    for approval in approvals:
        assert approval.decision == ApprovalDecision.APPROVED
        assert (approval.reviewer, approval.comment) == ("alice", "both idle since noon")
        assert approval.limits == {"max_rollout_percent": 50}
        assert before <= approval.decided_at <= after
    assert {p.status for p in _plans(config).values()} == {PlanStatus.APPROVED}
    state = load_runtime(config).open_state()
    try:
        assert sorted(a.plan.id for a in approved_plans(state, summary.plan_ids)) == sorted(plans)
    finally:
        state.close()


def test_answers_per_plan_a_repeat_is_harmless_and_a_rejection_applies_nothing(
    prefect_harness: None, config: str
) -> None:
    run = BackgroundOptimize(config, wait_for_approval=True, approval_poll_seconds=1).start()
    paused = run.wait_paused()
    first, second = run_plan_ids = list(_plans(config))
    resume_flow_run(
        paused.run_id,
        run_input={"decision": "approve", "reviewer": "alice", "plans": [first[:8]]},
    )
    # The run asks again, about the other plan only.
    again = run.wait_paused(pause=2)
    assert f"`{second}`" in again.description and f"`{first}`" not in again.description
    # The same plan answered twice (now the other way): nothing changes, it asks again.
    resume_flow_run(
        paused.run_id, run_input={"decision": "reject", "reviewer": "bob", "plans": [first]}
    )
    third = run.wait_paused(pause=3)
    assert f"`{second}`" in third.description
    resume_flow_run(
        paused.run_id,
        run_input={"decision": "reject", "reviewer": "carol", "comment": "keep it warm"},
    )
    summary = run.join()

    assert summary.approval is not None
    assert summary.approval.approved == [first]
    assert summary.approval.rejected == [second]
    assert summary.approval.answers == 3
    plans = _plans(config)
    assert plans[first].status == PlanStatus.APPROVED
    assert plans[second].status == PlanStatus.REJECTED
    by_plan = {a.plan_id: a for a in _approvals(config)}
    assert len(_approvals(config)) == 2  # the repeat stored nothing
    assert by_plan[first].reviewer == "alice"
    assert (by_plan[second].reviewer, by_plan[second].comment) == ("carol", "keep it warm")
    state = load_runtime(config).open_state()
    try:
        assert [a.plan.id for a in approved_plans(state, run_plan_ids)] == [first]
    finally:
        state.close()


def test_no_answer_before_the_timeout_rejects_every_plan_by_timeout(
    prefect_harness: None, config: str, tmp_path: Path
) -> None:
    # Approval from the configuration this time: always wait, three seconds.
    Path(config).write_text(
        "version: 1\noptimize: {idle_min_observed: 5m, approval: wait, approval_timeout: 3s}\n"
    )
    run = BackgroundOptimize(config, approval_poll_seconds=1).start()
    paused = run.wait_paused()
    summary = run.join()  # completes (not Failed) although the pause timed out

    assert summary.approval is not None and summary.approval.timed_out
    assert sorted(summary.approval.expired) == sorted(summary.plan_ids)
    assert summary.approved_plan_ids == []
    state = load_runtime(config).open_state()
    try:
        for plan_id in summary.plan_ids:
            approval = stored_approval(state, plan_id)
            assert approval is not None
            assert approval.decision == ApprovalDecision.EXPIRED
            assert approval.reviewer == TIMEOUT_REVIEWER
        assert approved_plans(state) == []
    finally:
        state.close()
    assert {p.status for p in _plans(config).values()} == {PlanStatus.REJECTED}
    # A late answer finds nobody listening.
    with pytest.raises(NotPausedError):
        resume_flow_run(paused.run_id, run_input={"decision": "approve", "reviewer": "late"})


def test_an_ad_hoc_run_does_not_pause_by_default(prefect_harness: None, config: str) -> None:
    run = BackgroundOptimize(config).start()
    summary = run.join()
    assert summary.approval is None
    plans = _plans(config)
    assert len(plans) == 2
    assert all(p.status == PlanStatus.PENDING_APPROVAL for p in plans.values())
    assert all(p.flow_run_id is None for p in plans.values())
    assert _approvals(config) == []


def test_a_run_of_a_deployment_waits_by_default(prefect_harness: None, config: str) -> None:
    run = BackgroundOptimize(config, from_deployment=True, approval_poll_seconds=1).start()
    paused = run.wait_paused()
    resume_flow_run(paused.run_id, run_input={"decision": "reject", "reviewer": "dana"})
    summary = run.join()
    assert summary.approval is not None
    assert sorted(summary.approval.rejected) == sorted(summary.plan_ids)
    assert {p.status for p in _plans(config).values()} == {PlanStatus.REJECTED}


def test_approved_plans_start_runs_of_the_rollout_deployment(
    prefect_harness: None, config: str
) -> None:
    """The served loop: a deployment run of optimize starts one rollout run per approved
    plan (not waited for); without a served rollout deployment the plan stays approved
    and the run says how to start it."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    from flows.rollout import rollout_flow

    # the harness server is shared by the session: no rollout deployment to start with
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectNotFound):
        client.delete_deployment(client.read_deployment_by_name("rollout/rollout").id)
    run = BackgroundOptimize(config, wait_for_approval=True, approval_poll_seconds=1,
                             start_rollouts=True).start()  # fmt: skip
    paused = run.wait_paused()
    plans = sorted(_plans(config))
    resume_flow_run(paused.run_id, run_input={"decision": "reject", "reviewer": "bob",
                                              "plans": [plans[1]]})  # fmt: skip
    paused = run.wait_paused(pause=2)
    resume_flow_run(paused.run_id, run_input={"decision": "approve", "reviewer": "bob"})
    summary = run.join()
    assert summary.approved_plan_ids == [plans[0]]
    assert summary.rollouts == {}
    assert any(f"optiinfra rollout {plans[0]}" in n for n in summary.notes)

    rollout_flow.to_deployment(name="rollout").apply()
    seed_idle(config, ("idle-c",))  # a new plan to answer
    again = BackgroundOptimize(config, wait_for_approval=True, approval_poll_seconds=1,
                               start_rollouts=True).start()  # fmt: skip
    paused = again.wait_paused()
    resume_flow_run(paused.run_id, run_input={"decision": "approve", "reviewer": "bob"})
    summary = again.join()
    assert summary.approved_plan_ids and set(summary.rollouts) == set(summary.approved_plan_ids)
    with get_client(sync_client=True) as client:
        for plan_id, flow_run_id in summary.rollouts.items():
            flow_run = client.read_flow_run(flow_run_id)
            assert flow_run.parameters["plan_id"] == plan_id
            assert flow_run.deployment_id is not None
