"""The ``optiinfra`` command line.

Commands import what they need when they run, so ``optiinfra validate`` answers in a
fraction of a second without loading Prefect or the stores. Every user-caused error
(an :class:`~optiinfra.errors.OptiInfraError`) is printed as one message with a
non-zero exit code; a traceback appears only with ``--debug``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from optiinfra import __version__
from optiinfra.errors import OptiInfraError


def build_parser() -> argparse.ArgumentParser:
    from optiinfra.cli import commands

    parser = argparse.ArgumentParser(
        prog="optiinfra",
        description="OptiInfra: an autopilot for LLM inference fleets.",
    )
    parser.add_argument("--version", action="version", version=f"optiinfra {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="providers.yaml to use (default: $OPTIINFRA_CONFIG, ./providers.yaml, "
        "$OPTIINFRA_HOME/providers.yaml, else the built-in local-only default)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="write a commented example providers.yaml")
    p.add_argument("path", nargs="?", help="where to write it (default: ./providers.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(handler=commands.cmd_init)

    p = sub.add_parser("validate", help="check a providers.yaml and list every problem")
    p.add_argument("path", nargs="?", help="file to check (default: the one in use)")
    p.add_argument(
        "--no-env", action="store_true", help="do not require credential env vars to be set"
    )
    p.set_defaults(handler=commands.cmd_validate)

    p = sub.add_parser("collect", help="collect every enabled provider into the stores")
    p.add_argument(
        "--once",
        action="store_true",
        required=True,
        help="run one collection now (scheduled collection runs as a Prefect deployment)",
    )
    p.add_argument(
        "--provider", action="append", metavar="NAME", help="only this provider (repeatable)"
    )
    p.add_argument(
        "--show", type=int, default=40, metavar="N", help="print at most N stored samples"
    )
    p.set_defaults(handler=commands.cmd_collect)

    p = sub.add_parser("status", help="where the stores are, their schema versions and sizes")
    p.set_defaults(handler=commands.cmd_status)

    from optiinfra.cli import approvals, optimize, rollout, sandbox, serve

    optimize.add_parser(sub)
    approvals.add_parser(sub)
    rollout.add_parser(sub)
    sandbox.add_parser(sub)
    serve.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args) or 0)
    except OptiInfraError as exc:
        if debug:
            raise
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
