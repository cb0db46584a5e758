"""The resource agent's nodes: a load forecast per deployment from its hourly history,
a replicas-by-hour schedule against today's static allocation, and the runway."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from langchain_core.runnables import RunnableConfig

from agents.common.capacity import ReplicaCapacityEstimator
from agents.common.nodes import deps_of
from agents.common.proposals import HOURS_PER_MONTH, Delta, Proposal, Risk
from agents.common.state import AgentState
from agents.context import FleetContext
from agents.resource.consolidation import detect_consolidation
from agents.resource.forecast import ForecastError, forecast_load, holdout_error
from agents.resource.schedule import (
    ScheduleError,
    capacity_from_pressure,
    replica_schedule,
    replicas_from_pressure,
    runway,
)

AGENT = "resource"
#: Hours of history before a forecast is made (two days: a daily shape can be seen).
MIN_HISTORY_HOURS = 48
#: Share of today's replica-hours a schedule must save to be worth proposing.
MIN_SAVED_FRACTION = 0.15
HORIZON_HOURS = 168
#: Weekly growth (relative) or peak share of capacity that makes the runway worth a look.
RUNWAY_GROWTH = 0.02
RUNWAY_NEAR_PEAK = 0.8


def load_context(state: AgentState) -> dict[str, Any]:
    if state.context.hourly.empty:
        return {"notes": [*state.notes, "no hourly load history: no forecast or schedule"]}
    return {}


def _series(hourly: pd.DataFrame, tenant: str, provider: str, name: str) -> pd.Series:
    rows = hourly[
        (hourly["tenant"] == tenant)
        & (hourly["provider"] == provider)
        & (hourly["deployment"] == name)
    ]
    series = pd.Series(
        rows["request_rate"].to_numpy(dtype=float),
        index=pd.to_datetime(rows["hour"], utc=True),
    ).sort_index()
    return series


def detect(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
    """Schedules (and runway notes) from the hourly history; consolidation of under-used
    deployments from the recent window (and the history's busiest hour, when there)."""
    context = state.context
    deps = deps_of(config)
    capacity = ReplicaCapacityEstimator(deps.capacity_model(), context)
    notes = list(state.notes)
    proposals = _scheduled(context, capacity, notes) if not context.hourly.empty else []
    packed, packing_notes = detect_consolidation(context, capacity)
    return {"proposals": proposals + packed, "notes": notes + packing_notes}


def _scheduled(
    context: FleetContext, capacity: ReplicaCapacityEstimator, notes: list[str]
) -> list[Proposal]:
    """Replicas-by-hour proposals for stateless deployments; runway notes into ``notes``."""
    proposals: list[Proposal] = []
    for deployment, stats in context.deployment_rows():
        name = f"{deployment['provider']}/{deployment['deployment']}"
        series = _series(
            context.hourly, deployment["tenant"], deployment["provider"], deployment["deployment"]
        )
        if series.notna().sum() < MIN_HISTORY_HOURS:
            continue
        stateless = deployment["stateless"] is True
        try:
            # Only a stateless deployment can be scheduled: it gets the profile method
            # (best on steps and short histories); others get the cheap Fourier fit,
            # enough to see growth for the runway (docs/forecasting.md compares them).
            method = "profile" if stateless else "fourier"
            forecast = forecast_load(series, horizon_hours=HORIZON_HOURS, method=method)
        except ForecastError as exc:
            notes.append(f"{name}: no forecast ({exc})")
            continue
        growing = forecast.growth_per_week > RUNWAY_GROWTH
        if not stateless and not growing:
            continue  # nothing to schedule and no growth to plan for: no capacity needed
        # The schedule takes replicas away hour by hour with nobody watching: it sizes on
        # the low end of the capacity model's interval, not its central estimate.
        interval = capacity.current_replica_rps_interval(deployment, stats)
        per_replica = float(interval.low) if interval is not None else None
        # Where the engines' own history says less (queues, full batches), that wins.
        pressure_rps = _pressure_capacity(context.hourly, deployment, series)
        if pressure_rps is not None and (per_replica is None or pressure_rps < per_replica):
            per_replica, basis = pressure_rps, "engine pressure (queue depth, batch occupancy)"
        else:
            basis = "capacity model, low end of its interval"
        price = float(deployment["price_per_replica"])
        replicas = int(deployment["replicas"])
        if not per_replica or per_replica <= 0 or math.isnan(price) or replicas < 1:
            notes.append(f"{name}: no capacity or price to size a schedule with")
            continue
        # The runway needs a long forecast: only where growth or a near peak warrants it.
        capacity_now = per_replica * replicas
        if growing or float(forecast.upper.max()) > RUNWAY_NEAR_PEAK * capacity_now:
            notes.extend(_runway_note(name, series, capacity_now, per_replica))
        if not stateless:
            continue
        try:
            schedule = replica_schedule(
                forecast,
                per_replica,
                min_replicas=min(replicas, 2),
                gpus_per_replica=int(deployment["gpu_count"] or 1),
            )
        except ScheduleError as exc:
            notes.append(f"{name}: no schedule ({exc})")
            continue
        replica_hours_now = replicas * schedule.hours
        replica_hours = float(schedule.frame["replicas"].sum())
        saved = 1 - replica_hours / replica_hours_now
        if saved < MIN_SAVED_FRACTION:
            continue
        monthly = (replica_hours_now - replica_hours) / schedule.hours * HOURS_PER_MONTH * price
        evidence: dict[str, Any] = {
            "history_hours": int(series.notna().sum()),
            "forecast_method": forecast.method,
            "replica_capacity_rps": per_replica,
            "replica_capacity_basis": basis,
            "replica_capacity_rps_from_pressure": pressure_rps,
            "replica_capacity_rps_central": (
                float(interval.value) if interval is not None else None
            ),
            "peak_forecast_upper_rps": float(forecast.upper.max()),
            "gpu_hours_schedule_per_week": schedule.gpu_hours,
            "gpu_hours_static_now_per_week": float(
                replicas * int(deployment["gpu_count"] or 1) * schedule.hours
            ),
            "schedule_short_hours": int(schedule.capped_hours),
        }
        if series.notna().sum() >= 8 * 24:
            check = holdout_error(series, holdout_days=7)
            evidence["holdout_wape"] = round(float(check.wape), 3)
            evidence["holdout_interval_coverage"] = round(float(check.coverage), 3)
        by_hour = schedule.by_hour_of_day()
        proposals.append(
            Proposal(
                agent=AGENT,
                kind="autoscaling",
                detector="forecast_schedule",
                tenant=deployment["tenant"],
                provider=deployment["provider"],
                target=deployment["deployment"],
                title=f"Scale {deployment['deployment']} by hour of day "
                f"({min(by_hour.weekday)}-{max(by_hour.weekday)} replicas, now {replicas})",
                change={"replicas_by_hour": by_hour.as_config()},
                expected_deltas={
                    "cost_usd_per_month": Delta(
                        value=-monthly,
                        unit="USD/month",
                        basis="replica-hours of the schedule vs today",
                    ),
                    "replica_hours_per_week": Delta(
                        value=replica_hours - replica_hours_now, unit="replica-hours"
                    ),
                },
                confidence=0.6,
                risk=Risk.MEDIUM,
                evidence=evidence,
                narrative=(
                    f"{deployment['deployment']}'s load has a daily shape: a forecast from "
                    f"{evidence['history_hours']} hours of history ({forecast.method}) needs "
                    f"{min(by_hour.weekday)} to {max(by_hour.weekday)} replicas by hour instead "
                    f"of {replicas} all day, {saved:.0%} fewer replica-hours (about "
                    f"${monthly:,.0f}/month at ${price:.3f}/h)."
                    + (
                        f" Held-out error (WAPE) {evidence['holdout_wape']:.0%}."
                        if "holdout_wape" in evidence
                        else ""
                    )
                ),
            )
        )
    return proposals


def _pressure_capacity(
    hourly: pd.DataFrame, deployment: dict[str, Any], rate: pd.Series
) -> float | None:
    """Requests/s per replica at the target batch occupancy from the deployment's hourly
    engine gauges (:func:`capacity_from_pressure`), when 48 hours have them."""
    if "running_mean" not in hourly.columns:
        return None
    rows = hourly[
        (hourly["tenant"] == deployment["tenant"])
        & (hourly["provider"] == deployment["provider"])
        & (hourly["deployment"] == deployment["deployment"])
    ]
    rows = rows.set_index(pd.to_datetime(rows["hour"], utc=True)).sort_index()
    rows = rows[rows["running_mean"].notna() & rows["waiting_mean"].notna()]
    if len(rows) < MIN_HISTORY_HOURS:
        return None
    args = deployment.get("engine_args") or {}
    try:
        pressure = replicas_from_pressure(rows, int(args.get("max_num_seqs") or 256))
        return capacity_from_pressure(rate.reindex(rows.index), pressure)
    except ScheduleError:
        return None


def _runway_note(
    name: str, series: pd.Series, capacity_rps: float, per_replica_rps: float
) -> list[str]:
    try:
        result = runway(series, capacity_rps, capacity_rps_per_replica=per_replica_rps)
    except (ForecastError, ScheduleError):
        return []
    if result.exceeds_at is None:
        return []
    days = f"{result.days_left:.0f} days"
    when = (
        "already exceeds"
        if result.days_left < 1
        else f"exceeds, at the current growth, around {result.date} ({days}),"
    )
    add = (
        f"; add {result.replicas_to_add} replica(s) to last the next weeks"
        if result.replicas_to_add
        else ""
    )
    return [
        f"{name}: the load's upper forecast {when} today's estimated capacity "
        f"({capacity_rps:.2f} requests/s){add}"
    ]
