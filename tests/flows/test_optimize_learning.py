"""Learning across optimize runs: after a rolled-back rollout, the next run on the same
fleet proposes the same change with a smaller first step, and after a second rollback
not at all. Real flow runs under the test harness, real Qdrant local mode under
OPTIINFRA_HOME, an idle deployment written straight into the embedded store."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.flow_runs import resume_flow_run
from sqlmodel import select

from agents.memory import DecisionFeatures, OutcomeRecord, remember_outcome
from flows.optimize import OptimizeSummary, optimize_flow
from optiinfra.runtime import load_runtime
from optiinfra.store.state import Recommendation
from tests.flows.idle_fleet import BackgroundOptimize, seed_idle, write_config

pytestmark = pytest.mark.prefect

TARGET = "idle-a"


def _recommendation(config: str, summary: OptimizeSummary) -> Recommendation | None:
    """The run's idle_shutdown recommendation for the target, if it made one."""
    state = load_runtime(config).open_state()
    try:
        with state.session(readonly=True) as session:
            rows = session.exec(
                select(Recommendation).where(
                    Recommendation.target == TARGET, Recommendation.kind == "idle_shutdown"
                )
            ).all()
    finally:
        state.close()
    mine = [r for r in rows if r.evidence.get("_run_id") == summary.run_id]
    return mine[0] if mine else None


def _roll_back(config: str, summary: OptimizeSummary, rec: Recommendation, step: float) -> None:
    """What the rollout flow does when its canary fails: remember the outcome."""
    memory = load_runtime(config).open_memory()
    try:
        remember_outcome(
            memory,
            DecisionFeatures(**rec.evidence["decision_features"]),
            OutcomeRecord(
                plan_id=summary.plan_ids[0],
                recommendation_id=rec.id,
                kind=rec.kind,
                target=rec.target,
                saving_usd_per_month=0.0,
                quality_relative=-0.15,
                rolled_back=True,
                first_step_percent=step,
                reason=f"quality dropped 15% at the {step:g}% step",
            ),
        )
    finally:
        memory.close()


def _optimize(config: str, **parameters: object) -> OptimizeSummary:
    summary = optimize_flow(
        config_path=config, use_llm=False, wait_for_approval=False, **parameters
    )
    assert isinstance(summary, OptimizeSummary)
    return summary


def test_a_rolled_back_change_comes_back_smaller_then_not_at_all(
    prefect_harness: None, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    seed_idle(config, (TARGET,))

    first = _optimize(config, agents=["cost"])
    rec = _recommendation(config, first)
    assert rec is not None
    assert rec.evidence["decision_features"]["kind"] == "idle_shutdown"
    assert "first_step_percent" not in rec.evidence and "_recalled" not in rec.evidence
    _roll_back(config, first, rec, 10)

    # Second run: two agents, so they run in forked worker processes that open the
    # memory themselves; the run waits on its plan so the approval form can be read.
    run = BackgroundOptimize(
        config, agents=["cost", "performance"], wait_for_approval=True, approval_poll_seconds=1
    ).start()
    paused = run.wait_paused()
    assert "rolled back at a first step of 10%: quality dropped 15% at the 10% step" in (
        paused.description
    )
    assert "first rollout step lowered to 5%" in paused.description
    resume_flow_run(paused.run_id, run_input={"decision": "reject", "reviewer": "test"})
    second = run.join()
    again = _recommendation(config, second)
    assert again is not None
    assert again.change == rec.change  # the same change …
    assert again.evidence["first_step_percent"] == 5.0  # … at a smaller first step
    (similar,) = again.evidence["similar_outcomes"]
    assert (similar["plan_id"], similar["rolled_back"]) == (first.plan_ids[0], True)
    assert similar["similarity"] > 0.99
    assert again.evidence["_recalled"] == [similar]
    assert again.risk.value == "medium" and again.confidence < rec.confidence
    _roll_back(config, second, again, 5)

    third = _optimize(config, agents=["cost"])
    assert _recommendation(config, third) is None
    assert not [p for p in third.plans if p.get("target") == TARGET]
    assert any(
        f"idle_shutdown on {TARGET} not proposed: rolled back 2 times" in n for n in third.notes
    )
