"""The optimize flow: read the stores, run the agents in parallel, coordinate, store
the plans, publish a markdown artifact, then (when approval is on) pause for a person's
answer on the plans (:mod:`flows.approval`).

Plans are stored ``pending_approval``; an answer moves them to ``approved`` or
``rejected`` (no answer before ``optimize.approval_timeout`` counts as rejected). Nothing
is applied here: a rollout takes :func:`optiinfra.approvals.approved_plans`.

The agents run as Prefect tasks on a thread pool: the fleet context (pandas frames) is
shared in memory rather than serialised to other processes, and the agents' work is
numpy/pandas and the capacity model, which release the GIL for much of it.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from concurrent.futures import Executor, ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from agents.common.agent import AgentDeps
from agents.common.proposals import Proposal
from agents.context import ContextWindow, FleetContext, load_context
from agents.coordinator import CoordinatorResult, coordinate, plan_summary
from agents.cost.thresholds import CostThresholds
from agents.memory import MemoryRecall, similar_outcome_lines
from agents.plans import save_result
from agents.registry import all_agents, get_agent
from agents.report import render_report
from flows.approval import ApprovalOutcome, await_approval, should_wait
from optiinfra.config.schema import parse_duration
from optiinfra.errors import OptiInfraError
from optiinfra.runtime import Runtime, load_runtime


class AgentRun(BaseModel):
    agent: str
    proposals: list[Proposal]
    notes: list[str] = Field(default_factory=list)
    seconds: float


class OptimizeSummary(BaseModel):
    """What one optimize run found and stored."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    plans: list[dict[str, Any]]
    plan_ids: list[str]
    discarded: list[dict[str, Any]]
    notes: list[str]
    timings: dict[str, float]
    rollouts: dict[str, str] = Field(
        default_factory=dict, description="Approved plan id -> the rollout flow run started."
    )
    approval: ApprovalOutcome | None = Field(
        default=None, description="The approval step's result; None when the run did not wait."
    )

    @property
    def approved_plan_ids(self) -> list[str]:
        """Plans of this run a person approved (empty when the run did not wait)."""
        return list(self.approval.approved) if self.approval else []


@task(name="load-context", cache_policy=NO_CACHE)
def load_context_task(runtime: Runtime, recent_seconds: float) -> FleetContext:
    store = runtime.open_timeseries()
    try:
        window = ContextWindow(recent=timedelta(seconds=recent_seconds))
        return load_context(store, runtime.config, window=window)
    finally:
        store.close()


def run_agent(name: str, context: FleetContext, deps: AgentDeps) -> AgentRun:
    """One agent on the context (in this process, or in a worker process of the pool)."""
    started = time.perf_counter()
    proposals, notes = get_agent(name).run(context, deps)
    return AgentRun(
        agent=name, proposals=proposals, notes=notes, seconds=time.perf_counter() - started
    )


@task(name="run-agent", cache_policy=NO_CACHE, task_run_name="agent-{name}")
def run_agent_task(
    name: str, context: FleetContext, deps: AgentDeps, pool: Executor | None = None
) -> AgentRun:
    """The agent's work runs in ``pool`` when given: agents are CPU-bound Python (the
    capacity model, forecasts), so threads of one process would take turns on one core."""
    if pool is None:
        return run_agent(name, context, deps)
    return pool.submit(run_agent, name, context, deps).result()


def agent_pool(workers: int) -> Executor | None:
    """A process pool for the agents, or None to run them in this process's threads.

    Worker processes start from a fork server that has imported the agents once, so a
    run pays that import once, not per agent. Explainers hold live HTTP clients that
    cannot cross processes: with an LLM configured the agents run in threads.
    """
    if workers < 2 or (os.cpu_count() or 1) < 2:
        return None
    context = multiprocessing.get_context(os.environ.get("OPTIINFRA_AGENT_START", "fork"))
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def build_deps(runtime: Runtime, *, use_llm: bool) -> AgentDeps:
    """The run's explainer and thresholds, from ``providers.yaml``."""
    settings = runtime.config.optimize
    thresholds = CostThresholds(
        idle_min_span_seconds=settings.idle_min_observed,
        min_saving_usd_per_month=settings.min_saving_usd_per_month,
    )
    explainer = None
    if use_llm and runtime.config.llm.provider != "none":
        from optiinfra.llm import build_explainer

        explainer = build_explainer(
            runtime.config.llm, cache_dir=runtime.settings.home / "llm-cache"
        )
    extra: dict[str, Any] = {"cost_thresholds": thresholds}
    return AgentDeps(explainer=explainer, recall=memory_recall(runtime, extra), extra=extra)


def memory_recall(runtime: Runtime, extra: dict[str, Any]) -> MemoryRecall | None:
    """Recall backed by the runtime's decision memory (a picklable callable: agents may
    run in worker processes, each opening the memory briefly). Memory is advisory: when
    it cannot be opened the run goes on without it, saying why in ``extra``."""
    try:
        return MemoryRecall.for_runtime(runtime)
    except OptiInfraError as exc:
        extra["memory_unavailable"] = f"decision memory not used: {exc.message}"
        return None


