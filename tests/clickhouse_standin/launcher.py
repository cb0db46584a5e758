"""Start and stop the stand-in as a child process, for tests.

Example::

    with start_standin(tmp_path / "server") as standin:
        backend = ClickHouseBackend.from_url(standin.url)
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from tests.clickhouse_standin.server import READY_PREFIX

REPO_ROOT = Path(__file__).resolve().parents[2]
_PASSWORD_ENV = "CLICKHOUSE_STANDIN_PASSWORD"


class StandinError(RuntimeError):
    """The stand-in did not start; the message carries the end of its log."""


class StandinHandle:
    """A running stand-in: where it listens, and how to stop it."""

    def __init__(self, process: subprocess.Popen[str], host: str, port: int, log: Path) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.log = log

    @property
    def url(self) -> str:
        """``clickhouse://HOST:PORT/default``: no credentials (add them for a password)."""
        return f"clickhouse://{self.host}:{self.port}/default"

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, so the stand-in closes chDB cleanly; SIGKILL if it does not exit."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)

    def __enter__(self) -> StandinHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_standin(
    data_dir: Path,
    *,
    user: str = "default",
    password: str = "",
    startup_timeout: float = 60.0,
) -> StandinHandle:
    """Start a stand-in on a free loopback port with its data under ``data_dir``.

    Returns once ``/ping`` answers. The password travels by environment variable, never
    on the command line.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "standin.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env[_PASSWORD_ENV] = password
    command = [
        sys.executable, "-m", "tests.clickhouse_standin",
        "--port", "0", "--path", str(data_dir), "--user", user,
        "--password-env", _PASSWORD_ENV,
    ]  # fmt: skip
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    try:
        host, port = _wait_for_ready_line(process, log, startup_timeout)
        handle = StandinHandle(process, host, port, log)
        _wait_for_ping(handle, startup_timeout)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return handle


def _wait_for_ready_line(
    process: subprocess.Popen[str], log: Path, timeout: float
) -> tuple[str, int]:
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise StandinError(f"stand-in printed nothing in {timeout:.0f} s; log: {log}") from None
    if not line.startswith(READY_PREFIX):
        process.wait(timeout=timeout)
        tail = log.read_text(errors="replace")[-2000:]
        raise StandinError(f"stand-in did not start (exit {process.returncode}):\n{tail}")
    host, _, port = line[len(READY_PREFIX) :].strip().rpartition(":")
    return host, int(port)


def _wait_for_ping(handle: StandinHandle, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{handle.host}:{handle.port}/ping", timeout=2) as r:
                if r.read() == b"Ok.\n":
                    return
        except OSError:
            pass
        if time.monotonic() > deadline or handle.process.poll() is not None:
            raise StandinError(f"stand-in at port {handle.port} never answered /ping")
        time.sleep(0.05)
