"""An inter-process lock that waits: ``fcntl.flock`` on a file beside the data.

Qdrant local mode lets one client open a data directory at a time (a second one fails
at once, even in the same process). Processes on one machine (the CLI, served flow runs,
workers) therefore take this lock, open a short-lived client, and release both. The
holder writes its pid into the lock file, so a process that gives up after the timeout
can say who is holding the store. The kernel drops a ``flock`` when its holder dies,
so a crashed process never leaves the store locked.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from optiinfra.errors import StoreBusyError, StoreError


class InterProcessLock:
    """An exclusive, waiting lock on ``lock_path`` (not re-entrant; see DecisionMemory.hold)."""

    def __init__(self, lock_path: Path, *, timeout: float, guards: str) -> None:
        self.lock_path = lock_path
        self.timeout = timeout
        #: What the lock protects, for messages ("decision memory /path").
        self.guards = guards
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Wait up to ``timeout`` seconds; :class:`StoreBusyError` names the holder's pid."""
        if self._fd is not None:
            raise RuntimeError(f"{self.lock_path} is already held by this object")
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(
                f"{self.guards}: cannot create lock file {self.lock_path}: {exc.strerror or exc}"
            ) from None
        deadline = time.monotonic() + self.timeout
        pause = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_pid(fd)
                    os.close(fd)
                    who = f"process {holder}" if holder else "another process"
                    raise StoreBusyError(
                        f"{self.guards} is in use by {who} (lock {self.lock_path}); "
                        f"gave up after {self.timeout:g}s"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
