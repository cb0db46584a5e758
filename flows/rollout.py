"""The rollout flow: an approved plan, applied in steps (10 → 50 → 100 %), each baked
and checked by canary analysis, promoted at 100 %, rolled back on a failed or undecided
canary (docs/rollout.md).

A run, in order:

1. **Recover** (:func:`recover_rollouts`): rollouts left ``running`` by a process that
   died are resumed (the same plan) or rolled back (any other), from their stored
   baseline. Nothing stays half-applied without someone watching it.
2. **Check the approval** (:func:`optiinfra.approvals.require_approval`) and its limits:
   the window (``not_before`` / ``not_after``) and the largest share
   (``max_rollout_percent``, and the tenant policy's).
3. **Snapshot** the baseline and store it before anything changes.
4. **Per step**: apply; bake (the rollout collects the target's providers itself at the
   start and the end of each bake, see below); analyse the canary against the baseline
   (:func:`agents.application.canary.analyse_canary`). ``pass`` → next step; ``fail`` →
   :func:`flows.rollback.rollback_flow`; ``wait`` → bake again, up to
   ``max_bake_rounds``, then roll back as undecided. State is stored after each step.
5. **Promote** at 100 %, store the Outcome with the realised saving, remember it.

Why the rollout collects by itself rather than waiting for the scheduled collection:
the verdict must rest on data measured *after* the step was applied, and a 15-minute
collect schedule would leave a short bake with no data at all, or with rates that mix
the old configuration with the new one. Collecting right after the apply starts every
rate window (counters, histograms, cursors) at the step; collecting at the end of the
bake measures the step alone, and runs the golden-set probes against both variants. The
scheduled collection may run meanwhile: the store keeps each window once.
"""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import get_run_context
from prefect.states import Completed, Failed, State
from pydantic import BaseModel, Field

from agents.application.canary import CanaryReport, CanaryThresholds, analyse_canary
from flows.collect import collect_flow
from flows.rollback import open_state, remember, rollback_flow, target_of
from flows.rollout_logic import (
    DEFAULT_STEPS,
    HOURS_PER_MONTH,
    RolloutRefused,
    cost_per_hour,
    expected_saving_usd_per_hour,
    max_percent,
    next_action,
    plan_steps,
    realised_deltas,
    slo_limits,
    window_problem,
)
from flows.rollout_recovery import recover_rollouts
from flows.rollout_store import (
    PlanSpec,
    audit,
    create_rollout,
    get_rollout,
    last_price_window,
    owner_id,
    plan_spec,
    price_rows,
    quality_rows,
    record_step,
    sample_rows,
    set_plan_status,
    steps_of,
    store_outcome,
    update_rollout,
)
from optiinfra.approvals import ApprovalError, require_approval, stored_approval
from optiinfra.runtime import Runtime, load_runtime
from optiinfra.store.state import (
    ApprovalDecision,
    PlanStatus,
    Rollout,
    RolloutState,
    StepState,
    Verdict,
)
from optiinfra.store.state.types import utcnow
from tasks.rollout import (
    ActuatorConfig,
    Baseline,
    Change,
    RunningState,
    actuator_config,
    apply_step_task,
    promote_task,
    read_back_task,
    snapshot_task,
)

#: Heartbeat: the rollout row is touched at least this often while baking.
HEARTBEAT_SECONDS = 10.0
_VERDICTS = {"pass": Verdict.PASS, "fail": Verdict.FAIL, "wait": Verdict.INCONCLUSIVE}


class StepReport(BaseModel):
    """One step as it went."""

    percent: int
    verdict: str
    rounds: int = Field(description="Bake rounds it took (more than 1: the canary waited).")
    achieved_percent: float
    reasons: list[str] = Field(default_factory=list)
    figures: dict[str, float] = Field(default_factory=dict)


