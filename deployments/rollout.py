"""The rollout deployment: no schedule, started on demand with a plan id.

A rollout changes production, so nothing starts one by itself: a person (or an
automation acting for them) runs it from the Prefect UI or the API with the id of a plan
they approved (``optiinfra plans`` lists them). Its parameters default to the flow's
(steps 10, 50, 100 %, a 5-minute bake); each run also recovers rollouts that an earlier
process left half-way (docs/rollout.md).

Example::

    from prefect.deployments import run_deployment
    run_deployment("rollout/rollout", parameters={"plan_id": "3f2a…"})
"""

from __future__ import annotations

from prefect.deployments.runner import RunnerDeployment

from flows.rollout import rollout_flow
from optiinfra.config import OptiInfraConfig


def rollout_deployments(
    config: OptiInfraConfig, *, config_path: str | None = None
) -> list[RunnerDeployment]:
    """The rollout and rollback deployments (the latter for a person's manual rollback)."""
    from flows.rollback import rollback_flow

    return [
        rollout_flow.to_deployment(
            name="rollout",
            parameters={"config_path": config_path},
            description="Roll an approved plan out in steps (10, 50, 100 % by default) with "
            "a canary check after each; rolls back by itself on a failed or undecided "
            "canary. Give plan_id.",
            tags=["optiinfra", "rollout"],
        ),
        rollback_flow.to_deployment(
            name="rollback",
            parameters={"config_path": config_path},
            description="Put a rollout's deployment back on its stored baseline and record "
            "why. Give rollout_id and reason.",
            tags=["optiinfra", "rollout"],
        ),
    ]