@flow(name="optimize", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=4))
def optimize_flow(
    config_path: str | None = None,
    window: str | None = None,
    agents: list[str] | None = None,
    use_llm: bool = True,
    wait_for_approval: bool | None = None,
    approval_timeout: str | None = None,
    approval_poll_seconds: int = 10,
    start_rollouts: bool | None = None,
) -> OptimizeSummary:
    """Analyse the fleet over the last ``window`` (default: ``optimize.window`` of
    providers.yaml, 1h), store ranked plans, and wait for a person's answer on them.

    ``wait_for_approval`` overrides ``optimize.approval`` (None: the configuration;
    ``auto`` waits only in runs of a deployment). ``approval_timeout`` (e.g. ``30m``)
    overrides ``optimize.approval_timeout``; ``approval_poll_seconds`` is how soon an
    answer is seen. ``start_rollouts``: start a run of the ``rollout`` deployment for
    each approved plan (None: only when this run is itself a deployment's, i.e. served
    by ``optiinfra serve``, where the rollout deployment is served beside it)."""
    logger = get_run_logger()
    started = datetime.now(UTC)
    runtime = load_runtime(config_path)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    seconds = parse_duration(window) if window else runtime.config.optimize.window
    context = load_context_task(runtime, seconds)
    timings["load context"] = time.perf_counter() - t0
    deps = build_deps(runtime, use_llm=use_llm)
    chosen = all_agents(agents)
    pool = agent_pool(len(chosen)) if deps.explainer is None else None
    try:
        futures = [run_agent_task.submit(a.name, context, deps, pool) for a in chosen]
        runs: list[AgentRun] = [f.result() for f in futures]
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    proposals = [p for r in runs for p in r.proposals]
    notes = list(context.notes) + [f"[{r.agent}] {n}" for r in runs for n in r.notes]
    if "memory_unavailable" in deps.extra:
        notes.append(deps.extra["memory_unavailable"])
    for r in runs:
        timings[f"agent {r.agent}"] = r.seconds
    t0 = time.perf_counter()
    result: CoordinatorResult = coordinate(proposals, chosen, context, deps)
    timings["coordinator"] = time.perf_counter() - t0
    run_id = _run_id()
    waiting = should_wait(runtime, wait_for_approval)
    t0 = time.perf_counter()
    state = runtime.open_state()
    try:
        state.sync_config(runtime.config)
        stored = save_result(state, result, run_id=run_id, flow_run_id=run_id if waiting else None)
    finally:
        state.close()
    timings["store plans"] = time.perf_counter() - t0
    llm = runtime.config.llm.provider if deps.explainer is not None else "none (template text)"
    report = render_report(
        result,
        run_id=run_id,
        timings=timings,
        notes=notes,
        plan_ids={s.rank: s.plan_id for s in stored},
        llm=llm,
    )
    create_markdown_artifact(
        key="optimize-report",
        markdown=report,
        description=f"{len(result.plans)} plan(s) from optimize run",
    )
    for plan in result.plans:
        logger.info(
            "plan %d: %s (%s/month)", plan.rank, plan.title, f"${plan.monthly_saving_usd:,.0f}"
        )
    approval: ApprovalOutcome | None = None
    if waiting and stored:
        timeout = (
            parse_duration(approval_timeout)
            if approval_timeout
            else runtime.config.optimize.approval_timeout
        )
        t0 = time.perf_counter()
        approval = await_approval(
            runtime,
            result.plans,
            {s.rank: s.plan_id for s in stored},
            flow_run_id=run_id,
            timeout_seconds=timeout,
            poll_seconds=approval_poll_seconds,
            similar_outcomes=similar_outcome_lines(
                result.plans, {s.rank: s.plan_id for s in stored}
            ),
        )
        timings["approval wait"] = time.perf_counter() - t0
        logger.info(
            "approval: %d approved, %d rejected, %d expired, %d pending",
            len(approval.approved),
            len(approval.rejected),
            len(approval.expired),
            len(approval.pending),
        )
    rollouts: dict[str, str] = {}
    if approval is not None and approval.approved and _starts_rollouts(start_rollouts):
        rollouts = _start_rollouts(approval.approved, config_path, notes)
    return OptimizeSummary(
        run_id=run_id,
        started_at=started,
        finished_at=datetime.now(UTC),
        plans=[plan_summary(p) for p in result.plans],
        plan_ids=[s.plan_id for s in stored],
        discarded=[
            {
                "agent": d.proposal.agent,
                "target": d.proposal.target,
                "kind": d.proposal.kind,
                "status": d.status,
                "reason": d.reason,
            }
            for d in result.discarded()
        ],
        notes=notes,
        timings={k: round(v, 3) for k, v in timings.items()},
        approval=approval,
        rollouts=rollouts,
    )


def _starts_rollouts(start_rollouts: bool | None) -> bool:
    if start_rollouts is not None:
        return start_rollouts
    try:
        flow_run = get_run_context().flow_run  # type: ignore[union-attr]
    except Exception:
        return False
    return flow_run is not None and flow_run.deployment_id is not None


def _start_rollouts(
    plan_ids: list[str], config_path: str | None, notes: list[str]
) -> dict[str, str]:
    """A run of the ``rollout/rollout`` deployment per approved plan, not waited for;
    plan id -> flow run id. A plan whose run cannot be started is noted: it stays
    approved and ``optiinfra rollout PLAN_ID`` (or the UI) starts it later."""
    from prefect.deployments import run_deployment

    started: dict[str, str] = {}
    for plan_id in plan_ids:
        try:
            run = run_deployment(
                name="rollout/rollout",
                parameters={"plan_id": plan_id, "config_path": config_path},
                timeout=0,
                as_subflow=False,
            )
        except Exception as exc:  # the deployment is not served, or the API is down
            notes.append(
                f"rollout of approved plan {plan_id} not started ({exc}); start it with "
                f"`optiinfra rollout {plan_id}`"
            )
            continue
        started[plan_id] = str(run.id)
        get_run_logger().info("rollout of plan %s started: flow run %s", plan_id, run.id)
    return started


def _run_id() -> str:
    try:
        return str(get_run_context().flow_run.id)  # type: ignore[union-attr]
    except Exception:
        return uuid.uuid4().hex
