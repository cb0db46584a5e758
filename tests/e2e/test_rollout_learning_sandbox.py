"""Acceptance (issue 7): the learning loop on a live sandbox fleet, all through the product.

The fleet (``optiinfra/sandbox/fleets/fragile.yaml``): one 70B deployment on two servers
of eight H100s (tensor-parallel 8), no load of its own; the golden-set probes are its
traffic. The tenant's SLO asks for a 5 ms p95 inter-token latency, which the deployment
misses, so the performance agent proposes the only remedy left to it: FP8 weights (no
larger tensor-parallel size is on offer). The sandbox has a planted fault the agents
cannot see (``quantization_sensitivity: 100``): under FP8 this model's answers break
(error 0.04 → 0.29).

One run of the loop:

1. collect (sandbox provider + one quality provider per server) → optimize pauses →
   the reviewer approves the quantization plan, and only it, through Prefect's API;
2. ``rollout_flow`` → the canary fails at the first step on quality → rolled back, every
   server reads back its old configuration (``GET /admin/config``), the Outcome is
   stored and recalled from decision memory;
3. collect → optimize again on the same fleet: the same change is not proposed at the
   same step size (dropped, or proposed with a first step under 10 % and the rolled-back
   outcome in its evidence).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.flow_runs import resume_flow_run
from sqlmodel import select

import optiinfra.sandbox
from agents.memory import DecisionFeatures, recall_similar
from flows.collect import collect_flow
from flows.optimize import OptimizeSummary, optimize_flow
from flows.rollout import rollout_flow
from optiinfra.runtime import load_runtime
from optiinfra.sandbox.fleet import load_fleet
from optiinfra.store.state import (
    Outcome,
    Plan,
    PlanRecommendation,
    PlanStatus,
    Recommendation,
    Rollout,
    RolloutState,
    RolloutStep,
    StepState,
)
from tests.e2e.probed_sandbox import probed_config, server_urls
from tests.e2e.sandbox_thread import SandboxThread, sandbox_thread
from tests.flows.idle_fleet import BackgroundOptimize

pytestmark = pytest.mark.prefect

FLEET = Path(optiinfra.sandbox.__file__).parent / "fleets" / "fragile.yaml"
DEPLOYMENT = "chat-70b"
MODEL = "meta-llama/Llama-3.1-70B-Instruct"
QUANTIZE = {"engine_args": {"quantization": "fp8"}}
#: Short bakes: the collections at each end of a bake are the real wait.
FAST = {"bake_seconds": 1.0, "max_bake_rounds": 2, "collections_per_bake": 1}


# ---------------------------------------------------------------- set-up


def _servers(sandbox: SandboxThread) -> dict[str, str]:
    return server_urls(sandbox, DEPLOYMENT)


def _config(tmp_path: Path, sandbox: SandboxThread) -> str:
    """providers.yaml: the sandbox, one quality provider per server, and the tenant's
    tight inter-token SLO."""
    return probed_config(
        tmp_path, sandbox, DEPLOYMENT, MODEL,
        more_lines=[
            "slos:",
            f"  - {{tenant: default, deployment: {DEPLOYMENT}, itl_p95_seconds: 0.005}}",
            "optimize: {idle_min_observed: 5s}",
        ],
    )  # fmt: skip


def _configs(sandbox: SandboxThread) -> dict[str, dict[str, Any]]:
    """Each server's configuration as the sandbox itself says (``GET /admin/config``)."""
    out = {}
    for name, url in _servers(sandbox).items():
        doc = httpx.get(f"{url}/admin/config", timeout=10).json()
        out[name] = {"config_id": doc["config_id"], **doc["spec"]}
    return out


def _rows(config: str, table: type, **where: Any) -> list[Any]:
    state = load_runtime(config).open_state()
    try:
        with state.session(readonly=True) as session:
            query = select(table)
            for key, value in where.items():
                query = query.where(getattr(table, key) == value)
            return list(session.exec(query).all())
    finally:
        state.close()


def _collect(config: str, runs: int) -> None:
    for _ in range(runs):
        summary = collect_flow(config_path=config)
        assert {r.status for r in summary.results} == {"ok"}, summary.results


def _quantizations(config: str, summary: OptimizeSummary) -> list[Recommendation]:
    """The run's quantization recommendations for the deployment."""
    rows = _rows(config, Recommendation, target=DEPLOYMENT, kind="quantization")
    return [r for r in rows if r.evidence.get("_run_id") == summary.run_id]