class RolloutSummary(BaseModel):
    """What one rollout run did."""

    rollout_id: str
    plan_id: str
    target: str
    state: str
    reason: str = ""
    steps: list[StepReport] = Field(default_factory=list)
    realised: dict[str, Any] = Field(default_factory=dict)
    recovered: list[str] = Field(
        default_factory=list, description="What this run did about orphaned rollouts."
    )
    resumed: bool = False


# ---------------------------------------------------------------- steps


def _collect(runtime: Runtime, config_path: str | None, spec: PlanSpec) -> None:
    """Collect the target's provider and the quality providers that probe its deployment."""
    names = [spec.provider]
    for provider in runtime.config.enabled_providers():
        quality = provider.quality
        if quality and any(t.deployment == spec.deployment for t in quality.targets):
            names.append(provider.name)
    state = collect_flow(config_path=config_path, providers=names, return_state=True)
    if not state.is_completed():
        get_run_logger().warning("collection during the bake ended %s", state.name)


def _bake(runtime: Runtime, rollout_id: str, seconds: float) -> None:
    """Wait ``seconds``, touching the rollout row (the heartbeat) every few seconds."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, HEARTBEAT_SECONDS))
        with open_state(runtime) as state:
            update_rollout(state, rollout_id)


def _variants(running: RunningState) -> tuple[str | None, list[str], list[str]]:
    """(canary config id, canary instances, baseline instances) as read back."""
    canary = [v for v in running.variants if v.role == "canary" and v.replicas]
    base = [v for v in running.variants if v.role == "baseline"]
    config = canary[0].config_id if canary else None
    return config, [m for v in canary for m in v.members], [m for v in base for m in v.members]


def _per_replica(prices: Any, instances: list[str]) -> float | None:
    """Mean latest price per replica over ``instances`` (None without prices)."""
    rows = prices[prices["instance"].astype(str).isin(instances)] if len(prices) else prices
    total = cost_per_hour(rows)
    count = rows["instance"].nunique() if len(rows) else 0
    return total / count if total is not None and count else None


def check_canary(
    runtime: Runtime,
    spec: PlanSpec,
    row: Rollout,
    running: RunningState,
    baseline: Baseline,
    *,
    window_start: datetime,
    quality_since: datetime,
    min_quality_samples: int,
) -> CanaryReport:
    """Canary analysis of the step that runs now, on the data of its bake window."""
    canary_config, canary_nodes, baseline_nodes = _variants(running)
    baseline_config = str(row.spec.get("baseline_config_id") or "")
    if canary_config is None or canary_config == baseline_config:
        return CanaryReport(
            verdict="pass",
            reasons=[
                "no server runs a changed configuration (a replica-count change): "
                "checked that the new count took effect"
            ],
            figures={},
        )
    limits = slo_limits(runtime.config, spec.tenant, spec.deployment)
    thresholds = CanaryThresholds(
        max_quality_drop=limits.max_quality_drop,
        ttft_p95_s=limits.ttft_p95_s,
        itl_p95_s=limits.itl_p95_s,
        max_error_rate=limits.max_error_rate,
        min_quality_samples=min_quality_samples,
    )
    now = utcnow()
    store = runtime.open_timeseries()
    try:
        quality = quality_rows(store, spec.tenant, spec.deployment, quality_since)
        samples = sample_rows(store, spec.tenant, spec.provider, spec.deployment, window_start)
        prices = price_rows(store, spec.tenant, spec.provider, spec.deployment, window_start, now)
        before = last_price_window(
            store, spec.tenant, spec.provider, spec.deployment, row.started_at or now
        )
    finally:
        store.close()
    canary_price = _per_replica(prices, canary_nodes)
    base_price = _per_replica(prices, baseline_nodes) or _per_replica(
        before, list(before["instance"].astype(str)) if len(before) else []
    )
    covered = Change.model_validate(spec.change).replicas_to_spot or baseline.replicas
    realised = None
    if canary_price is not None and base_price is not None:
        realised = (canary_price * covered, base_price * covered)
    return analyse_canary(
        quality=quality,
        samples=samples,
        canary_config=canary_config,
        baseline_config=baseline_config or "(baseline)",
        canary_instances=canary_nodes,
        baseline_instances=baseline_nodes,
        thresholds=thresholds,
        expected_saving_usd_per_hour=expected_saving_usd_per_hour(spec.expected_deltas),
        realised_cost_usd_per_hour=realised,
    )


def _realised(runtime: Runtime, spec: PlanSpec, row: Rollout, since: datetime) -> dict[str, Any]:
    """Cost per hour before the rollout and at its last step, from the price samples."""
    store = runtime.open_timeseries()
    try:
        now = utcnow()
        before = last_price_window(
            store, spec.tenant, spec.provider, spec.deployment, row.started_at or now
        )
        after = last_price_window(store, spec.tenant, spec.provider, spec.deployment, now)
        after = after[after["ts"] >= since] if len(after) else after
    finally:
        store.close()
    return realised_deltas(cost_per_hour(before), cost_per_hour(after))


def _publish(summary: RolloutSummary) -> None:
    lines = [
        f"# Rollout of `{summary.target}`: {summary.state}",
        "",
        f"- plan `{summary.plan_id}`, rollout `{summary.rollout_id}`"
        + (" (resumed after its process died)" if summary.resumed else ""),
    ]
    if summary.reason:
        lines.append(f"- {summary.reason}")
    for note in summary.recovered:
        lines.append(f"- recovery: {note}")
    lines += [
        "",
        "| step | verdict | bake rounds | runs the change | why |",
        "|---|---|---|---|---|",
    ]
    for s in summary.steps:
        why = "<br>".join(s.reasons)
        lines.append(
            f"| {s.percent}% | {s.verdict} | {s.rounds} | {s.achieved_percent:.0f}% | {why} |"
        )
    cost = summary.realised.get("cost_usd_per_hour")
    if cost:
        lines += [
            "",
            f"Realised: ${cost['before']:.2f}/h before, ${cost['after']:.2f}/h after "
            f"({cost['value']:+.2f} $/h, {cost['value'] * HOURS_PER_MONTH:+,.0f} $/month).",
        ]
    create_markdown_artifact(
        key="rollout", markdown="\n".join(lines), description=f"{summary.target}: {summary.state}"
    )


def _flow_run_id() -> str:
    try:
        return str(get_run_context().flow_run.id)  # type: ignore[union-attr]
    except Exception:
        return uuid.uuid4().hex


@flow(name="rollout", log_prints=True)
def rollout_flow(
    plan_id: str,
    config_path: str | None = None,
    steps: list[int] | None = None,
    bake_seconds: float = 300.0,
    max_bake_rounds: int = 3,
    min_quality_samples: int = 30,
    quality_lookback_seconds: float = 3600.0,
    collect: bool = True,
    on_orphan: Literal["resume", "rollback"] = "resume",
    stale_after_seconds: float = 900.0,
    collections_per_bake: int = 4,
) -> RolloutSummary | State:
    """Roll approved plan ``plan_id`` out in ``steps`` (default 10, 50, 100 %).

    Each step bakes ``bake_seconds``; a canary that cannot tell yet bakes again, up to
    ``max_bake_rounds`` rounds, then the rollout rolls back as undecided. Quality is
    compared on events since ``quality_lookback_seconds`` before the rollout started
    (the baseline's earlier probes sharpen its mean). ``collect``: collect the target's
    providers at the start and end of each bake (off only when another process collects
    often enough). ``on_orphan``: what to do with this plan's rollout if an earlier run
    died during it. A rollout whose row is not touched for ``stale_after_seconds`` is
    taken for dead. ``collections_per_bake``: collections spread over each bake round
    (4 gives the canary 4 x the quality provider's ``probes_per_run`` per look: 200 at
    the default 50, where benchmarks/canary_bench.py measures >= 99 % of 20 % drops
    caught at the first look and <= 2 % false rollbacks; 2 would give 100 and 96.7 %)."""
    logger = get_run_logger()
    runtime = load_runtime(config_path)
    run_id = _flow_run_id()
    resume_id, recovered = recover_rollouts(
        runtime, plan_id, config_path=config_path, on_orphan=on_orphan,
        stale_after_seconds=stale_after_seconds, flow_run_id=run_id,
    )  # fmt: skip
    start = 0
    if resume_id is not None:
        with open_state(runtime) as state:
            approval = stored_approval(state, plan_id)
            row = get_rollout(state, resume_id)
            done = steps_of(state, resume_id)
        if approval is None or approval.decision != ApprovalDecision.APPROVED:
            raise ApprovalError(f"plan {plan_id} has no stored approval; nothing may be applied")
        spec = PlanSpec.from_json(plan_id, row.spec)
        chosen = list(row.steps_percent)
        if done:
            last = done[-1]
            start = last.position + 1 if last.state == StepState.PASSED else last.position
    else:
        with open_state(runtime) as state:
            approved = require_approval(state, plan_id)
            spec = plan_spec(state, plan_id)
        problem = window_problem(approved.limits, datetime.now(UTC))
        if problem:
            logger.warning("plan %s not rolled out: %s", plan_id, problem)
            return Completed(name="NotStarted", message=f"plan {plan_id}: {problem}")
        first = spec.evidence.get("first_step_percent")
        chosen = plan_steps(
            steps or DEFAULT_STEPS,
            first_step=int(first) if isinstance(first, int | float) else None,
            max_percent=max_percent(runtime.config, spec.tenant, approved.limits),
        )
        actuator_config(_provider(runtime, spec))  # an unusable actuator fails before any row
        with open_state(runtime) as state:
            row = create_rollout(state, spec, chosen, flow_run_id=run_id, owner=owner_id())
    target = target_of(spec)
    config = actuator_config(_provider(runtime, spec))
    change = Change.model_validate(spec.change)
    baseline = _baseline(runtime, row, config, spec)
    with open_state(runtime) as state:
        row = get_rollout(state, row.id)
    summary = RolloutSummary(
        rollout_id=row.id, plan_id=plan_id, target=str(target), state="running",
        recovered=recovered, resumed=resume_id is not None,
    )  # fmt: skip
    quality_since = (row.started_at or utcnow()) - timedelta(seconds=quality_lookback_seconds)
    last_window = row.started_at or utcnow()
    for position in range(start, len(chosen)):
        percent = chosen[position]
        with open_state(runtime) as state:
            record_step(state, row.id, position, percent, StepState.APPLYING)
        status = apply_step_task(config, spec.provider, target, change.as_dict(), percent, baseline)
        with open_state(runtime) as state:
            record_step(state, row.id, position, percent, StepState.BAKING)
        if collect:
            _collect(runtime, config_path, spec)
        window_start = last_window = utcnow()
        rounds = 0
        while True:
            rounds += 1
            for _ in range(max(1, collections_per_bake)):
                _bake(runtime, row.id, bake_seconds / max(1, collections_per_bake))
                if collect:
                    _collect(runtime, config_path, spec)
            with open_state(runtime) as state:
                record_step(state, row.id, position, percent, StepState.CHECKING)
            running = read_back_task(config, spec.provider, target, baseline)
            report = check_canary(
                runtime, spec, row, running, baseline, window_start=window_start,
                quality_since=quality_since, min_quality_samples=min_quality_samples,
            )  # fmt: skip
            action = next_action(report.verdict, rounds=rounds, max_rounds=max_bake_rounds)
            if action != "extend":
                break
            logger.info("step %d%%: canary cannot tell yet; baking again (%s)", percent,
                        "; ".join(r for r in report.reasons if "wait" in r))  # fmt: skip
        passed = action == "next"
        summary.steps.append(
            StepReport(percent=percent, verdict=report.verdict, rounds=rounds,
                       achieved_percent=100 * status.achieved_fraction,
                       reasons=report.reasons, figures=report.figures)
        )  # fmt: skip
        with open_state(runtime) as state:
            record_step(
                state, row.id, position, percent,
                StepState.PASSED if passed else StepState.FAILED,
                verdict=_VERDICTS[report.verdict], reason="; ".join(report.reasons),
                metrics={**report.to_dict(), "rounds": rounds,
                         "running": [v.model_dump(mode="json") for v in running.variants]},
            )  # fmt: skip
        if not passed:
            why = [r for r in report.reasons if ": fail" in r or ": wait" in r]
            undecided = report.verdict == "wait"
            what = f"undecided after {rounds} bake rounds" if undecided else "failed"
            reason = f"step {percent}%: canary {what}" + (f" — {why[0]}" if why else "")
            back = rollback_flow(
                rollout_id=row.id, reason=reason, config_path=config_path,
                verdict="inconclusive" if undecided else "fail", return_state=True,
            )  # fmt: skip
            summary.state, summary.reason = "rolled_back", reason
            if not back.is_completed():
                summary.state = "rollback_failed"
                reason = f"{reason}; the rollback failed: {back.message}"
            _publish(summary)
            return Failed(name="RolledBack" if back.is_completed() else "RollbackFailed",
                          message=reason)  # fmt: skip
    if chosen[-1] == 100:
        promote_task(config, spec.provider, target, change.as_dict(), baseline)
        reason = "passed every step; promoted"
    else:
        reason = f"held at {chosen[-1]}%: the approval's or the policy's limit"
    realised = _realised(runtime, spec, row, last_window)
    with open_state(runtime) as state:
        update_rollout(state, row.id, state=RolloutState.COMPLETED, verdict=Verdict.PASS,
                       reason=reason, finished_at=utcnow())  # fmt: skip
        set_plan_status(state, plan_id, PlanStatus.COMPLETED)
        audit(state, spec.tenant, "rollout.completed", plan_id, rollout_id=row.id,
              realised=realised)  # fmt: skip
        outcome_id = store_outcome(
            state, get_rollout(state, row.id), realised=realised, rolled_back=False, notes=reason
        )
    monthly = realised.get("cost_usd_per_month", {}).get("value")
    remember(
        runtime, row, spec, outcome_id, rolled_back=False, reason=reason,
        saving_usd_per_month=-monthly if isinstance(monthly, int | float) and math.isfinite(monthly)
        else None,
        quality_relative=_last_quality(summary),
    )  # fmt: skip
    summary.state, summary.reason, summary.realised = "completed", reason, realised
    _publish(summary)
    logger.info("rollout of %s completed: %s", target, reason)
    return summary


def _provider(runtime: Runtime, spec: PlanSpec) -> Any:
    try:
        return runtime.config.provider(spec.provider)
    except KeyError:
        raise RolloutRefused(
            f"plan {spec.plan_id}: provider {spec.provider!r} is not in providers.yaml"
        ) from None


def _baseline(runtime: Runtime, row: Rollout, config: ActuatorConfig, spec: PlanSpec) -> Baseline:
    """The stored baseline; taken (and stored, with its configuration id) when the
    rollout has none yet: before any step, so nothing has changed."""
    if row.baseline:
        return Baseline.model_validate(row.baseline)
    target = target_of(spec)
    baseline = snapshot_task(config, spec.provider, target)
    running = read_back_task(config, spec.provider, target, baseline)
    ids = [v.config_id for v in running.variants if v.role == "baseline"]
    with open_state(runtime) as state:
        update_rollout(
            state, row.id, baseline=baseline.model_dump(mode="json"),
            spec={**row.spec, "baseline_config_id": ids[0] if ids else ""},
        )  # fmt: skip
    return baseline


def _last_quality(summary: RolloutSummary) -> float | None:
    for step in reversed(summary.steps):
        if "quality_drop" in step.figures:
            return -step.figures["quality_drop"]
    return None
