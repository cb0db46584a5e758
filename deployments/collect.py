"""The scheduled collection deployment: the collect flow every 15 minutes.

``collect_deployment()`` builds it; ``optiinfra serve`` (the collection issue) serves it
against the Prefect API in use. The interval is the smallest of the enabled
providers' intervals, so no provider is collected less often than it asked.
"""

from __future__ import annotations

from datetime import timedelta

from flows.collect import collect_flow
from optiinfra.config import OptiInfraConfig

DEFAULT_INTERVAL = timedelta(minutes=15)


def collection_interval(config: OptiInfraConfig) -> timedelta:
    intervals = [p.interval for p in config.enabled_providers()]
    return timedelta(seconds=min(intervals)) if intervals else DEFAULT_INTERVAL


def collect_deployment(config: OptiInfraConfig, *, config_path: str | None = None):
    """The RunnerDeployment of the collect flow (schedule + parameters)."""
    return collect_flow.to_deployment(
        name="collect",
        interval=collection_interval(config),
        parameters={"config_path": config_path},
        description="Collect every enabled provider of providers.yaml into the time-series store.",
        tags=["optiinfra", "collection"],
    )
