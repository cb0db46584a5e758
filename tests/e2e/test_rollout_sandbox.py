"""Acceptance (issue 7): rollout and rollback end to end on a live sandbox fleet.

The fleet: one stateless 8B deployment, three on-demand H100 servers, no load of its own
(the golden-set probes are its traffic; spot interruptions off). Collection is the
``sandbox`` provider plus one ``quality`` provider per server (``concurrency: 1``, so each
server answers its probes in a fixed order and the canary's verdicts are the same on
every run: a server draws right or wrong answers from its own seeded stream). Each
collection probes every server with the whole golden set (227 items), the size the
canary's power rule asks before it passes a step at the default 10 % allowance.

- approve → 10/50/100 → the servers run the new configuration, Outcome has the saving;
- a planted int4 quantization → stops at the first step, rolled back, old config again;
- a rejected or expired approval applies nothing;
- a rollout whose process is killed between steps is resumed by the next run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.flow_runs import resume_flow_run
from sqlmodel import select

from flows.collect import collect_flow
from flows.rollout import rollout_flow
from optiinfra.approvals import record_decision, record_timeout
from optiinfra.runtime import load_runtime
from optiinfra.sandbox.fleet import load_fleet
from optiinfra.store.state import (
    Outcome,
    Plan,
    PlanRecommendation,
    PlanStatus,
    Recommendation,
    RecommendationStatus,
    Rollout,
    RolloutState,
    RolloutStep,
    StateStore,
    StepState,
    Tenant,
)
from tests.e2e.probed_sandbox import probed_config, server_urls
from tests.e2e.sandbox_thread import SandboxThread, sandbox_thread
from tests.flows.idle_fleet import BackgroundOptimize

pytestmark = pytest.mark.prefect

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
DEPLOYMENT = "chat-8b"
FLEET = f"""
version: 1
sandbox: {{seed: 11, noise: 0.05, spot_interruptions_per_hour: 0}}
deployments:
  - name: {DEPLOYMENT}
    model: {MODEL}
    engine: vllm
    gpu: H100
    replicas: 3
    cloud: aws
    region: us-east-1
    market: on-demand
    stateless: true
    engine_args: {{max_num_seqs: 64, max_model_len: 16384}}
    load: {{kind: none}}
    note: "rolled out to by tests/e2e/test_rollout_sandbox.py"
"""
#: Short bakes: the collections at each end of a bake are the real wait.
FAST = {"bake_seconds": 1.0, "max_bake_rounds": 2, "collections_per_bake": 1}


# ---------------------------------------------------------------- set-up


def _fleet(tmp_path: Path) -> Any:
    path = tmp_path / "fleet.yaml"
    path.write_text(FLEET)
    return load_fleet(path)


def _servers(sandbox: SandboxThread) -> dict[str, str]:
    return server_urls(sandbox, DEPLOYMENT)


def _config(tmp_path: Path, sandbox: SandboxThread, *, extra: str = "") -> str:
    path = probed_config(
        tmp_path, sandbox, DEPLOYMENT, MODEL, more_lines=["optimize: {idle_min_observed: 5s}"]
    )
    if extra:
        Path(path).write_text(Path(path).read_text() + extra)
    return path


def _configs(sandbox: SandboxThread) -> dict[str, dict[str, Any]]:
    """Each server's configuration as the sandbox itself says (``GET /admin/config``)."""
    out = {}
    for name, url in _servers(sandbox).items():
        try:
            doc = httpx.get(f"{url}/admin/config", timeout=10).json()
        except httpx.TransportError:
            continue  # scaled away
        out[name] = {"config_id": doc["config_id"], **doc["spec"]}
    return out


def _state(config: str) -> StateStore:
    return load_runtime(config).open_state()


def _rows(config: str, table: type, **where: Any) -> list[Any]:
    state = _state(config)
    try:
        with state.session(readonly=True) as session:
            query = select(table)
            for key, value in where.items():
                query = query.where(getattr(table, key) == value)
            return list(session.exec(query).all())
    finally:
        state.close()


def _plant(
    config: str,
    change: dict[str, Any],
    kind: str = "quantization",
    evidence: dict[str, Any] | None = None,
) -> str:
    """A plan as the coordinator stores it, for a change no agent would propose."""
    state = _state(config)
    try:
        with state.session() as session:
            if session.get(Tenant, "default") is None:
                session.add(Tenant(id="default"))
                session.flush()
            rec = Recommendation(
                tenant="default", provider="sandbox", agent="performance", kind=kind,
                target=DEPLOYMENT, change=change, status=RecommendationStatus.PLANNED,
                expected_deltas={}, evidence=evidence or {},
            )  # fmt: skip
            plan = Plan(tenant="default", status=PlanStatus.PENDING_APPROVAL, summary=kind)
            session.add(rec)
            session.add(plan)
            session.flush()
            session.add(PlanRecommendation(plan_id=plan.id, recommendation_id=rec.id))
            return plan.id
    finally:
        state.close()


