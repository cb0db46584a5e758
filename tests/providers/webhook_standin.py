"""A user's rollout endpoint, as the webhook actuator's wire format describes it: POST a
step (bearer token checked, repeated idempotency keys answered without acting twice),
GET the status of a deployment. ``mode`` makes it misbehave: ``error`` (HTTP 500 that
echoes the Authorization header, as a careless endpoint might), ``slow`` (answers after
``delay`` seconds), ``failed`` (reports the step failed), ``garbage`` (a status that is
not a status document), ``progressing`` (accepted, not finished yet)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Endpoint:
    token: str
    percent: dict[str, float] = field(default_factory=dict)
    posts: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    acted: list[str] = field(default_factory=list)  # idempotency keys acted upon
    mode: str = "ok"
    delay: float = 0.0


def _handler(ep: Endpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Any) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            ep.headers.append(dict(self.headers.items()))
            if self.headers.get("Authorization") != f"Bearer {ep.token}":
                self._send(401, {"error": "bad token"})
                return False
            return True

        def do_POST(self) -> None:
            if ep.mode == "slow":
                time.sleep(ep.delay)
            if not self._authorised():
                return
            if ep.mode == "error":
                echo = self.headers.get("Authorization")
                self._send(500, {"error": f"gateway exploded handling {echo}"})
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            ep.posts.append(body)
            key = self.headers.get("Idempotency-Key")
            if key != body["idempotency_key"]:
                self._send(400, {"error": "Idempotency-Key header differs from the body"})
                return
            if key not in ep.acted:
                ep.acted.append(key)
                ep.percent[body["deployment"]] = body["percent"]
            self._send(202, {"accepted": True})

        def do_GET(self) -> None:
            if not self._authorised():
                return
            query = parse_qs(urlsplit(self.path).query)
            name = query["deployment"][0]
            if ep.mode == "garbage":
                self._send(200, {"deployment": name, "percent": "lots"})
                return
            p = ep.percent.get(name, 0.0)
            state = {"failed": "failed", "progressing": "progressing"}.get(ep.mode, "done")
            message = "canary pods crash-looping" if ep.mode == "failed" else ""
            self._send(200, {
                "deployment": name, "percent": p, "state": state, "message": message,
                "variants": [
                    {"name": f"{name}-stable", "role": "baseline", "replicas": round(10 - p / 10),
                     "config": {"image": "vllm:1"}},
                    {"name": f"{name}-canary", "role": "canary", "replicas": round(p / 10)},
                ],
            })  # fmt: skip

    return Handler


@contextmanager
def webhook_standin(token: str) -> Iterator[tuple[str, Endpoint]]:
    ep = Endpoint(token=token)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ep))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/optiinfra/rollouts", ep
    finally:
        server.shutdown()
        server.server_close()
