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
        help="'default' (with planted problems), 'healthy', 'diurnal', or a fleet YAML file",
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

    config = actions.add_parser(
        "config",
        help="write a providers.yaml that collects the running sandbox (and its golden set)",
    )
    config.add_argument(
        "path", nargs="?", default="sandbox-providers.yaml", help="where to write it"
    )
    config.add_argument("--force", action="store_true", help="overwrite an existing file")
    config.set_defaults(handler=cmd_config)

    history = actions.add_parser(
        "history",
        help="write a fleet's past weeks of offered load into the time-series store "
        "(what forecasts need; a live sandbox starts with none)",
    )
    history.add_argument("--fleet", default="diurnal", help="bundled fleet name or YAML file")
    history.add_argument("--days", type=float, default=28.0, help="how far back (default 28)")
    history.add_argument(
        "--deployment", action="append", default=None, help="only this deployment (repeatable)"
    )
    history.set_defaults(handler=cmd_history)


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


def cmd_config(args: argparse.Namespace) -> int:
    from pathlib import Path

    from optiinfra.errors import OptiInfraError
    from optiinfra.sandbox.process import status

    state = status()
    if state is None:
        raise OptiInfraError("no sandbox is running; start one with: optiinfra sandbox up")
    path = Path(args.path).resolve()
    golden = path.with_name(path.stem + "-golden.jsonl")
    for target in (path, golden):
        if target.exists() and not args.force:
            raise OptiInfraError(f"{target} already exists; add --force to overwrite it")
    golden.write_text(_golden_set())
    path.write_text(sandbox_providers_yaml(state["control"], state["live"]["deployments"], golden))
    print(f"wrote {path} (and its golden set {golden.name})")
    print(f"collect the sandbox once with: optiinfra --config {path} collect --once")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from optiinfra.runtime import load_runtime
    from optiinfra.sandbox.fleet import load_fleet
    from optiinfra.sandbox.history import history_samples

    fleet = load_fleet(args.fleet)
    now = datetime.now(UTC)
    frame = history_samples(fleet, now, args.days, deployments=args.deployment)
    store = load_runtime(args.config).open_timeseries()
    try:
        store.ensure_schema()
        written = store.write_samples(frame)
    finally:
        store.close()
    names = sorted(set(frame["deployment"])) if len(frame) else []
    print(BANNER)
    print(
        f"wrote {written:,} samples of offered load ({args.days:g} days before "
        f"{now:%Y-%m-%d %H:00} UTC) for {', '.join(names) or 'no deployment with load'}"
    )
    return 0


def sandbox_providers_yaml(
    control_url: str, deployments: list[dict[str, Any]], golden_set: Any
) -> str:
    """A providers.yaml for a running sandbox: one ``sandbox`` provider (inventory with
    GPUs, markets and prices, every engine's and DCGM exporter's /metrics, estimated
    costs, all through the control API) and one ``quality`` provider probing every
    deployment with the sandbox's question set."""
    lines = [
        "# Written by `optiinfra sandbox config` for the SANDBOX fleet running on this",
        "# machine (simulated servers, not real GPUs). Ports change with every",
        "# `optiinfra sandbox up`: write it again after a restart.",
        "version: 1",
        "providers:",
        "  - name: sandbox",
        "    kind: sandbox",
        "    interval: 1m",
        f"    options: {{control_url: '{control_url}'}}",
    ]
    targets = [(d["name"], d["servers"][0]["url"], d["model"]) for d in deployments if d["servers"]]
    if targets:
        lines += [
            "  - name: sandbox-quality",
            "    kind: quality",
            "    labels: {sandbox: 'true'}",
            "    quality:",
            f"      golden_set: {golden_set}",
            "      probes_per_run: 40",
            "      targets:",
        ]
        for name, url, model in targets:
            lines += [
                f"        - deployment: {name}",
                f"          base_url: {url}/v1",
                f"          model: {model}",
            ]
    return "\n".join(lines) + "\n"


def _golden_set() -> str:
    """The sandbox's bundled questions as a golden set (JSON lines)."""
    import json

    from optiinfra.sandbox.quality import bundled_items

    rows = [
        {
            "id": item.id,
            "prompt": item.question,
            "reference": item.answer,
            "aliases": list(item.aliases),
            "category": item.category,
        }
        for item in bundled_items()
    ]
    return "".join(json.dumps(row) + "\n" for row in rows)


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
