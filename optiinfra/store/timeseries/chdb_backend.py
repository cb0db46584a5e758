"""The embedded transport: ClickHouse in-process through chDB, shared by processes.

chDB has two process-wide rules (STACK.md): one process may open a data directory at a
time, and a process can use only one path while a session is open. So this backend
never keeps a session open between calls: every call (or every :meth:`hold` block)

1. takes this process's chDB lock (a ``threading.RLock``: threads queue here),
2. takes the directory's inter-process lock (``optiinfra.store.locking``, which
   waits up to ``lock_timeout`` and then raises :class:`StoreBusyError` naming the
   holder's pid),
3. opens a ``chdb.session.Session`` on the directory, runs, closes it, releases.

Opening costs a few tens of milliseconds, so bulk loads wrap their calls in ``hold()``.
Another process waits while one holds: keep holds short. For heavy use from many
machines, point the URL at a ClickHouse server instead (same SQL).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pandas as pd
import pyarrow as pa

from optiinfra.errors import StoreError
from optiinfra.store.locking import InterProcessLock

#: The lock file inside the data directory (see optiinfra.store.locking).
LOCK_FILE_NAME = "optiinfra.lock"

#: chDB is one embedded server per process: one lock and one open session for all.
_PROCESS_LOCK = threading.RLock()


@dataclass
class _OpenSession:
    path: Path
    session: Any
    lock: InterProcessLock
    depth: int = 0


_current: _OpenSession | None = None

_UNWRITABLE = re.compile(
    r"permission denied|read-only file system|operation not permitted|errno: (1|13|30)\b",
    re.IGNORECASE,
)


def format_setting(value: Any) -> str:
    """A query-level setting value as ClickHouse SQL (strings quoted, bools as 0/1)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def settings_clause(settings: dict[str, Any] | None) -> str:
    if not settings:
        return ""
    for name in settings:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"not a ClickHouse setting name: {name!r}")
    return " SETTINGS " + ", ".join(f"{k} = {format_setting(v)}" for k, v in settings.items())


class ChdbBackend:
    """:class:`~.backend.Backend` over a chDB data directory (``chdb:///abs/path``)."""

    def __init__(self, path: Path, *, lock_timeout: float = 120.0) -> None:
        if not path.is_absolute():
            raise StoreError(f"chDB store path must be absolute, got {str(path)!r}")
        self.path = path
        self.lock_timeout = lock_timeout
        self.display_url = f"chdb://{path}"

    @classmethod
    def from_url(cls, url: str, *, lock_timeout: float = 120.0) -> ChdbBackend:
        """``chdb:///abs/path`` → a backend on ``/abs/path`` (created on first use)."""
        parts = urlsplit(url)
        if parts.scheme != "chdb":
            raise StoreError(f"not a chdb:// URL: {url!r}")
        if parts.netloc or parts.query or parts.fragment:
            raise StoreError(
                f"malformed chDB store URL {url!r}: expected chdb:///absolute/path "
                "(three slashes, no host, no query)"
            )
        raw_path = unquote(parts.path)
        if not raw_path.startswith("/") or raw_path.strip("/") == "":
            raise StoreError(
                f"malformed chDB store URL {url!r}: the path must be absolute and not '/' "
                "(chdb:///absolute/path)"
            )
        return cls(Path(raw_path), lock_timeout=lock_timeout)

    # -- sessions -------------------------------------------------------------------

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """One chDB session and the inter-process lock for the block (re-entrant)."""
        global _current
        if not _PROCESS_LOCK.acquire(timeout=self.lock_timeout):
            raise StoreError(
                f"embedded store {self.path}: another thread of this process kept chDB "
                f"busy for more than {self.lock_timeout:g} s"
            )
        try:
            if _current is None:
                _current = self._open()
            elif _current.path != self.path:
                raise StoreError(
                    f"cannot open embedded store {self.path} while {_current.path} is open "
                    "in this process (chDB allows one data directory per process at a time)"
                )
            _current.depth += 1
            try:
                yield
            finally:
                _current.depth -= 1
                if _current.depth == 0:
                    opened, _current = _current, None
                    self._shut(opened)
        finally:
            _PROCESS_LOCK.release()

    def _open(self) -> _OpenSession:
        lock = InterProcessLock(self.path / LOCK_FILE_NAME, guards=f"embedded store {self.path}")
        lock.acquire(self.lock_timeout)
        try:
            from chdb import session as chdb_session

            chdb_session_obj = chdb_session.Session(str(self.path))
        except Exception as exc:
            lock.release()
            raise StoreError(
                f"cannot open embedded store {self.path}: {_first_line(exc)}"
            ) from None
        return _OpenSession(path=self.path, session=chdb_session_obj, lock=lock)

    @staticmethod
    def _shut(opened: _OpenSession) -> None:
        try:
            opened.session.close()
        finally:
            opened.lock.release()

    def close(self) -> None:
        """Nothing stays open between calls; present for the Backend protocol."""

    # -- statements -----------------------------------------------------------------

    def command(self, sql: str, settings: dict[str, Any] | None = None) -> None:
        self._run(sql + settings_clause(settings), "CSV")

    def query_df(self, sql: str, settings: dict[str, Any] | None = None) -> pd.DataFrame:
        result = self._run(sql + settings_clause(settings), "DataFrame")
        return result if isinstance(result, pd.DataFrame) else pd.DataFrame()

    def insert_df(
        self, table: str, frame: pd.DataFrame, settings: dict[str, Any] | None = None
    ) -> None:
        """``INSERT ... SELECT ... FROM Python(arrow_table)``: one statement, no rows in Python.

        The frame goes through Arrow (zero-copy for numeric, categorical and Arrow
        columns); chDB reads Arrow map/dictionary columns that its pandas reader refuses.
        """
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
            raise ValueError(f"not a table name: {table!r}")
        columns = ", ".join(f"`{name}`" for name in frame.columns)
        arrow_batch = pa.Table.from_pandas(frame, preserve_index=False)
        sql = (
            f"INSERT INTO {table} ({columns}){settings_clause(settings)} "
            f"SELECT {columns} FROM Python(arrow_batch)"
        )
        with self.hold():
            assert _current is not None
            self._execute(_current.session, sql, "CSV", arrow_batch)

    def _run(self, sql: str, fmt: str) -> Any:
        with self.hold():
            assert _current is not None
            return self._execute(_current.session, sql, fmt, None)

    def _execute(self, chdb_session_obj: Any, sql: str, fmt: str, arrow_batch: Any) -> Any:
        # chDB's Python() table function finds ``arrow_batch`` among the caller's locals.
        try:
            return chdb_session_obj.query(sql, fmt)
        except Exception as exc:
            message = _first_line(exc)
            if _UNWRITABLE.search(message):
                raise StoreError(f"embedded store {self.path} is not writable: {message}") from None
            raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
