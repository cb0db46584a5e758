"""Deployment definitions (schedules, parameters) and the list ``optiinfra serve`` serves.

Each module here turns the configuration into the deployments of one flow. A flow of a
later issue (optimize, rollout) plugs in by adding its builder to :data:`BUILDERS`;
``optiinfra serve`` serves whatever :func:`build_deployments` returns.

Example::

    from prefect import serve
    serve(*build_deployments(config, config_path="providers.yaml"))
"""

from __future__ import annotations

from collections.abc import Callable

from prefect.deployments.runner import RunnerDeployment

from deployments.collect import collect_deployments
from deployments.optimize import optimize_deployments
from deployments.rollout import rollout_deployments
from optiinfra.config import OptiInfraConfig

#: (configuration, config_path=…) → that flow's deployments.
DeploymentBuilder = Callable[..., list[RunnerDeployment]]

#: Every flow's deployment builder, in the order they are listed when served.
BUILDERS: tuple[DeploymentBuilder, ...] = (
    collect_deployments,
    optimize_deployments,
    rollout_deployments,
)


def build_deployments(
    config: OptiInfraConfig, *, config_path: str | None = None
) -> list[RunnerDeployment]:
    """Every deployment OptiInfra serves, built from one configuration."""
    return [d for build in BUILDERS for d in build(config, config_path=config_path)]
