"""Starting, finding and stopping the sandbox as a background process.

``optiinfra sandbox up`` starts ``python -m optiinfra.sandbox run`` in its own session
(so it outlives the terminal), waits until the child has written its state file, and
prints the endpoints. The state file (``$OPTIINFRA_HOME/sandbox/state.json``) is the one
record of what is running: ``status`` reads it and asks the control API, ``down`` sends
SIGTERM to the process group it names, waits until every port it listed refuses
connections, and removes it. The child removes the file itself on a clean exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from optiinfra.errors import OptiInfraError
from optiinfra.settings import get_settings

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0


class SandboxError(OptiInfraError):
    """The sandbox could not be started, found or stopped."""


def sandbox_dir() -> Path:
    return get_settings().home / "sandbox"


def state_path() -> Path:
    return sandbox_dir() / "state.json"


def log_path() -> Path:
    return sandbox_dir() / "sandbox.log"


def read_state() -> dict[str, Any] | None:
    """The running sandbox's state, or None when none runs (a stale file is removed)."""
    path = state_path()
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SandboxError(f"{path}: unreadable sandbox state ({exc}); delete it") from None
    if not _alive(int(state.get("pid", 0))):
        path.unlink(missing_ok=True)
        return None
    return state


def write_state(state: dict[str, Any], path: Path | None = None) -> None:
    """Write the state file atomically (default: the one ``read_state`` looks at)."""
    path = path or state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def start(fleet: str, *, load: bool = True, control_port: int = 0) -> dict[str, Any]:
    """Start the sandbox in the background and return its state once it serves."""
    running = read_state()
    if running is not None:
        raise SandboxError(
            f"a sandbox is already running (pid {running['pid']}, control "
            f"{running.get('control')}); stop it first with: optiinfra sandbox down"
        )
    sandbox_dir().mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "optiinfra.sandbox",
        "run",
        "--fleet",
        str(fleet),
        "--state-file",
        str(state_path()),
        "--control-port",
        str(control_port),
    ]
    if not load:
        command.append("--no-load")
    with open(log_path(), "ab") as log:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        code = child.poll()
        if code is not None:
            raise SandboxError(
                f"the sandbox exited during start-up (exit code {code}):\n{_log_tail()}"
            )
        state = _state_of(child.pid)
        if state is not None:
            return state
        time.sleep(0.1)
    _terminate_group(child.pid)
    raise SandboxError(
        f"the sandbox did not become ready within {START_TIMEOUT_SECONDS:.0f} s:\n{_log_tail()}"
    )


def stop() -> dict[str, Any] | None:
    """Stop the running sandbox; returns the state it had, None when none ran."""
    state = read_state()
    if state is None:
        return None
    pid = int(state["pid"])
    _terminate_group(pid)
    ports = [int(p) for p in state.get("ports", [])]
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while any(_port_open(state.get("host", "127.0.0.1"), p) for p in ports):
        if time.monotonic() > deadline:
            raise SandboxError(f"sandbox ports still open after stopping pid {pid}: {ports}")
        time.sleep(0.1)
    state_path().unlink(missing_ok=True)
    return state


def status() -> dict[str, Any] | None:
    """The running sandbox's live description (from its control API), or None."""
    state = read_state()
    if state is None:
        return None
    try:
        live = httpx.get(f"{state['control']}/sandbox", timeout=5.0).json()
    except (httpx.HTTPError, ValueError) as exc:
        raise SandboxError(
            f"sandbox pid {state['pid']} runs but its control API {state['control']} does not "
            f"answer ({exc}); see {log_path()}"
        ) from None
    return {**state, "live": live}


def _state_of(pid: int) -> dict[str, Any] | None:
    try:
        state = json.loads(state_path().read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state if int(state.get("pid", 0)) == pid else None


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _terminate_group(pid: int) -> None:
    """SIGTERM the sandbox's process group, then SIGKILL what is left after a grace."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    # reap it if it is our child (the CLI that started it may also stop it)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _log_tail(lines: int = 30) -> str:
    try:
        text = log_path().read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
