"""An inter-process lock that waits, for the embedded (chDB) store.

chDB lets only one process open a data directory at a time, and a second process fails
at once instead of waiting. Served Prefect flow runs, the CLI and the API are separate
processes, so each opens a short chDB session only while it holds this lock: an
exclusive ``fcntl.flock`` on ``<data dir>/optiinfra.lock``. Waiting is a poll with a
short sleep, bounded by a timeout; the holder writes its pid into the file so that a
waiter that gives up can say who held the store.

``flock`` locks belong to the open file, so a process must not take the same lock
twice through two descriptors: :mod:`.chdb_backend` keeps one lock per process and
counts re-entries itself.
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

LOCK_FILE_NAME = "optiinfra.lock"


class InterProcessLock:
    """Exclusive lock on ``directory/optiinfra.lock``, acquired with a bounded wait.

    Example::

        lock = InterProcessLock(Path("/data/metrics"))
        lock.acquire(timeout=120)
        try:
            ...  # open chDB, work, close it
        finally:
            lock.release()
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOCK_FILE_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the lock; :class:`StoreBusyError` after."""
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
                            f"embedded store {self.directory} is busy: held by "
                            f"{self._describe_holder()} for more than {timeout:g} s "
                            f"(lock file {self.path})"
                        ) from None
                    # Jittered, growing pause: waiters do not wake in lock-step.
                    time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
                    pause = min(pause * 1.5, 0.05) * random.uniform(0.8, 1.2)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._record_holder(fd)

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
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(
                f"cannot use embedded store directory {self.directory}: "
                f"{exc.strerror or exc} (it must be a writable directory)"
            ) from None

    @staticmethod
    def _record_holder(fd: int) -> None:
        note = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}"
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, note.encode(), 0)

    def _describe_holder(self) -> str:
        try:
            note = self.path.read_text().strip()
        except OSError:
            note = ""
        return note or "another process (pid unknown)"
