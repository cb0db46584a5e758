"""Prefect tasks of a rollout: snapshot, apply one step, read back, revert, promote.

Each task builds the provider's actuator, makes one call and returns the actuator's own
record (plain pydantic data the flow stores as JSON). Actuators are async; these tasks
are sync and run each call in its own event loop, which the HTTP actuators support (they
open a client per outermost call, docs/actuators.md). Every call is idempotent, so the
tasks retry: a repeated step changes nothing the second time.

Which actuator: the provider's ``actuator:`` section (``providers.yaml``), else, for a
provider of kind ``sandbox``, the sandbox actuator on the provider's own ``control_url``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from optiinfra.config.schema import ProviderConfig
from optiinfra.errors import ConfigError, ConfigIssue
from providers.actuation import (
    ActuationStatus,
    Actuator,
    ActuatorConfig,
    Baseline,
    Change,
    RunningState,
    Target,
    build_actuator,
)

T = TypeVar("T")

#: Retries of an actuator call (all of them are idempotent), and the pause between.
RETRIES = 2
RETRY_DELAY_SECONDS = 2


def actuator_config(provider: ProviderConfig) -> ActuatorConfig:
    """The actuator of ``provider``: its ``actuator:`` section, or the sandbox default.

    Raises :class:`ConfigError` naming ``providers.<name>.actuator`` when there is none."""
    if provider.actuator is not None:
        return ActuatorConfig(
            kind=provider.actuator.kind,
            options=dict(provider.actuator.options),
            credentials=dict(provider.actuator.credentials),
        )
    if provider.kind.lower() == "sandbox" and "control_url" in provider.options:
        return ActuatorConfig(
            kind="sandbox", options={"control_url": provider.options["control_url"]}
        )
    raise ConfigError(
        [
            ConfigIssue(
                file="providers.yaml",
                line=None,
                field=f"providers.{provider.name}.actuator",
                message=f"provider {provider.name!r} (kind {provider.kind}) has no actuator: "
                "add an actuator: section to roll changes out there (docs/actuators.md)",
            )
        ]
    )


def open_actuator(config: ActuatorConfig, provider: str) -> Actuator:
    """Build the actuator; option errors name ``providers.<provider>.actuator.options``."""
    return build_actuator(config, where=f"providers.{provider}.actuator")


def _call(config: ActuatorConfig, provider: str, call: Callable[[Actuator], Awaitable[T]]) -> T:
    async def run() -> T:
        async with open_actuator(config, provider) as actuator:
            return await call(actuator)

    return asyncio.run(run())


@task(name="rollout-snapshot", cache_policy=NO_CACHE, retries=RETRIES,
      retry_delay_seconds=RETRY_DELAY_SECONDS)  # fmt: skip
def snapshot_task(config: ActuatorConfig, provider: str, target: Target) -> Baseline:
    """What runs now: the baseline a rollback returns to (stored before the first step)."""
    baseline = _call(config, provider, lambda a: a.snapshot(target))
    get_run_logger().info("baseline of %s: %d replica(s)", target, baseline.replicas)
    return baseline


@task(name="rollout-apply-step", cache_policy=NO_CACHE, retries=RETRIES,
      retry_delay_seconds=RETRY_DELAY_SECONDS, task_run_name="apply-{percent}pct")  # fmt: skip
def apply_step_task(
    config: ActuatorConfig,
    provider: str,
    target: Target,
    change: dict[str, Any],
    percent: int,
    baseline: Baseline,
) -> ActuationStatus:
    """Make ``percent`` % of the deployment run the change and the rest the baseline.

    The change travels as a plain dict: Prefect walks task parameters as collections,
    and :class:`Change` (a mapping-like model with ``keys()``) would confuse it."""
    wanted = Change.model_validate(change)
    status = _call(config, provider, lambda a: a.apply(target, wanted, percent / 100, baseline))
    get_run_logger().info(
        "%s at %d%%: %.0f%% runs the change, %d unit(s) changed%s",
        target,
        percent,
        100 * status.achieved_fraction,
        status.changed,
        f" ({status.detail})" if status.detail else "",
    )
    return status


@task(name="rollout-read-back", cache_policy=NO_CACHE, retries=RETRIES,
      retry_delay_seconds=RETRY_DELAY_SECONDS)  # fmt: skip
def read_back_task(
    config: ActuatorConfig, provider: str, target: Target, baseline: Baseline | None
) -> RunningState:
    """What runs now, read from the provider (variants labelled baseline / canary)."""
    return _call(config, provider, lambda a: a.read_back(target, baseline))


@task(name="rollout-revert", cache_policy=NO_CACHE, retries=RETRIES,
      retry_delay_seconds=RETRY_DELAY_SECONDS)  # fmt: skip
def revert_task(
    config: ActuatorConfig, provider: str, target: Target, baseline: Baseline
) -> ActuationStatus:
    """Run the baseline everywhere again (harmless when it already does)."""
    status = _call(config, provider, lambda a: a.revert(target, baseline))
    get_run_logger().info("%s reverted: %d unit(s) changed", target, status.changed)
    return status


@task(name="rollout-promote", cache_policy=NO_CACHE, retries=RETRIES,
      retry_delay_seconds=RETRY_DELAY_SECONDS)  # fmt: skip
def promote_task(
    config: ActuatorConfig,
    provider: str,
    target: Target,
    change: dict[str, Any],
    baseline: Baseline,
) -> ActuationStatus:
    """Make the change the deployment's own configuration after a passed 100 % step."""
    wanted = Change.model_validate(change)
    status = _call(config, provider, lambda a: a.promote(target, wanted, baseline))
    get_run_logger().info("%s promoted%s", target, f" ({status.detail})" if status.detail else "")
    return status


__all__ = [
    "ActuationStatus",
    "ActuatorConfig",
    "Baseline",
    "Change",
    "RunningState",
    "Target",
    "actuator_config",
    "apply_step_task",
    "open_actuator",
    "promote_task",
    "read_back_task",
    "revert_task",
    "snapshot_task",
]
