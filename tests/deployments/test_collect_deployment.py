"""The scheduled collection deployment and the list `optiinfra serve` serves."""

from __future__ import annotations

from datetime import timedelta

import pytest

from deployments import build_deployments
from deployments.collect import (
    collect_deployment,
    collection_interval,
    describe_schedule,
    format_duration,
    provider_schedule,
)
from optiinfra.config import OptiInfraConfig


def test_runs_every_15_minutes_by_default() -> None:
    config = OptiInfraConfig(providers=[{"name": "local", "kind": "local"}])
    assert collection_interval(config) == timedelta(minutes=15)
    deployment = collect_deployment(config, config_path="/etc/optiinfra/providers.yaml")
    assert deployment.name == "collect"
    # Each run reads the file afresh and knows the tick it was scheduled at.
    assert deployment.parameters == {
        "config_path": "/etc/optiinfra/providers.yaml",
        "schedule_interval": 900.0,
    }
    (schedule,) = deployment.schedules
    assert schedule.schedule.interval == timedelta(minutes=15)


def test_the_most_frequent_enabled_provider_sets_the_tick() -> None:
    config = OptiInfraConfig(
        providers=[
            {"name": "a", "kind": "local", "interval": "15m"},
            {"name": "b", "kind": "local", "interval": "5m"},
            {"name": "c", "kind": "local", "interval": "1m", "enabled": False},
        ]
    )
    assert collection_interval(config) == timedelta(minutes=5)
    assert collect_deployment(config).parameters["schedule_interval"] == 300.0


def test_the_description_says_when_each_provider_is_collected() -> None:
    config = OptiInfraConfig(
        providers=[
            {"name": "gpus", "kind": "local", "interval": "15m"},
            {"name": "billing", "kind": "local", "interval": "1h"},
            {"name": "odd", "kind": "local", "interval": "25m"},
        ]
    )
    assert provider_schedule(config) == [
        ("gpus", 900.0, 900.0),
        ("billing", 3600.0, 3600.0),
        ("odd", 1500.0, 1800.0),
    ]
    text = describe_schedule(config)
    assert "Runs every 15m" in text
    assert "gpus every 15m; billing every 1h; odd every 30m (asked 25m" in text
    assert collect_deployment(config).description == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(900, "15m"), (3600, "1h"), (5400, "1h30m"), (86400, "1d"), (2.5, "2.5s"), (45, "45s")],
)
def test_durations_read_as_in_providers_yaml(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_serve_gets_every_flows_deployments() -> None:
    config = OptiInfraConfig(providers=[{"name": "local", "kind": "local"}])
    served = build_deployments(config, config_path="/p.yaml")
    assert [(d.flow_name, d.name) for d in served] == [
        ("collect", "collect"),
        ("optimize", "optimize"),
        ("rollout", "rollout"),
        ("rollback", "rollback"),
    ]
    assert all(d.parameters["config_path"] == "/p.yaml" for d in served)


def test_optimize_runs_at_its_own_interval() -> None:
    config = OptiInfraConfig(optimize={"interval": "2h", "window": "30m"})
    optimize = build_deployments(config)[1]
    assert optimize.schedules[0].schedule.interval == timedelta(hours=2)
    assert "every 2h over the last 30m" in optimize.description
