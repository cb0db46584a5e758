"""The scheduled optimize deployment: the agents every ``optimize.interval`` (1h).

Hourly rather than at every collection: agents read a window of data (1h by default),
so running them on every 15-minute tick would mostly re-derive the same plans (which
the state store then refreshes rather than duplicates). Run on demand with
``optiinfra optimize --once`` or from the Prefect UI.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.deployments.runner import RunnerDeployment

from deployments.collect import format_duration
from flows.optimize import optimize_flow
from optiinfra.config import OptiInfraConfig


def optimize_deployments(
    config: OptiInfraConfig, *, config_path: str | None = None
) -> list[RunnerDeployment]:
    every = timedelta(seconds=config.optimize.interval)
    return [
        optimize_flow.to_deployment(
            name="optimize",
            interval=every,
            parameters={"config_path": config_path},
            description=(
                f"Run the agents and the coordinator every {format_duration(every)} over "
                f"the last {format_duration(config.optimize.window)} of data; plans wait "
                "for approval (nothing is applied)."
            ),
            tags=["optiinfra", "optimize"],
        )
    ]
