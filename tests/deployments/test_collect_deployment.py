"""The scheduled collection deployment."""

from __future__ import annotations

from datetime import timedelta

from deployments.collect import collect_deployment, collection_interval
from optiinfra.config import OptiInfraConfig


def test_runs_every_15_minutes_by_default() -> None:
    config = OptiInfraConfig(providers=[{"name": "local", "kind": "local"}])
    assert collection_interval(config) == timedelta(minutes=15)
    deployment = collect_deployment(config, config_path="/etc/optiinfra/providers.yaml")
    assert deployment.name == "collect"
    assert deployment.parameters == {"config_path": "/etc/optiinfra/providers.yaml"}
    (schedule,) = deployment.schedules
    assert schedule.schedule.interval == timedelta(minutes=15)


def test_the_most_frequent_enabled_provider_sets_the_interval() -> None:
    config = OptiInfraConfig(
        providers=[
            {"name": "a", "kind": "local", "interval": "15m"},
            {"name": "b", "kind": "local", "interval": "5m"},
            {"name": "c", "kind": "local", "interval": "1m", "enabled": False},
        ]
    )
    assert collection_interval(config) == timedelta(minutes=5)
