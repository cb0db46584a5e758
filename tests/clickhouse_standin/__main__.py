"""Run the stand-in: ``python -m tests.clickhouse_standin --port 0 --path DIR``.

It prints one line, ``clickhouse-standin listening on 127.0.0.1:PORT``, once it answers,
and stops cleanly (closing its chDB session) on SIGTERM or SIGINT. It must run in its
own process: chDB lets a process use one data path only while a session is open.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from tests.clickhouse_standin.engine import StandinEngine
from tests.clickhouse_standin.server import READY_PREFIX, StandinServer


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--path", type=Path, required=True, help="data directory")
    parser.add_argument("--user", default="default")
    parser.add_argument(
        "--password-env",
        default=None,
        help="name of an environment variable holding the password (default: none)",
    )
    args = parser.parse_args(argv)
    password = os.environ.get(args.password_env, "") if args.password_env else ""

    args.path.mkdir(parents=True, exist_ok=True)
    engine = StandinEngine(args.path)
    server = StandinServer((args.host, args.port), engine, args.user, password)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    host, port = server.server_address[:2]
    print(f"{READY_PREFIX}{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
