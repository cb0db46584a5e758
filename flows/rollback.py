"""The rollback flow: put a rollout's deployment back on its stored baseline, check that
it took, record why, and say so (a markdown artifact and the run's final state).

It needs nothing but the rollout's row: the target, the change and the actuator's
baseline snapshot were stored before the first step, so any process can roll back a
rollout that another one started (the rollout flow on a failed canary, the next rollout
run on an orphan, a person from the Prefect UI with the rollout id).

Final state: ``Completed`` named **RolledBack** when the baseline runs again everywhere
(read back and checked), ``Failed`` named **RollbackFailed** when the revert failed or
did not read back as the baseline — then a person must look, and the artifact says what
runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State
from pydantic import BaseModel, Field

from flows.rollout_store import (
    PlanSpec,
    audit,
    get_rollout,
    record_step,
    set_memory_id,
    set_plan_status,
    steps_of,
    store_outcome,
    update_rollout,
)
from optiinfra.errors import OptiInfraError
from optiinfra.runtime import Runtime, load_runtime
from optiinfra.store.state import (
    PlanStatus,
    Rollout,
    RolloutState,
    StateStore,
    StepState,
    Verdict,
)
from optiinfra.store.state.types import utcnow
from tasks.rollout import (
    Baseline,
    RunningState,
    Target,
    actuator_config,
    read_back_task,
    revert_task,
)


class RollbackSummary(BaseModel):
    """What one rollback did."""

    rollout_id: str
    plan_id: str
    target: str
    reason: str
    verified: bool = Field(description="The baseline reads back everywhere.")
    running: list[dict[str, Any]] = Field(
        default_factory=list, description="What runs now, per variant (config id, replicas)."
    )
    outcome_id: str | None = None
    detail: str = ""


@contextmanager
def open_state(runtime: Runtime) -> Iterator[StateStore]:
    """A short-lived state store (a rollout may run for hours holding nothing)."""
    state = runtime.open_state()
    try:
        yield state
    finally:
        state.close()


def target_of(spec: PlanSpec) -> Target:
    return Target(tenant=spec.tenant, provider=spec.provider, deployment=spec.deployment)


def is_baseline(running: RunningState, baseline: Baseline) -> bool:
    """Every variant is the baseline's configuration, at the baseline's replica count."""
    return (
        running.canary_share == 0
        and all(v.role == "baseline" for v in running.variants)
        and running.replicas == baseline.replicas
    )


def variants_text(running: RunningState) -> list[dict[str, Any]]:
    return [
        {"config_id": v.config_id, "role": v.role, "replicas": v.replicas, "members": v.members}
        for v in running.variants
    ]


def remember(
    runtime: Runtime,
    rollout: Rollout,
    spec: PlanSpec,
    outcome_id: str,
    *,
    rolled_back: bool,
    reason: str,
    saving_usd_per_month: float | None = None,
    quality_relative: float | None = None,
) -> None:
    """Remember the outcome in the decision memory when the recommendation carried its
    decision features (agents' ``decision_features`` evidence); a log line otherwise."""
    logger = get_run_logger()
    features = spec.evidence.get("decision_features")
    if not isinstance(features, dict):
        logger.info("plan %s: no decision_features in its evidence; not remembered", spec.plan_id)
        return
    try:
        from agents.memory import DecisionFeatures, OutcomeRecord, remember_outcome
    except ImportError:
        logger.info("decision memory (agents.memory) is not installed; outcome not remembered")
        return
    first = spec.evidence.get("first_step_percent") or (rollout.steps_percent or [10])[0]
    record = OutcomeRecord(
        plan_id=spec.plan_id,
        recommendation_id=str(spec.evidence.get("_recommendation_id", "")),
        kind=spec.kinds[0] if spec.kinds else "unknown",
        target=spec.deployment,
        saving_usd_per_month=saving_usd_per_month,
        quality_relative=quality_relative,
        rolled_back=rolled_back,
        reason=reason,
        first_step_percent=float(first),
    )
    memory = runtime.open_memory()
    try:
        remember_outcome(memory, DecisionFeatures(**features), record)
    except (ValueError, OptiInfraError) as exc:
        logger.warning("plan %s: outcome not remembered: %s", spec.plan_id, exc)
        return
    finally:
        memory.close()
    with open_state(runtime) as state:
        set_memory_id(state, outcome_id, record.record_id)
    logger.info("plan %s: outcome remembered as %s", spec.plan_id, record.record_id)


def publish(summary: RollbackSummary, verdict: str) -> None:
    """The markdown artifact: why, and what runs now."""
    lines = [
        f"# Rollback of `{summary.target}`",
        "",
        f"- plan: `{summary.plan_id}`, rollout: `{summary.rollout_id}`",
        f"- verdict: **{verdict}**",
        f"- why: {summary.reason}",
        f"- baseline verified: **{'yes' if summary.verified else 'NO — look at it'}**",
    ]
    if summary.detail:
        lines.append(f"- detail: {summary.detail}")
    lines += ["", "| configuration | role | replicas | servers |", "|---|---|---|---|"]
    for v in summary.running:
        members = ", ".join(v["members"])
        lines.append(f"| `{v['config_id']}` | {v['role']} | {v['replicas']} | {members} |")
    create_markdown_artifact(
        key="rollback",
        markdown="\n".join(lines),
        description=f"rollback of {summary.target}: {summary.reason}"[:500],
    )


@flow(name="rollback", log_prints=True)
def rollback_flow(
    rollout_id: str,
    reason: str,
    config_path: str | None = None,
    verdict: str = "fail",
) -> State:
    """Revert rollout ``rollout_id`` to its stored baseline, verify, record ``reason``.

    ``verdict`` is what led here: ``fail`` (the canary failed), ``inconclusive`` (still
    undecided after the longest bake, or a rollout recovered from a dead process)."""
    logger = get_run_logger()
    runtime = load_runtime(config_path)
    with open_state(runtime) as state:
        row = get_rollout(state, rollout_id)
        update_rollout(state, rollout_id, state=RolloutState.ROLLING_BACK, reason=reason)
        last_step = (steps_of(state, rollout_id) or [None])[-1]
    spec = PlanSpec.from_json(row.plan_id, row.spec)
    target = target_of(spec)
    summary = RollbackSummary(
        rollout_id=rollout_id, plan_id=row.plan_id, target=str(target), reason=reason,
        verified=False,
    )  # fmt: skip
    stored_verdict = Verdict(verdict) if verdict in Verdict._value2member_map_ else Verdict.FAIL
    if not row.baseline:
        # The process died before the snapshot was stored: no step had been applied.
        summary.verified = True
        summary.detail = "no baseline stored: the rollout ended before its first step"
    else:
        baseline = Baseline.model_validate(row.baseline)
        try:
            config = actuator_config(runtime.config.provider(spec.provider))
            status = revert_task(config, spec.provider, target, baseline)
            running = read_back_task(config, spec.provider, target, baseline)
        except (OptiInfraError, KeyError) as exc:
            summary.detail = f"revert failed: {exc}"
        else:
            summary.verified = is_baseline(running, baseline)
            summary.running = variants_text(running)
            summary.detail = status.detail
    now = utcnow()
    with open_state(runtime) as state:
        if last_step is not None and last_step.state != StepState.PASSED:
            record_step(
                state, rollout_id, last_step.position, last_step.percent, StepState.ROLLED_BACK
            )
        update_rollout(
            state,
            rollout_id,
            state=RolloutState.ROLLED_BACK if summary.verified else RolloutState.FAILED,
            verdict=stored_verdict,
            reason=reason if summary.verified else f"{reason}; {summary.detail}",
            finished_at=now,
        )
        set_plan_status(
            state, row.plan_id, PlanStatus.ROLLED_BACK if summary.verified else PlanStatus.FAILED
        )
        audit(
            state, row.tenant, "rollout.rolled_back" if summary.verified else "rollout.failed",
            row.plan_id, rollout_id=rollout_id, reason=reason, verified=summary.verified,
            at=datetime.now(UTC).isoformat(),
        )  # fmt: skip
        outcome_id = store_outcome(
            state,
            get_rollout(state, rollout_id),
            realised={},
            rolled_back=True,
            notes=reason,
        )
    summary.outcome_id = outcome_id
    quality = _quality_drop(last_step.metrics if last_step is not None else {})
    remember(runtime, row, spec, outcome_id, rolled_back=True, reason=reason,
             quality_relative=quality)  # fmt: skip
    publish(summary, stored_verdict.value)
    if not summary.verified:
        logger.error("rollback of %s NOT verified: %s", target, summary.detail)
        return Failed(name="RollbackFailed", message=f"{reason}; {summary.detail}", data=summary)
    logger.info("rolled back %s: %s", target, reason)
    return Completed(name="RolledBack", message=reason, data=summary)


def _quality_drop(metrics: dict[str, Any]) -> float | None:
    """The canary's relative quality change (negative = worse) from a step's figures."""
    figures = metrics.get("figures") if isinstance(metrics, dict) else None
    drop = figures.get("quality_drop") if isinstance(figures, dict) else None
    return -float(drop) if isinstance(drop, int | float) else None
