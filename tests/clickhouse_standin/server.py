"""The HTTP side of the stand-in: ClickHouse's HTTP interface, as clickhouse-connect uses it.

What a request may carry, and where it goes:

* the statement: the ``query`` URL parameter, the body, or both (the parameter, a
  newline, then the body: the way an ``INSERT ... FORMAT X`` is followed by its data);
* ``database``, ``default_format``, ``param_<name>`` (server-side ``{name:Type}``
  binding); transport parameters (``session_id``, ``query_id``, ``wait_end_of_query``,
  ``client_protocol_version``...) are read or ignored; every other parameter is a query
  setting, so an unknown one fails as ClickHouse fails it (``UNKNOWN_SETTING``);
* credentials: HTTP basic auth, ``X-ClickHouse-User``/``X-ClickHouse-Key`` headers, or
  ``user``/``password`` parameters; a mismatch is ``AUTHENTICATION_FAILED`` (403);
* ``Content-Encoding`` (lz4 frame, zstd, gzip, deflate) on the request body, chunked
  transfer; with ``enable_http_compression=1`` the answer is compressed with the first
  encoding of ``Accept-Encoding`` that the stand-in knows.

Answers carry ``X-ClickHouse-Query-Id``, ``-Format``, ``-Timezone``, ``-Summary`` and
``-Server-Display-Name``; errors carry ``X-ClickHouse-Exception-Code`` and the
``Code: N. DB::Exception: ... (version V)`` body, with the status ClickHouse uses.
"""

from __future__ import annotations

import base64
import gzip
import hmac
import json
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import lz4.frame

from tests.clickhouse_standin.engine import ServerError, StandinEngine, StatementRequest

try:  # clickhouse-connect's own zstd dependency (stdlib from Python 3.14)
    from backports import zstd as _zstd
except ImportError:  # pragma: no cover - depends on the interpreter
    from compression import zstd as _zstd  # type: ignore[import-not-found,no-redef]

#: The one line ``python -m tests.clickhouse_standin`` prints on stdout once it listens.
READY_PREFIX = "clickhouse-standin listening on "

_TRANSPORT_PARAMETERS = frozenset(
    {
        "query", "database", "default_format", "user", "password", "quota_key", "role",
        "session_id", "session_timeout", "session_check", "query_id", "compress",
        "decompress", "buffer_size", "wait_end_of_query", "client_protocol_version",
    }
)  # fmt: skip

_DECOMPRESS = {
    "lz4": lz4.frame.decompress,
    "zstd": _zstd.decompress,
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
}
_COMPRESS = {
    "lz4": lz4.frame.compress,
    "zstd": _zstd.compress,
    "gzip": gzip.compress,
    "deflate": zlib.compress,
}


class StandinServer(ThreadingHTTPServer):
    """A threading HTTP server holding the engine and the one accepted user."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], engine: StandinEngine, user: str, password: str
    ) -> None:
        super().__init__(address, StandinRequestHandler)
        self.engine = engine
        self.user = user
        self.password = password


class StandinRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clickhouse-connect's pool expects
    server: StandinServer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the launcher reads stdout for the ready line only."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    # -- request handling ---------------------------------------------------------

    def _handle(self) -> None:
        split = urlsplit(self.path)
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        try:
            body = self._read_body()
            if split.path in ("/ping", "/") and "query" not in params and not body:
                self._send(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
                return
            if split.path != "/":
                raise ServerError.of(1000, "", f"There is no handler {split.path}")
            self._authenticate(params)
            request = self._statement_request(params, body)
            result = self.server.engine.execute(request)
        except ServerError as error:
            self._send_error(error, query_id)
            return
        except Exception as exc:  # a stand-in bug still answers the way a server would
            text = f"{type(exc).__name__}: {exc}"
            self._send_error(ServerError.of(1001, "STD_EXCEPTION", text), query_id)
            return
        headers = {
            "Content-Type": _content_type(result.format),
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Format": result.format,
            "X-ClickHouse-Timezone": result.timezone,
            "X-ClickHouse-Server-Display-Name": "clickhouse-standin",
            "X-ClickHouse-Summary": json.dumps(result.summary),
        }
        payload = result.body
        if params.get("enable_http_compression") == "1":
            encoding = _pick_encoding(self.headers.get("Accept-Encoding", ""))
            if encoding:
                payload = _COMPRESS[encoding](payload)
                headers["Content-Encoding"] = encoding
        self._send(200, payload, headers)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = self._read_chunked()
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        if not encoding or encoding == "identity":
            return raw
        if encoding not in _DECOMPRESS:
            raise ServerError.of(1001, "", f"Unknown HTTP compression method '{encoding}'")
        try:
            return _DECOMPRESS[encoding](raw)
        except Exception as exc:
            raise ServerError.of(432, "UNKNOWN_CODEC", f"Cannot decompress body: {exc}") from None

    def _read_chunked(self) -> bytes:
        chunks = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(chunks)
            chunks += self.rfile.read(size)
            self.rfile.readline()  # the CRLF after each chunk

    def _authenticate(self, params: dict[str, str]) -> None:
        user, password = "default", ""
        authorization = self.headers.get("Authorization", "")
        if authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization[6:].strip()).decode()
            user, _, password = decoded.partition(":")
        elif "X-ClickHouse-User" in self.headers:
            user = self.headers["X-ClickHouse-User"]
            password = self.headers.get("X-ClickHouse-Key", "")
        elif "user" in params:
            user, password = params["user"], params.get("password", "")
        user_ok = hmac.compare_digest(user.encode(), self.server.user.encode())
        password_ok = hmac.compare_digest(password.encode(), self.server.password.encode())
        if not (user_ok and password_ok):
            raise ServerError.of(
                516,
                "AUTHENTICATION_FAILED",
                f"{user}: Authentication failed: password is incorrect, or there is no user "
                "with such name",
            )

    @staticmethod
    def _statement_request(params: dict[str, str], body: bytes) -> StatementRequest:
        query = params.get("query", "").encode()
        text = query + b"\n" + body if query and body else query or body
        if not text.strip():
            raise ServerError.of(62, "SYNTAX_ERROR", "Empty query")
        settings = {
            k: v
            for k, v in params.items()
            if k not in _TRANSPORT_PARAMETERS and not k.startswith("param_")
        }
        return StatementRequest(
            text=text,
            database=params.get("database") or "default",
            settings=settings,
            params={k[len("param_") :]: v for k, v in params.items() if k.startswith("param_")},
            default_format=params.get("default_format") or "TabSeparated",
        )

    # -- answers ------------------------------------------------------------------

    def _send_error(self, error: ServerError, query_id: str) -> None:
        body = f"{error.message} (version {self.server.engine.version})\n".encode()
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Exception-Code": str(error.code),
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Server-Display-Name": "clickhouse-standin",
        }
        self._send(error.http_status, body, headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _content_type(fmt: str) -> str:
    if fmt.startswith("TabSeparated") or fmt.startswith("TSV"):
        return "text/tab-separated-values; charset=UTF-8"
    if fmt.startswith("JSON"):
        return "application/json; charset=UTF-8"
    return "application/octet-stream"


def _pick_encoding(accept_encoding: str) -> str | None:
    for part in accept_encoding.split(","):
        name = part.split(";", 1)[0].strip().lower()
        if name in _COMPRESS:
            return name
    return None
