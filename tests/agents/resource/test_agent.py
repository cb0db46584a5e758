"""The resource agent through its graph: schedules from hourly history."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from agents.common.agent import AgentDeps
from agents.registry import get_agent
from tests.agents.fleets import NOW, context, default_like
from tests.agents.resource.traffic import llm_traffic


def _hourly(name: str, series: pd.Series) -> pd.DataFrame:
    # Shift the synthetic weeks so that they end at the fleet's "now".
    series = series.copy()
    series.index = series.index + (pd.Timestamp(NOW) - series.index[-1] - pd.Timedelta("1h"))
    return pd.DataFrame({
        "tenant": "default", "provider": "sandbox", "deployment": name,
        "hour": series.index, "request_rate": series.to_numpy(), "waiting_mean": 0.0,
        "running_mean": 2.0, "instances": 3,
    })  # fmt: skip


def _chat(stateless: bool = True):
    fleets = default_like()
    fleets[0] = replace(fleets[0], stateless=stateless, replicas=12, rate=3.0)
    return fleets


def test_a_diurnal_stateless_deployment_gets_a_replica_schedule() -> None:
    traffic = llm_traffic(4, seed=1, base_rps=3.0, peak_to_trough=6.0)
    ctx = context(_chat())
    ctx.hourly = _hourly("chat-8b", traffic)
    proposals, _ = get_agent("resource").run(ctx, AgentDeps())
    [p] = [p for p in proposals if p.target == "chat-8b"]
    assert p.kind == "autoscaling"
    config = p.change["replicas_by_hour"]
    hours = config.get("every_day") or config["weekday"]
    assert len(hours) == 24 and min(hours) < max(hours) <= 12
    assert min(hours) >= 2  # the stateless floor: two replicas
    assert p.expected_deltas["cost_usd_per_month"].value < 0
    assert p.evidence["holdout_wape"] < 0.3
    assert p.evidence["gpu_hours_schedule_per_week"] < p.evidence["gpu_hours_static_now_per_week"]


def test_a_stateful_deployment_is_not_scaled_down() -> None:
    ctx = context(_chat(stateless=False))
    ctx.hourly = _hourly("chat-8b", llm_traffic(4, seed=1, base_rps=0.6))
    proposals, _ = get_agent("resource").run(ctx, AgentDeps())
    assert [p for p in proposals if p.target == "chat-8b"] == []


def test_too_little_history_proposes_nothing() -> None:
    ctx = context(_chat())
    ctx.hourly = _hourly("chat-8b", llm_traffic(1, seed=1, base_rps=0.6, gaps=False).iloc[-30:])
    proposals, _ = get_agent("resource").run(ctx, AgentDeps())
    assert proposals == []


def test_no_hourly_history_is_noted() -> None:
    _, notes = get_agent("resource").run(context(_chat()), AgentDeps())
    assert any("no hourly load history" in n for n in notes)


def _peak_replicas(proposal) -> int:  # type: ignore[no-untyped-def]
    config = proposal.change["replicas_by_hour"]
    return max(config.get("every_day") or config["weekday"])


def test_queues_in_the_engines_history_size_the_schedule() -> None:
    """The same traffic, but the engines queued requests with free batch slots (the KV
    cache was the limit): their own gauges say a replica serves less than the capacity
    model thinks, and the schedule keeps more replicas at the peak."""
    traffic = llm_traffic(4, seed=1, base_rps=3.0, peak_to_trough=6.0)
    ctx = context(_chat())
    ctx.hourly = _hourly("chat-8b", traffic)
    [calm] = [p for p in get_agent("resource").run(ctx, AgentDeps())[0] if p.kind == "autoscaling"]
    assert calm.evidence["replica_capacity_basis"].startswith("capacity model")
    assert (
        calm.evidence["replica_capacity_rps_from_pressure"] > calm.evidence["replica_capacity_rps"]
    )

    ctx = context(_chat())
    hourly = _hourly("chat-8b", traffic)
    busy = hourly["request_rate"] / hourly["request_rate"].max()
    hourly["running_mean"], hourly["waiting_mean"] = 10.0 * busy, 5.0 * busy
    ctx.hourly = hourly
    [queued] = [
        p for p in get_agent("resource").run(ctx, AgentDeps())[0] if p.kind == "autoscaling"
    ]
    assert queued.evidence["replica_capacity_basis"].startswith("engine pressure")
    assert queued.evidence["replica_capacity_rps"] < calm.evidence["replica_capacity_rps"]
    assert _peak_replicas(queued) > _peak_replicas(calm)
