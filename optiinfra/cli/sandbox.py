"""``optiinfra sandbox up|down|status``: a simulated fleet to try OptiInfra on.

The sandbox is labelled as such in everything it prints: its servers are simulations
on this machine, not GPUs.
"""

from __future__ import annotations

import argparse
from typing import Any

from optiinfra.cli.render import table

BANNER = "SANDBOX — simulated inference servers on this machine, not a real GPU fleet"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sandbox", help="start, inspect or stop the local sandbox fleet")
    actions = p.add_subparsers(dest="sandbox_command", required=True, metavar="ACTION")

    up = actions.add_parser("up", help="start a sandbox fleet in the background")
    up.add_argument(
        "--fleet",
        default="default",
        help="'default' (with planted problems), 'healthy', or a fleet YAML file",
    )
    up.add_argument("--no-load", action="store_true", help="start the servers without load")
    up.add_argument(
        "--control-port", type=int, default=0, help="port of the control API (default: any)"
    )
    up.set_defaults(handler=cmd_up)

    down = actions.add_parser("down", help="stop the sandbox and everything it started")
    down.set_defaults(handler=cmd_down)

    status = actions.add_parser("status", help="show the running sandbox and its endpoints")
    status.set_defaults(handler=cmd_status)


def cmd_up(args: argparse.Namespace) -> int:
    from optiinfra.sandbox.fleet import load_fleet
    from optiinfra.sandbox.process import log_path, start

    load_fleet(args.fleet)  # report a bad fleet file here, before anything starts
    state = start(args.fleet, load=not args.no_load, control_port=args.control_port)
    print(BANNER)
    print(f"started pid {state['pid']} with fleet {state['fleet']!r}; log: {log_path()}")
    print(f"control API: {state['control']}/sandbox")
    print(_endpoints(state["deployments"]))
    print("stop it with: optiinfra sandbox down")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from optiinfra.sandbox.process import stop

    state = stop()
    if state is None:
        print("no sandbox is running")
        return 0
    print(f"stopped sandbox pid {state['pid']}; {len(state.get('ports', []))} ports closed")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from optiinfra.sandbox.process import status

    state = status()
    if state is None:
        print("no sandbox is running; start one with: optiinfra sandbox up")
        return 1
    print(BANNER)
    print(f"pid {state['pid']}, fleet {state['fleet']!r}, control {state['control']}/sandbox")
    print(_endpoints(state["live"]["deployments"]))
    return 0


def _endpoints(deployments: list[dict[str, Any]]) -> str:
    rows = []
    for d in deployments:
        for s in d["servers"]:
            rows.append(
                (
                    d["name"],
                    s["name"],
                    s["state"],
                    d["gpu"],
                    d["market"],
                    s["url"],
                    s["dcgm_url"] or "",
                    d.get("note", ""),
                )
            )
        if not d["servers"]:
            rows.append((d["name"], "(no replicas)", "", d["gpu"], d["market"], "", "", d["note"]))
    headers = ("deployment", "server", "state", "gpu", "market", "url", "dcgm", "note")
    return table(headers, rows)
