"""The scheduled collection deployment: one schedule, each provider at its own interval.

providers.yaml gives every provider an ``interval`` (default 15m). One deployment runs
the collect flow at the shortest enabled interval — the *tick* — and passes that tick
as the flow's ``schedule_interval``; each run then collects only the providers that are
due by their own interval (:func:`flows.collect.due_providers`, read from the state
store's collection runs). So a 15m provider is collected on every tick and a 1h provider
on every fourth. Why one deployment rather than one per interval: docs/scheduling.md.

Example: ``collect_deployment(config).schedules[0].schedule.interval == timedelta(minutes=15)``.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.deployments.runner import RunnerDeployment

from flows.collect import collect_flow, effective_interval
from optiinfra.config import OptiInfraConfig

DEFAULT_INTERVAL = timedelta(minutes=15)


def collection_interval(config: OptiInfraConfig) -> timedelta:
    """The tick: the smallest enabled provider interval, so none is collected less
    often than it asked (15m when no provider is enabled)."""
    intervals = [p.interval for p in config.enabled_providers()]
    return timedelta(seconds=min(intervals)) if intervals else DEFAULT_INTERVAL


def provider_schedule(config: OptiInfraConfig) -> list[tuple[str, float, float]]:
    """(provider, interval asked, interval it will get) for every enabled provider, in
    seconds; the two differ only for an interval that is not a multiple of the tick."""
    tick = collection_interval(config).total_seconds()
    return [
        (p.name, p.interval, effective_interval(p.interval, tick))
        for p in config.enabled_providers()
    ]


def describe_schedule(config: OptiInfraConfig) -> str:
    """One paragraph for the Prefect UI and ``optiinfra serve``: who is collected when."""
    tick = collection_interval(config)
    parts = []
    for name, asked, got in provider_schedule(config):
        part = f"{name} every {format_duration(got)}"
        if got != asked:
            part += f" (asked {format_duration(asked)}: rounded to the schedule)"
        parts.append(part)
    who = "; ".join(parts) if parts else "no provider is enabled"
    return (
        f"Collect the providers of providers.yaml. Runs every {format_duration(tick)}; "
        f"each run collects only the providers whose own interval is due: {who}. "
        "A run with schedule_interval=null collects every provider at once."
    )


def format_duration(seconds: float | timedelta) -> str:
    """``900`` → ``15m``, ``5400`` → ``1h30m``, ``86400`` → ``1d``, ``2.5`` → ``2.5s``."""
    total = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
    if total < 60 or total != int(total):
        return f"{total:g}s"
    rest = int(total)
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            out += f"{count}{unit}"
    return out


def collect_deployment(
    config: OptiInfraConfig, *, config_path: str | None = None
) -> RunnerDeployment:
    """The RunnerDeployment of the collect flow (schedule + parameters).

    ``config_path`` is passed to every run, which reads the file afresh: providers added
    or changed later are collected without restarting the server, at the tick fixed here
    (restart ``optiinfra serve`` after adding a provider with a shorter interval).
    """
    tick = collection_interval(config)
    return collect_flow.to_deployment(
        name="collect",
        interval=tick,
        parameters={"config_path": config_path, "schedule_interval": tick.total_seconds()},
        description=describe_schedule(config),
        tags=["optiinfra", "collection"],
    )


def collect_deployments(
    config: OptiInfraConfig, *, config_path: str | None = None
) -> list[RunnerDeployment]:
    """The collection flow's deployments, for :func:`deployments.build_deployments`."""
    return [collect_deployment(config, config_path=config_path)]
