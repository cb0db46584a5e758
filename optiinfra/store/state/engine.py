"""From a state-store URL to a SQLAlchemy engine that behaves well with many processes.

SQLite (the default) is shared by the CLI, served flow runs and workers on one machine,
so every connection gets: WAL journal (readers never block the writer), a busy timeout
(a writer waits for another instead of failing at once), foreign keys on, and explicit
transactions started by us: ``BEGIN IMMEDIATE`` for sessions that write (they take the
write lock up front, so two read-then-write transactions can never deadlock into
``database is locked``), a plain ``BEGIN`` for read-only ones.

PostgreSQL goes through psycopg 3; ``postgresql://`` and ``postgres://`` mean
``postgresql+psycopg://``.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from optiinfra.errors import StoreError

#: Execution option that picks how a SQLite transaction begins ("IMMEDIATE" or "DEFERRED").
SQLITE_BEGIN_OPTION = "optiinfra_sqlite_begin"


def display_url(url: str | URL) -> str:
    """The URL with any password masked, fit for logs, errors and ``optiinfra status``."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except Exception:
        return _mask_unparsed(str(url))
    return parsed.render_as_string(hide_password=True)


def _mask_unparsed(url: str) -> str:
    """Best effort for a URL SQLAlchemy cannot parse: drop ``user:password@``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        user_password, _, host = authority.rpartition("@")
        user = user_password.split(":", 1)[0]
        authority = f"{user}:***@{host}" if ":" in user_password else f"{user}@{host}"
    return f"{scheme}{sep}{authority}{slash}{tail}"


def parse_state_url(url: str) -> URL:
    """Check and normalise a state-store URL; :class:`StoreError` says what is wrong."""
    shown = display_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(
            f"invalid state store URL {shown}: expected sqlite:////abs/path/state.db or "
            f"postgresql+psycopg://user@host:5432/db ({exc})"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise StoreError(
                f"state store URL {shown}: driver {driver!r} is not supported; "
                "use postgresql+psycopg:// (psycopg 3)"
            )
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise StoreError(f"state store URL {shown}: use sqlite:///path, not {backend}+{driver}")
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise StoreError(
                f"state store URL {shown}: give a database file (sqlite:////abs/path/state.db); "
                "an in-memory database cannot be shared between processes"
            )
        return parsed.set(drivername="sqlite+pysqlite", database=str(Path(database).resolve()))
    raise StoreError(
        f"state store URL {shown}: unsupported scheme {parsed.drivername!r}; "
        "use sqlite:///path or postgresql+psycopg://user@host/db"
    )


def create_state_engine(url: URL, *, busy_timeout: float) -> Engine:
    """An engine for a URL from :func:`parse_state_url`."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, busy_timeout=busy_timeout)
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = 10
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def _enable_wal(cursor: Any, busy_timeout: float) -> None:
    """Switch the file to WAL, retrying while another process holds it.

    Changing the journal mode needs an exclusive lock, and SQLite can answer "database
    is locked" at once instead of calling the busy handler (two processes opening a new
    file together, say), so the wait is done here, bounded by the busy timeout.
    """
    deadline = time.monotonic() + busy_timeout
    pause = 0.01
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


def _sqlite_engine(url: URL, *, busy_timeout: float) -> Engine:
    path = Path(url.database or "")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"state store {display_url(url)}: cannot create directory {path.parent}: "
            f"{exc.strerror or exc}"
        ) from None
    engine = create_engine(
        url,
        connect_args={"timeout": busy_timeout, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: we issue BEGIN ourselves (see _on_begin), which
        # is the only way to get BEGIN IMMEDIATE and transactional DDL from pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            _enable_wal(cursor, busy_timeout)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
