"""``optiinfra rollout PLAN_ID``: roll an approved plan out now, from a terminal.

A served optimize deployment starts rollouts of the plans a person approves; this is for
a plan approved with ``optiinfra approve`` while no deployment is served, or to resume a
rollout by hand. The plan must have a stored approval: nothing else is ever applied.
"""

from __future__ import annotations

import argparse
import os

from optiinfra.errors import OptiInfraError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("rollout", help="roll an approved plan out in steps, with canary checks")
    p.add_argument("plan_id", metavar="PLAN_ID", help="the approved plan")
    p.add_argument(
        "--steps",
        metavar="PERCENTS",
        help="comma-separated step percentages (default 10,50,100, or the plan's first step)",
    )
    p.add_argument(
        "--bake", metavar="DURATION", default="5m", help="bake time per step (default 5m)"
    )
    p.set_defaults(handler=cmd_rollout)


def _steps(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise OptiInfraError(f"--steps: {text!r} is not a list of whole percentages") from None
    if not steps or any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
        raise OptiInfraError(f"--steps: {text!r} must rise from above 0 to at most 100")
    return steps


def cmd_rollout(args: argparse.Namespace) -> int:
    from optiinfra.config.schema import parse_duration
    from optiinfra.runtime import load_runtime

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    steps = _steps(args.steps)
    try:
        bake = parse_duration(args.bake)
    except ValueError as exc:
        raise OptiInfraError(f"--bake: {exc}") from None
    runtime = load_runtime(args.config)
    from optiinfra.approvals import find_plan, require_approval

    store = runtime.open_state()
    try:  # refuse here, before a flow run starts, what the flow would refuse
        plan_id = find_plan(store, args.plan_id).id
        require_approval(store, plan_id)
    finally:
        store.close()
    from flows.rollout import RolloutSummary, rollout_flow

    state = rollout_flow(
        plan_id=plan_id,
        config_path=str(runtime.config_path) if runtime.config_path else None,
        steps=steps,
        bake_seconds=bake,
        return_state=True,
    )
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        if isinstance(result, OptiInfraError):
            raise result
        raise OptiInfraError(f"rollout of plan {args.plan_id} failed: {state.message or result}")
    if isinstance(result, RolloutSummary):
        for step in result.steps:
            print(f"step {step.percent}%: canary {step.verdict} after {step.rounds} bake(s)")
        print(f"rollout {result.rollout_id} of plan {result.plan_id}: {result.state}")
        if result.reason:
            print(result.reason)
        return 0 if state.is_completed() else 1
    print(f"rollout of plan {args.plan_id}: {state.name}: {state.message or ''}".rstrip(": "))
    return 0 if state.is_completed() else 1