def _collect(config: str, runs: int) -> None:
    for _ in range(runs):
        summary = collect_flow(config_path=config)
        assert {r.status for r in summary.results} == {"ok"}, summary.results


# ---------------------------------------------------------------- the tests


def test_approved_plan_rolls_out_10_50_100_and_the_store_shows_the_saving(
    prefect_harness: None, tmp_path: Path
) -> None:
    with sandbox_thread(_fleet(tmp_path), load=False) as sandbox:
        config = _config(tmp_path, sandbox)
        before = _configs(sandbox)
        _collect(config, 2)
        run = BackgroundOptimize(
            config, agents=["cost"], wait_for_approval=True, approval_poll_seconds=1
        ).start()
        paused = run.wait_paused()
        resume_flow_run(paused.run_id, run_input={"decision": "approve", "reviewer": "alice"})
        optimized = run.join()
        [plan_id] = [
            pid for pid, p in zip(optimized.plan_ids, optimized.plans, strict=True)
            if p["target"] == DEPLOYMENT
        ]  # fmt: skip
        assert plan_id in optimized.approved_plan_ids
        [rec] = [r for r in _rows(config, Recommendation) if r.status == "planned"]
        priced = {r["instance_id"]: r for r in sandbox.call(sandbox.fleet.inventory)}
        state = rollout_flow(plan_id=plan_id, config_path=config, return_state=True, **FAST)
        after = _configs(sandbox)
        inventory = {r["instance_id"]: r for r in sandbox.call(sandbox.fleet.inventory)}

    assert state.is_completed(), state
    summary = state.result()
    assert [s.percent for s in summary.steps] == [10, 50, 100]
    assert [s.verdict for s in summary.steps] == ["pass", "pass", "pass"], summary.steps
    # The sandbox runs the plan's change (on the servers it covers: all but the
    # on-demand floor for a spot migration), at the plan's replica count.
    print(f"\nplan: {rec.kind} {rec.change}")
    assert len(after) == rec.change.get("replicas", len(before))
    covered = rec.change.get("replicas_to_spot", len(after))
    wanted = {k: rec.change[k] for k in ("gpu", "market", "engine_args") if k in rec.change}
    changed = [n for n in sorted(after) if after[n]["config_id"] != before[n]["config_id"]]
    assert len(changed) == covered
    for name in changed:
        for key, value in wanted.items():
            assert after[name][key] == value, (name, key)
    [rollout] = _rows(config, Rollout, plan_id=plan_id)
    assert rollout.state == RolloutState.COMPLETED and rollout.steps_percent == [10, 50, 100]
    assert rollout.baseline["units"] and rollout.spec["baseline_config_id"]
    steps = _rows(config, RolloutStep, rollout_id=rollout.id)
    assert [s.state for s in sorted(steps, key=lambda s: s.position)] == [StepState.PASSED] * 3
    # The store shows the realised saving: the sandbox's own prices, before and after.
    [outcome] = _rows(config, Outcome, plan_id=plan_id)
    assert not outcome.rolled_back
    cost = outcome.realised_deltas["cost_usd_per_hour"]
    paid_before = sum(r["price_usd_per_hour"] for r in priced.values())
    paid_after = sum(r["price_usd_per_hour"] for r in inventory.values() if r["state"] == "running")
    print(f"realised: {cost}")
    assert cost["before"] == pytest.approx(paid_before, rel=1e-6)
    assert cost["after"] == pytest.approx(paid_after, rel=1e-6)
    assert cost["value"] < 0
    assert _rows(config, Plan, id=plan_id)[0].status == PlanStatus.COMPLETED


def test_a_quality_regression_stops_at_the_first_step_and_rolls_back(
    prefect_harness: None, tmp_path: Path
) -> None:
    with sandbox_thread(_fleet(tmp_path), load=False) as sandbox:
        config = _config(tmp_path, sandbox)
        before = _configs(sandbox)
        _collect(config, 2)
        features = {"kind": "quantization", "provider": "sandbox", "target": DEPLOYMENT,
                    "gpu": "H100", "replicas": 3, "model": MODEL}  # fmt: skip
        plan_id = _plant(
            config,
            {"engine_args": {"quantization": "int4"}},
            evidence={"decision_features": features},
        )
        state = _state(config)
        try:
            record_decision(state, plan_id, "approve", "alice", "try int4")
        finally:
            state.close()
        final = rollout_flow(plan_id=plan_id, config_path=config, return_state=True, **FAST)
        after = _configs(sandbox)

    assert final.is_failed() and final.name == "RolledBack", final
    assert "step 10%" in final.message and "quality" in final.message, final.message
    assert after == before  # every server back on its old configuration
    [rollout] = _rows(config, Rollout, plan_id=plan_id)
    assert rollout.state == RolloutState.ROLLED_BACK
    assert rollout.verdict == "fail" and "quality: fail" in rollout.reason
    [step] = _rows(config, RolloutStep, rollout_id=rollout.id)
    assert (step.percent, step.state, step.verdict) == (10, StepState.ROLLED_BACK, "fail")
    assert step.metrics["figures"]["quality_drop"] > 0.10
    [outcome] = _rows(config, Outcome, plan_id=plan_id)
    assert outcome.rolled_back and "quality" in outcome.notes
    # ... and remembered: the next similar decision recalls that int4 was rolled back.
    from agents.memory import DecisionFeatures, recall_similar

    assert outcome.memory_id and outcome.memory_id.startswith(f"outcome:{plan_id}:")
    memory = load_runtime(config).open_memory()
    try:
        [recalled] = recall_similar(memory, DecisionFeatures(**features), k=1)
    finally:
        memory.close()
    assert recalled.outcome.plan_id == plan_id and recalled.outcome.rolled_back
    assert recalled.outcome.quality_relative is not None
    assert recalled.outcome.quality_relative < -0.10
    assert _rows(config, Plan, id=plan_id)[0].status == PlanStatus.ROLLED_BACK


