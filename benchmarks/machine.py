"""What every benchmark records about the machine it ran on, and how to attribute a
cProfile entry to a package or project module (shared by the benchmark scripts)."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
_PROJECT = ("providers", "optiinfra", "tasks", "flows")


def machine() -> dict[str, Any]:
    """CPU model and counts, Python, platform and memory."""
    cpu_model = ""
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
    }


def reproduce_command(script: str, argv: Sequence[str] | None = None) -> str:
    """The shell command that runs ``script`` (a file in benchmarks/) again with the
    same arguments (``argv``, default this process's)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join([".venv/bin/python", f"benchmarks/{script}", *args])


def profile_area(filename: str) -> str:
    """A profile entry's package (h11, asyncio, ...) or the project's module."""
    if filename.startswith(("~", "<")):
        return "builtins"
    parts = Path(filename).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    for top in _PROJECT:
        if top in parts and str(ROOT) in filename:
            return "/".join(parts[parts.index(top) :])
    return Path(filename).stem if "python3" in filename else filename
