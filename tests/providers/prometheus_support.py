"""Helpers of the prometheus-provider tests: a sandbox fleet under load, its ground
truth, histogram bounds, and tiny misbehaving HTTP servers (down, garbage, hanging)."""

from __future__ import annotations

import asyncio
import bisect
import random
import socket
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from optiinfra.sandbox.exposition import sglang as sglang_text
from optiinfra.sandbox.exposition import vllm as vllm_text
from optiinfra.sandbox.fleet import Fleet
from optiinfra.sandbox.spec import DeploymentSpec, FleetSpec, SandboxSettings

MODEL = "meta-llama/Llama-3.1-8B-Instruct"

#: TTFT bucket bounds each sandbox engine exposes (the real engines' defaults).
TTFT_BUCKETS = {
    "vllm": vllm_text.TIME_TO_FIRST_TOKEN_BUCKETS,
    "sglang": sglang_text.TIME_TO_FIRST_TOKEN_BUCKETS,
}


def deployment(name: str, engine: str = "vllm", **engine_args: Any) -> DeploymentSpec:
    args = {"max_model_len": 8192, "max_num_seqs": 8, **engine_args}
    return DeploymentSpec.model_validate(
        {"name": name, "model": MODEL, "gpu": "L4", "engine": engine, "engine_args": args}
    )


@asynccontextmanager
async def running(*deployments: DeploymentSpec) -> AsyncIterator[Fleet]:
    fleet = Fleet(FleetSpec(sandbox=SandboxSettings(noise=0.0), deployments=list(deployments)))
    await fleet.start()
    try:
        yield fleet
    finally:
        await fleet.stop()


def url(fleet: Fleet, name: str) -> str:
    return fleet.endpoint(fleet.servers[name][0])


def dcgm_url(fleet: Fleet, name: str) -> str:
    return f"http://127.0.0.1:{fleet.servers[name][0].dcgm_port}/metrics"


async def send_load(base_urls: Sequence[str], requests: int, seed: int = 1) -> None:
    """``requests`` completions to each server, prompts 50–1500 words, all at once."""
    rng = random.Random(seed)
    async with httpx.AsyncClient(timeout=120) as client:

        async def one(base: str, i: int) -> None:
            body = {
                "model": MODEL,
                "prompt": f"q{i} " + "w " * rng.randint(50, 1500),
                "max_tokens": rng.randint(4, 24),
            }
            response = await client.post(f"{base}/v1/completions", json=body)
            response.raise_for_status()

        await asyncio.gather(*(one(b, i) for b in base_urls for i in range(requests)))


async def truth(base: str, window: float | None = None) -> dict[str, Any]:
    """The server's ground truth: totals, and latency percentiles of the requests that
    finished in the last ``window`` seconds (all recent ones when None)."""
    params = {"window": f"{window:.3f}"} if window is not None else {}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{base}/admin/truth", params=params)
        response.raise_for_status()
        return dict(response.json())


def bucket_range(bounds: Sequence[float], value: float) -> tuple[float, float]:
    """The bucket holding ``value`` widened by one bucket each side: where
    ``histogram_quantile`` may put a quantile whose true value is ``value``."""
    edges = [0.0, *bounds, float("inf")]
    index = bisect.bisect_left(edges, value)  # edges[index - 1] < value <= edges[index]
    return edges[max(0, index - 2)], edges[min(len(edges) - 1, index + 1)]


def free_port() -> int:
    """A port free now (another process may take it before it is used: only for servers
    started at once, such as Prometheus)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def refused_url() -> Iterator[str]:
    """A URL whose port refuses connections for as long as the block runs: the port is
    bound but never listened on, so no other process can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def static_server(body: str, content_type: str = "text/plain; version=0.0.4") -> Iterator[str]:
    """A threaded HTTP server answering every GET with ``body`` (for synchronous tests)."""
    data = body.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@asynccontextmanager
async def misbehaving(kind: str) -> AsyncIterator[str]:
    """A /metrics URL that answers garbage (``html``, ``malformed``, ``error``) or hangs."""
    bodies = {
        "html": (200, "text/html", "<html><body><h1>Welcome</h1></body></html>"),
        "malformed": (200, "text/plain; version=0.0.4",
                      '# TYPE vllm:num_requests_running gauge\n'
                      'vllm:num_requests_running{model_name="m" 3\n'),
        "error": (500, "text/plain", "internal error"),
    }  # fmt: skip
    hung: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if kind == "hang":
            hung.append(writer)
            return
        status, content_type, body = bodies[kind]
        data = body.encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(data)}\r\nconnection: close\r\n\r\n".encode()
            + data
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        for writer in hung:
            writer.close()
        server.close()
        await server.wait_closed()
