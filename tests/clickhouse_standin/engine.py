"""What the stand-in does with one HTTP request once the wire details are peeled off.

A ClickHouse server runs the statement it is sent with the URL's settings applied for
that one query, against the URL's database, and answers in the requested format. The
stand-in does the same on one chDB session: it ``SET``s the request's settings, ``USE``s
its database, runs the statement, then puts the settings back to their defaults, all
under one lock, so requests never see each other's settings.

``INSERT ... FORMAT X`` followed by data (Native from clickhouse-connect's
``insert_df``, Arrow from ``insert_arrow``...) is carried by writing the data to a file
and running ``INSERT ... FROM INFILE 'file' FORMAT X``: chDB parses the data with the
same format readers a server uses.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chdb import session as chdb_session

_BAD_REQUEST = (
    "BAD_ARGUMENTS", "SYNTAX_ERROR", "CANNOT_PARSE_TEXT", "CANNOT_PARSE_DATE",
    "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER", "CANNOT_PARSE_QUOTED_STRING",
    "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "DUPLICATE_COLUMN", "ILLEGAL_COLUMN",
    "THERE_IS_NO_COLUMN", "INCORRECT_DATA", "TYPE_MISMATCH", "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
)  # fmt: skip
_NOT_FOUND = (
    "UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE", "UNKNOWN_STORAGE",
    "UNKNOWN_DATABASE", "UNKNOWN_SETTING", "UNKNOWN_AGGREGATE_FUNCTION", "UNKNOWN_FORMAT",
    "UNKNOWN_TYPE_OF_QUERY",
)  # fmt: skip
_FORBIDDEN = ("UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "ACCESS_DENIED")

#: ClickHouse error names and the HTTP status a server answers them with
#: (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp, abridged); anything else is a 500.
_STATUS_BY_ERROR_NAME: dict[str, int] = {
    **dict.fromkeys(_BAD_REQUEST, 400),
    **dict.fromkeys(_NOT_FOUND, 404),
    **dict.fromkeys(_FORBIDDEN, 403),
    "REQUIRED_PASSWORD": 401,
    "NOT_IMPLEMENTED": 501,
    "TIMEOUT_EXCEEDED": 408,
}

_CODE_AND_NAME = re.compile(r"^Code: (?P<code>\d+)\..*?(?:\((?P<name>[A-Z0-9_]+)\))?\s*$", re.S)

#: ``INSERT INTO <table> [(columns)] [SETTINGS ...] FORMAT <name>`` followed by its data.
#: The statement is text (no NUL); the data after one optional newline is anything.
_INSERT_WITH_DATA = re.compile(
    rb"^\s*(?P<head>INSERT\s+INTO\s[^\x00]*?)\bFORMAT\s+(?P<fmt>[A-Za-z0-9_]+)[ \t]*(?:\r?\n)?",
    re.I | re.S,
)
_SET_STATEMENT = re.compile(r"^\s*SET\s", re.I)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.I)


class ServerError(Exception):
    """An error answered the way ClickHouse answers it: code, name, message, status."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.name = name
        self.message = message

    @property
    def http_status(self) -> int:
        return _STATUS_BY_ERROR_NAME.get(self.name, 500)

    @classmethod
    def of(cls, code: int, name: str, text: str) -> ServerError:
        """Build the error with the message text ClickHouse would write for it."""
        suffix = f" ({name})" if name else ""
        return cls(code, name, f"Code: {code}. DB::Exception: {text}.{suffix}")

    @classmethod
    def from_engine(cls, exc: Exception) -> ServerError:
        """Read code and name out of chDB's ``Code: N. DB::Exception: ... (NAME)`` text."""
        text = str(exc).strip()
        match = _CODE_AND_NAME.match(text)
        if match is None:
            return cls.of(1001, "STD_EXCEPTION", text)
        return cls(int(match["code"]), match["name"] or "", text)


@dataclass(frozen=True)
class StatementRequest:
    """One statement as the HTTP layer hands it over (body already decompressed)."""

    text: bytes
    database: str = "default"
    settings: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    default_format: str = "TabSeparated"


@dataclass(frozen=True)
class StatementResult:
    body: bytes
    format: str
    timezone: str
    summary: dict[str, str]


