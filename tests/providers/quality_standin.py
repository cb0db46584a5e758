"""A stand-in OpenAI-compatible server on a real local socket, for the quality tests.

It answers ``POST /v1/chat/completions`` (and ``/v1/completions``, ``GET /v1/models``)
with whatever a test's ``reply`` function returns for the request body, records every
request (headers and body) and can serve any other path from ``files``. It sends no
``x-optiinfra-config-id`` header, as most real servers do not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from optiinfra.sandbox.http import Listener, Request, Response

#: reply(body) -> the assistant's text, or a (status, payload) pair for a raw answer.
Reply = Callable[[dict[str, Any]], "str | tuple[int, Any]"]


@dataclass
class StandIn:
    reply: Reply
    files: dict[str, tuple[str, str]] = field(default_factory=dict)  # path -> (type, text)
    model: str = "stand-in-model"
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    listener: Listener | None = None

    async def __aenter__(self) -> StandIn:
        self.listener = await Listener.open(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.listener is not None
        await self.listener.close()

    @property
    def root(self) -> str:
        assert self.listener is not None
        return f"http://127.0.0.1:{self.listener.port}"

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    async def _handle(self, request: Request) -> Response:
        body = request.json() if request.body else None
        self.requests.append((request.target, dict(request.headers), body))
        if request.path in self.files:
            content_type, text = self.files[request.path]
            return Response.text(text, content_type)
        if request.path == "/v1/models":
            return Response.json({"object": "list", "data": [{"id": self.model}]})
        if request.path not in ("/v1/chat/completions", "/v1/completions"):
            return Response.json({"error": f"no route {request.path}"}, 404)
        answer = self.reply(body)
        if isinstance(answer, tuple):
            status, payload = answer
            if isinstance(payload, str):
                return Response(status, payload.encode(), "text/plain")
            return Response.json(payload, status)
        if request.path == "/v1/completions":
            choice: dict[str, Any] = {"index": 0, "text": answer, "finish_reason": "stop"}
        else:
            message = {"role": "assistant", "content": answer}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return Response.json(
            {
                "id": "chatcmpl-standin",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", self.model),
                "choices": [choice],
            }
        )


def last_user_text(body: dict[str, Any]) -> str:
    """The text a probe or judge request asked (chat or completions)."""
    if "messages" in body:
        return str(body["messages"][-1]["content"])
    return str(body.get("prompt", ""))


def judge_json(score: float, reason: str = "ok") -> str:
    return json.dumps({"score": score, "reason": reason})
