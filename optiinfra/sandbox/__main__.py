"""``python -m optiinfra.sandbox run``: the sandbox process itself.

Started in the background by ``optiinfra sandbox up`` (or in the foreground for a
demo). It serves the fleet until SIGTERM or SIGINT, writes its state file once every
port listens, and removes it on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
import time
from pathlib import Path

from optiinfra.errors import OptiInfraError


async def serve(fleet_source: str, state_file: Path | None, load: bool, control_port: int) -> None:
    from optiinfra.sandbox.fleet import Fleet, load_fleet
    from optiinfra.sandbox.process import write_state

    spec = load_fleet(fleet_source)
    fleet = Fleet(spec)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await fleet.start(control_port=control_port)
    # Thousands of long-lived server objects would otherwise be walked by every full
    # garbage collection (pauses of 0.1-0.6 s at 1,000-4,000 servers, sandbox_bench).
    gc.freeze()
    try:
        if load:
            fleet.start_loads()
        described = fleet.describe()
        ports = [fleet.control.port] if fleet.control else []
        for servers in fleet.servers.values():
            for s in servers:
                ports += [p for p in (s.port, s.dcgm_port) if p]
        state = {
            "sandbox": True,
            "pid": os.getpid(),
            "started_at": time.time(),
            "fleet": fleet_source,
            "host": spec.sandbox.host,
            "control": described["control"],
            "ports": ports,
            "load": load,
            "deployments": described["deployments"],
        }
        if state_file is not None:
            write_state(state, state_file)
        print(f"sandbox ready: control {described['control']}", flush=True)
        await stop.wait()
    finally:
        print("sandbox stopping", flush=True)
        await fleet.stop()
        if state_file is not None:
            state_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optiinfra.sandbox")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve a sandbox fleet in the foreground")
    run.add_argument("--fleet", default="default", help="default, healthy, or a fleet YAML file")
    run.add_argument("--state-file", type=Path, help="where to write the state once ready")
    run.add_argument("--no-load", action="store_true", help="do not generate load")
    run.add_argument("--control-port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.fleet, args.state_file, not args.no_load, args.control_port))
    except OptiInfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
