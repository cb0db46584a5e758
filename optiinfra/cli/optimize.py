"""``optiinfra optimize --once``: run the agents and the coordinator now, print the plans.

Scheduled optimization runs as a Prefect deployment (``optiinfra serve``); this command
is for a person at a terminal who wants the current findings without waiting for the
next run. Nothing is applied: every plan waits for approval.
"""

from __future__ import annotations

import argparse
import os

from optiinfra.cli.render import table
from optiinfra.errors import OptiInfraError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("optimize", help="run the agents now and store ranked plans for approval")
    p.add_argument(
        "--once",
        action="store_true",
        required=True,
        help="run one optimization now (scheduled runs are a Prefect deployment)",
    )
    p.add_argument(
        "--window",
        metavar="DURATION",
        help="recent window to analyse, e.g. 1h (default: optimize.window of providers.yaml)",
    )
    p.add_argument("--no-llm", action="store_true", help="template explanations only")
    p.add_argument("--agent", action="append", metavar="NAME", help="only this agent (repeatable)")
    p.set_defaults(handler=cmd_optimize)


def cmd_optimize(args: argparse.Namespace) -> int:
    from optiinfra.runtime import load_runtime

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    runtime = load_runtime(args.config)
    if args.window:
        from optiinfra.config.schema import parse_duration

        try:
            parse_duration(args.window)
        except ValueError as exc:
            raise OptiInfraError(f"--window: {exc}") from None
    if args.agent:
        from agents.registry import agent_names

        unknown = sorted(set(args.agent) - set(agent_names()))
        if unknown:
            raise OptiInfraError(
                f"--agent: unknown agent(s) {', '.join(unknown)}; agents: "
                f"{', '.join(agent_names())}"
            )
    from flows.optimize import optimize_flow

    state = optimize_flow(
        config_path=str(runtime.config_path) if runtime.config_path else None,
        window=args.window,
        agents=args.agent,
        use_llm=not args.no_llm,
        return_state=True,
    )
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, BaseException):
        if isinstance(summary, OptiInfraError):
            raise summary
        raise OptiInfraError(f"optimize flow failed: {state.message or summary}")
    print(f"optimize run {summary.run_id}: {len(summary.plans)} plan(s) waiting for approval")
    if summary.plans:
        print(
            table(
                ["#", "target", "plan", "saving/month", "risk", "confidence", "plan id"],
                [
                    (
                        p["rank"],
                        p["target"],
                        p["title"],
                        f"${p['monthly_saving_usd']:,.0f}",
                        p["risk"],
                        f"{p['confidence']:.0%}",
                        plan_id,
                    )
                    for p, plan_id in zip(summary.plans, summary.plan_ids, strict=True)
                ],
            )
        )
    if summary.discarded:
        print()
        print("not planned:")
        for d in summary.discarded:
            print(f"  {d['agent']}/{d['kind']} on {d['target']}: {d['status']} — {d['reason']}")
    for note in summary.notes:
        print(f"note: {note}")
    print()
    print("the full report is the run's 'optimize-report' artifact in the Prefect UI")
    return 0