def _approve_only_the_quantization(config: str) -> tuple[OptimizeSummary, str]:
    """Optimize, paused for approval: approve the quantization plan alone, reject the
    rest (if any), as a reviewer would through Prefect's API."""
    run = BackgroundOptimize(
        config, agents=None, wait_for_approval=True, approval_poll_seconds=1
    ).start()
    paused = run.wait_paused()
    plans = {p.id: p for p in _rows(config, Plan) if p.status == PlanStatus.PENDING_APPROVAL}
    [rec] = [
        r
        for r in _rows(config, Recommendation, target=DEPLOYMENT, kind="quantization")
        if r.change == QUANTIZE
    ]
    [plan_id] = [
        link.plan_id
        for link in _rows(config, PlanRecommendation, recommendation_id=rec.id)
        if link.plan_id in plans
    ]
    resume_flow_run(
        paused.run_id,
        run_input={"decision": "approve", "reviewer": "alice", "plans": [plan_id]},
    )
    if len(plans) > 1:
        run.wait_paused(pause=2)
        resume_flow_run(
            paused.run_id,
            run_input={"decision": "reject", "reviewer": "alice", "comment": "one at a time"},
        )
    summary = run.join()
    return summary, plan_id


# ---------------------------------------------------------------- the test


def test_a_quantization_that_breaks_answers_is_rolled_back_and_not_proposed_again_as_is(
    prefect_harness: None, tmp_path: Path
) -> None:
    with sandbox_thread(load_fleet(FLEET), load=False) as sandbox:
        config = _config(tmp_path, sandbox)
        before = _configs(sandbox)
        _collect(config, 1)

        # 1. The performance agent proposes FP8 weights; only that plan is approved.
        first, plan_id = _approve_only_the_quantization(config)
        assert first.approved_plan_ids == [plan_id], first.approval
        [rec] = _quantizations(config, first)
        print(f"\nfirst run: {rec.kind} {rec.change} ({rec.evidence.get('bottleneck')})")

        # 2. Rolled out: the canary fails at the first step and everything is undone.
        final = rollout_flow(plan_id=plan_id, config_path=config, return_state=True, **FAST)
        after = _configs(sandbox)

        # 3. The next collection and optimize run on the same fleet.
        _collect(config, 1)
        second = optimize_flow(config_path=config, use_llm=False, wait_for_approval=False)
    assert isinstance(second, OptimizeSummary)

    # --- the first run's proposal, as the agents made it
    assert rec.agent == "performance" and rec.change == QUANTIZE
    assert rec.evidence["bottleneck"] == "decode_bound"
    assert rec.evidence.get("first_step_percent") in (None, 10, 10.0)
    assert not rec.evidence.get("similar_outcomes")

    # --- the rollout: stopped at the first step on quality, rolled back
    assert final.is_failed() and final.name == "RolledBack", final
    assert "step 10%" in final.message and "quality" in final.message, final.message
    assert after == before  # every server back on its old configuration
    assert all(c["engine_args"]["quantization"] == "none" for c in after.values())
    [rollout] = _rows(config, Rollout, plan_id=plan_id)
    assert rollout.state == RolloutState.ROLLED_BACK
    assert rollout.verdict == "fail" and "quality: fail" in rollout.reason
    [step] = _rows(config, RolloutStep, rollout_id=rollout.id)
    assert (step.percent, step.state, step.verdict) == (10, StepState.ROLLED_BACK, "fail")
    assert step.metrics["figures"]["quality_drop"] > 0.10
    assert _rows(config, Plan, id=plan_id)[0].status == PlanStatus.ROLLED_BACK

    # --- the outcome: stored and remembered
    [outcome] = _rows(config, Outcome, plan_id=plan_id)
    assert outcome.rolled_back and "quality" in outcome.notes
    assert outcome.memory_id and outcome.memory_id.startswith(f"outcome:{plan_id}:")
    memory = load_runtime(config).open_memory()
    try:
        features = DecisionFeatures(**rec.evidence["decision_features"])
        [recalled] = recall_similar(memory, features, k=1)
    finally:
        memory.close()
    assert recalled.outcome.plan_id == plan_id and recalled.outcome.rolled_back
    assert recalled.outcome.kind == "quantization"
    assert recalled.outcome.first_step_percent == 10
    assert recalled.outcome.quality_relative is not None
    assert recalled.outcome.quality_relative < -0.10

    # --- the second run: the same change, but not at the same step size. One rollback
    # in a near-identical context (similarity ≥ 0.90) moves the first step one rung down
    # the ladder 10 → 5 → 2 % and raises the risk (agents/memory/adjust.py); a second
    # such rollback would drop the proposal.
    [rec2] = _quantizations(config, second)
    print(f"second run: {rec2.change} first step {rec2.evidence.get('first_step_percent')}%")
    assert rec2.change == QUANTIZE
    assert rec2.evidence["first_step_percent"] == 5.0
    assert "rolled back at a first step of 10%" in rec2.evidence["first_step_reason"]
    assert rec2.risk == "high"
    [similar] = rec2.evidence["similar_outcomes"]
    assert similar["plan_id"] == plan_id and similar["kind"] == "quantization"
    assert similar["rolled_back"] is True and similar["first_step_percent"] == 10
    assert similar["similarity"] >= 0.90
    assert similar["quality_relative"] < -0.10
    # ... in a new plan waiting for a person (this run did not pause).
    [link] = _rows(config, PlanRecommendation, recommendation_id=rec2.id)
    assert link.plan_id in second.plan_ids and link.plan_id != plan_id
    assert _rows(config, Plan, id=link.plan_id)[0].status == PlanStatus.PENDING_APPROVAL
