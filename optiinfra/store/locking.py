"""The inter-process lock the embedded stores share: ``fcntl.flock`` that waits.

chDB and Qdrant local mode each let one process (Qdrant: one client) open a data
directory at a time, and a second one fails at once instead of waiting. Served Prefect
flow runs, the CLI and workers are separate processes, so each opens a short-lived
session only while it holds this lock. Waiting is a poll with a jittered, growing
pause, bounded by a timeout; the holder writes who it is into the lock file, so a
waiter that gives up can name it. The kernel drops a ``flock`` when its holder dies:
a crashed process never leaves a store locked.

``flock`` belongs to the open file, so two lock objects on one path conflict even in
one process; the stores keep one lock per store object and count re-entries
themselves (``hold()``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import time
from pathlib import Path

from optiinfra.errors import StoreBusyError, StoreError


class InterProcessLock:
    """Exclusive lock on ``lock_path``, acquired with a bounded wait.

    ``guards`` names what the lock protects, for messages (``"embedded store /data"``).

    Example::

        lock = InterProcessLock(Path("/data/metrics/optiinfra.lock"), guards="store /data")
        lock.acquire(timeout=120)
        try:
            ...  # open the embedded engine, work, close it
        finally:
            lock.release()
    """

    def __init__(self, lock_path: Path, *, guards: str) -> None:
        self.path = lock_path
        self.guards = guards
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds; :class:`StoreBusyError` naming the holder after."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this object")
        fd = self._open()
        deadline = time.monotonic() + timeout
        pause = 0.002
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StoreBusyError(
                            f"{self.guards} is busy: held by {self._holder(fd)} for more "
                            f"than {timeout:g} s (lock file {self.path})"
                        ) from None
                    time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
                    pause = min(pause * 1.5, 0.05) * random.uniform(0.8, 1.2)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        note = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}"
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, note.encode(), 0)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _open(self) -> int:
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(
                f"{self.guards}: cannot use directory {directory}: {exc.strerror or exc} "
                "(it must be a writable directory)"
            ) from None

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            note = os.pread(fd, 200, 0).decode(errors="replace").strip()
        except OSError:
            note = ""
        return note or "another process (pid unknown)"
