"""``optiinfra plans``, ``approve`` and ``reject`` through the real CLI entry point,
against an optimize run paused under the test harness (the Prefect API the CLI uses)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from optiinfra.approvals import stored_approval
from optiinfra.cli import main
from optiinfra.runtime import load_runtime
from optiinfra.store.state import Approval, ApprovalDecision, Plan, PlanStatus
from tests.flows.idle_fleet import BackgroundOptimize, seed_idle, write_config

pytestmark = pytest.mark.prefect


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = write_config(tmp_path)
    seed_idle(path, ("idle-a", "idle-b"))
    return path


def _plans(config: str) -> list[Plan]:
    state = load_runtime(config).open_state()
    try:
        with state.session(readonly=True) as session:
            return list(session.exec(select(Plan).order_by(Plan.rank)).all())
    finally:
        state.close()


def _approval(config: str, plan_id: str) -> Approval | None:
    state = load_runtime(config).open_state()
    try:
        return stored_approval(state, plan_id)
    finally:
        state.close()


def test_plans_approve_and_reject_answer_the_paused_run(
    prefect_harness: None, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = BackgroundOptimize(config, wait_for_approval=True, approval_poll_seconds=1).start()
    paused = run.wait_paused()
    first, second = (p.id for p in _plans(config))

    assert main(["--config", config, "plans"]) == 0
    out = capsys.readouterr().out
    assert "2 plan(s) waiting for approval" in out
    assert first in out and second in out and paused.run_id in out
    assert "paused" in out and "Scale idle idle-a to zero" in out and "$588" in out

    code = main(
        ["--config", config, "approve", first[:8], "--reviewer", "alice",
         "--comment", "idle all week", "--max-percent", "50"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"plan {first}: approved by alice" in out
    approval = _approval(config, first)
    assert approval is not None
    assert (approval.decision, approval.reviewer, approval.comment) == (
        ApprovalDecision.APPROVED,
        "alice",
        "idle all week",
    )
    assert approval.limits == {"max_rollout_percent": 50}

    # Answering twice is harmless: the first decision stands and the command says so.
    assert main(["--config", config, "approve", first, "--reviewer", "bob"]) == 0
    out = capsys.readouterr().out
    assert "already answered: approved by alice" in out and "Nothing changed" in out
    assert main(["--config", config, "reject", first, "--reviewer", "bob"]) == 1
    assert "already answered: approved by alice" in capsys.readouterr().out

    # The run asked again about the other plan; reject it.
    assert main(["--config", config, "plans"]) == 0
    out = capsys.readouterr().out
    assert "1 plan(s) waiting" in out and second in out and first not in out
    assert main(["--config", config, "reject", second, "--reviewer", "carol"]) == 0
    assert f"plan {second}: rejected by carol" in capsys.readouterr().out

    summary = run.join()
    assert summary.approval is not None
    assert summary.approval.approved == [first] and summary.approval.rejected == [second]
    assert [p.status for p in _plans(config)] == [PlanStatus.APPROVED, PlanStatus.REJECTED]
    assert main(["--config", config, "plans"]) == 0
    assert "no plans waiting for approval" in capsys.readouterr().out


def test_a_run_that_no_longer_listens_changes_nothing(
    prefect_harness: None, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A run that did not pause: its plans have no waiting run.
    summary = BackgroundOptimize(config).start().join()
    plan_id = summary.plan_ids[0]
    assert main(["--config", config, "approve", plan_id, "--reviewer", "alice"]) == 1
    assert "no optimize run is waiting" in capsys.readouterr().out

    # A plan whose run is over (crashed, say) while the plan is still pending.
    state = load_runtime(config).open_state()
    try:
        with state.session() as session:
            plan = session.get(Plan, plan_id)
            assert plan is not None
            plan.flow_run_id = summary.run_id  # a real, completed flow run
    finally:
        state.close()
    assert main(["--config", config, "approve", plan_id, "--reviewer", "alice"]) == 1
    out = capsys.readouterr().out
    assert f"run {summary.run_id} is no longer paused (state: completed)" in out
    assert "Nothing changed" in out
    assert _approval(config, plan_id) is None
    assert _plans(config)[0].status == PlanStatus.PENDING_APPROVAL


def test_after_a_timeout_the_cli_reports_the_expiry(
    prefect_harness: None, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = BackgroundOptimize(
        config, wait_for_approval=True, approval_timeout="2s", approval_poll_seconds=1
    ).start()
    summary = run.join()
    plan_id = summary.plan_ids[0]
    assert main(["--config", config, "approve", plan_id, "--reviewer", "late"]) == 1
    out = capsys.readouterr().out
    assert "already answered: expired by timeout" in out and "Nothing changed" in out
    approval = _approval(config, plan_id)
    assert approval is not None and approval.reviewer == "timeout"


def test_bad_options_are_refused_before_anything_is_sent(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", config, "approve", "abcdef12", "--max-percent", "150"]) == 1
    err = capsys.readouterr().err
    assert "--max-percent" in err and "100" in err
    code = main(
        ["--config", config, "approve", "abcdef12", "--not-before", "2026-11-25T03:00",
         "--not-after", "2026-11-25T01:00"]
    )  # fmt: skip
    assert code == 1
    assert "not_after must be later than not_before" in capsys.readouterr().err
    assert main(["--config", config, "reject", "abcdef12", "--reviewer", "x"]) == 1
    assert "no such plan" in capsys.readouterr().err
    assert main(["--config", config, "plans"]) == 0
    assert "no plans waiting for approval" in capsys.readouterr().out