def test_a_rejected_or_expired_approval_applies_nothing(
    prefect_harness: None, tmp_path: Path
) -> None:
    with sandbox_thread(_fleet(tmp_path), load=False) as sandbox:
        config = _config(tmp_path, sandbox)
        before = _configs(sandbox)
        rejected = _plant(config, {"engine_args": {"max_num_seqs": 32}}, "engine_tuning")
        expired = _plant(config, {"market": "spot"}, "spot_migration")
        state = _state(config)
        try:
            record_decision(state, rejected, "reject", "bob", "not now")
            record_timeout(state, expired, timeout_seconds=3)
        finally:
            state.close()
        finals = [
            rollout_flow(plan_id=p, config_path=config, return_state=True, **FAST)
            for p in (rejected, expired)
        ]
        after = _configs(sandbox)

    for final in finals:
        assert final.is_failed()
        assert "is not approved" in final.message and "nothing may be applied" in final.message
    assert after == before
    assert _rows(config, Rollout) == []


def test_a_rollout_killed_between_steps_is_resumed_by_the_next_run(
    prefect_harness: None, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    # A 30 % allowance: fewer probes settle each step, so the test stays short.
    policy = "policies: [{tenant: default, max_quality_drop: 0.3}]\n"
    with sandbox_thread(_fleet(tmp_path), load=False) as sandbox:
        config = _config(tmp_path, sandbox, extra=policy)
        before = _configs(sandbox)
        _collect(config, 1)
        plan_id = _plant(config, {"engine_args": {"max_num_seqs": 32}}, "engine_tuning")
        state = _state(config)
        try:
            record_decision(state, plan_id, "approve", "alice")
        finally:
            state.close()
        script = (
            "import sys\nfrom flows.rollout import rollout_flow\n"
            f"rollout_flow(plan_id={plan_id!r}, config_path={config!r}, "
            f"bake_seconds=1.0, max_bake_rounds=2, collections_per_bake=1)\n"
        )
        env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
        child = subprocess.Popen(
            [sys.executable, "-c", script], env=env, cwd=Path(__file__).resolve().parents[2],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            _wait_for_first_step(config, plan_id, child)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(30)
        half = _configs(sandbox)
        final = rollout_flow(plan_id=plan_id, config_path=config, return_state=True, **FAST)
        after = _configs(sandbox)

    # Killed half-way: the first step (one server) passed, the second may have begun.
    assert 1 <= sum(half[n]["config_id"] != before[n]["config_id"] for n in half) <= 2
    assert final.is_completed(), final
    summary = final.result()
    assert summary.resumed and summary.recovered
    assert [s.percent for s in summary.steps] == [50, 100]
    assert all(a["engine_args"]["max_num_seqs"] == 32 for a in after.values())
    [rollout] = _rows(config, Rollout, plan_id=plan_id)
    assert rollout.state == RolloutState.COMPLETED
    steps = sorted(_rows(config, RolloutStep, rollout_id=rollout.id), key=lambda s: s.position)
    assert [(s.percent, s.state) for s in steps] == [
        (10, StepState.PASSED), (50, StepState.PASSED), (100, StepState.PASSED)
    ]  # fmt: skip


def _wait_for_first_step(config: str, plan_id: str, child: subprocess.Popen[bytes]) -> None:
    """Until the child has stored its first step as passed (then it is between steps)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert child.poll() is None, "the rollout process ended before its first step passed"
        rollouts = _rows(config, Rollout, plan_id=plan_id)
        if rollouts:
            steps = _rows(config, RolloutStep, rollout_id=rollouts[0].id)
            if any(s.position == 0 and s.state == StepState.PASSED for s in steps):
                return
        time.sleep(0.2)
    raise AssertionError("the first step never passed")
