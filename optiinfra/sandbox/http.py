"""A small HTTP/1.1 server on asyncio streams, parsed by h11.

The sandbox needs hundreds of listening ports in one process, opened and closed while it
runs (a replica scaled up, a spot server interrupted). A web framework binds its
sockets at start-up; this binds one listener per port with ``asyncio.start_server`` and
routes every request of that port to one handler. h11 does the protocol (keep-alive,
chunked bodies, malformed input); this module only moves bytes.

Example::

    async def handler(request: Request) -> Response:
        return Response.json({"ok": True})

    listener = await Listener.open(handler, "127.0.0.1", 0)
    print(listener.port)
    await listener.close()
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11

MAX_BODY_BYTES = 8 * 1024 * 1024
_READ_CHUNK = 65536


@dataclass(slots=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    port: int

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.target).query).items()}

    def seconds(self, name: str) -> float | None:
        """A query parameter in seconds (None when absent); 400 when it is not a number."""
        raw = self.query.get(name)
        if not raw:
            return None
        try:
            return float(raw)
        except ValueError:
            raise HTTPError(400, f"{name} must be seconds, got {raw!r}") from None

    def json(self) -> Any:
        """The body parsed as JSON; :class:`HTTPError` 400 when it is not."""
        try:
            return json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, f"request body is not valid JSON: {exc}") from None


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: AsyncIterator[bytes] | None = None  # sent chunked when set

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(payload, separators=(",", ":")).encode())

    @classmethod
    def text(cls, text: str, content_type: str = "text/plain; charset=utf-8") -> Response:
        return cls(200, text.encode(), content_type)


class HTTPError(Exception):
    """Raised by a handler to answer with an error status and a JSON body."""

    def __init__(self, status: int, message: str, payload: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.payload = payload


Handler = Callable[[Request], Awaitable[Response]]


class Listener:
    """One listening port and the connections it accepted."""

    def __init__(self, server: asyncio.base_events.Server, port: int) -> None:
        self._server = server
        self.port = port
        self._connections: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, handler: Handler, host: str, port: int = 0) -> Listener:
        """Listen on ``host:port`` (0: a free port the OS picks)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        sock.listen(128)
        sock.setblocking(False)
        bound = sock.getsockname()[1]
        listener: Listener

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            listener._connections.add(task)
            try:
                await _serve_connection(handler, reader, writer, bound)
            except asyncio.CancelledError:
                pass  # the listener closed: the connection ends here (asyncio logs otherwise)
            finally:
                listener._connections.discard(task)

        server = await asyncio.start_server(on_connect, sock=sock)
        listener = cls(server, bound)
        return listener

    async def close(self) -> None:
        """Stop listening and cut every open connection (what a crashed server does)."""
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()


async def _serve_connection(
    handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
    try:
        while True:
            request = await _read_request(conn, reader, port)
            if request is None:
                return
            response = await _respond(handler, request)
            await _write_response(conn, writer, response)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return
    except (ConnectionError, asyncio.IncompleteReadError, h11.ProtocolError):
        return
    finally:
        writer.close()


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader, port: int
) -> Request | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(_READ_CHUNK)
            conn.receive_data(data)
            if not data and conn.their_state is h11.IDLE:
                return None
            continue
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY_BYTES:
                raise h11.RemoteProtocolError("request body too large")
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            headers = {k.decode().lower(): v.decode("latin-1") for k, v in head.headers}
            return Request(head.method.decode(), head.target.decode(), headers, bytes(body), port)
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def _respond(handler: Handler, request: Request) -> Response:
    try:
        return await handler(request)
    except HTTPError as exc:
        payload = exc.payload or {"error": exc.message}
        return Response.json(payload, exc.status)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug in a handler answers 500, the server lives on
        return Response.json({"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)


async def _write_response(
    conn: h11.Connection, writer: asyncio.StreamWriter, response: Response
) -> None:
    headers = [("content-type", response.content_type), *response.headers.items()]
    if response.stream is None:
        headers.append(("content-length", str(len(response.body))))
        writer.write(conn.send(h11.Response(status_code=response.status, headers=headers)))
        writer.write(conn.send(h11.Data(data=response.body)) if response.body else b"")
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        return
    headers.append(("transfer-encoding", "chunked"))
    writer.write(conn.send(h11.Response(status_code=response.status, headers=headers)))
    async for chunk in response.stream:
        if chunk:
            writer.write(conn.send(h11.Data(data=chunk)))
            await writer.drain()
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()