def _quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class StandinEngine:
    """One chDB session on one data path, serving one statement at a time."""

    def __init__(self, data_path: Path) -> None:
        self._data_path = data_path
        self._incoming = data_path / "incoming"
        self._incoming.mkdir(parents=True, exist_ok=True)
        self._session = chdb_session.Session(str(data_path / "chdb"))
        self._lock = threading.Lock()
        version, timezone = (
            self._session.query("SELECT version(), timezone()", "TabSeparated")
            .bytes()
            .decode()
            .strip()
            .split("\t")
        )
        self.version = version
        self.timezone = timezone
        #: Settings chDB itself starts with changed; a request's changes are undone to these.
        self._baseline = self._changed_settings()

    def close(self) -> None:
        with self._lock:
            self._session.close()

    def execute(self, request: StatementRequest) -> StatementResult:
        """Run one statement with its settings and database, as a server would."""
        for name in request.settings:
            if not _SETTING_NAME.match(name):
                raise ServerError.of(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
        with self._lock:
            started = time.perf_counter_ns()
            try:
                self._apply(request.settings)
            except ServerError:  # a bad value or name may leave part of the SET applied
                self._undo_changes()
                raise
            try:
                self._run(f"USE {_quote_identifier(request.database)}")
                result, fmt = self._statement(request)
            finally:
                self._reset(request.settings)
            elapsed_ns = time.perf_counter_ns() - started
        body = result.bytes()
        summary = {
            "read_rows": str(result.rows_read()),
            "read_bytes": str(result.bytes_read()),
            "written_rows": str(result.rows_written()),
            "written_bytes": str(result.bytes_written()),
            "total_rows_to_read": str(result.rows_read()),
            "result_rows": "0",
            "result_bytes": str(len(body)),
            "elapsed_ns": str(elapsed_ns),
        }
        timezone = request.settings.get("session_timezone") or self.timezone
        return StatementResult(body=body, format=fmt, timezone=timezone, summary=summary)

    # -- internals (called with the lock held) --------------------------------------

    def _run(
        self, sql: str, fmt: str = "TabSeparated", params: dict[str, str] | None = None
    ) -> Any:
        try:
            return self._session.query(sql, fmt, params=params or None)
        except Exception as exc:  # chDB raises its own ChdbError/RuntimeError types
            raise ServerError.from_engine(exc) from None

    def _apply(self, settings: dict[str, str]) -> None:
        if settings:
            assignments = ", ".join(f"{k} = {_quote_literal(v)}" for k, v in settings.items())
            self._run(f"SET {assignments}")

    def _reset(self, names: Iterable[str]) -> None:
        """Put settings back to what the engine started with."""
        assignments = [
            f"{name} = {_quote_literal(self._baseline[name])}"
            if name in self._baseline
            else f"{name} = DEFAULT"
            for name in names
        ]
        if assignments:
            self._run("SET " + ", ".join(assignments))

    def _changed_settings(self) -> dict[str, str]:
        rows = self._run("SELECT name, value FROM system.settings WHERE changed").bytes()
        pairs = (line.split("\t", 1) for line in rows.decode().splitlines() if line)
        return {name: value for name, value in pairs if name != "database"}

    def _undo_changes(self) -> None:
        """Undo every setting change since start (a ``SET`` statement's, say)."""
        changed = self._changed_settings()
        self._reset(name for name, value in changed.items() if self._baseline.get(name) != value)

    def _statement(self, request: StatementRequest) -> tuple[Any, str]:
        insert = _INSERT_WITH_DATA.match(request.text)
        if insert is not None:
            return self._insert_with_data(insert, request), insert["fmt"].decode()
        try:
            sql = request.text.decode()
        except UnicodeDecodeError:
            raise ServerError.of(62, "SYNTAX_ERROR", "Query is not valid UTF-8 text") from None
        trailing = _TRAILING_FORMAT.search(sql)
        fmt = trailing.group(1) if trailing else request.default_format
        result = self._run(sql, request.default_format, request.params)
        if _SET_STATEMENT.match(sql):  # lasts for its request, as on a server without session
            self._undo_changes()
        return result, fmt

    def _insert_with_data(self, insert: re.Match[bytes], request: StatementRequest) -> Any:
        head = insert["head"].decode().rstrip()
        data = request.text[insert.end() :]
        with tempfile.NamedTemporaryFile(dir=self._incoming, suffix=".data") as spool:
            spool.write(data)
            spool.flush()
            sql = f"{head} FROM INFILE {_quote_literal(spool.name)} FORMAT {insert['fmt'].decode()}"
            return self._run(sql, "TabSeparated", request.params)
