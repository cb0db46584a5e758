"""A stand-in chat-completions server on a real local socket, speaking Groq's wire format.

It answers ``POST /openai/v1/chat/completions`` (the path the ``groq`` SDK uses under its
base URL) and ``POST /v1/chat/completions`` (an OpenAI-compatible server such as vLLM)
the same way. A request must carry ``model`` (a string) and ``messages`` (a list of
``{role, content}``); anything else gets Groq's error shape with HTTP 400::

    {"error": {"message": "...", "type": "invalid_request_error", "code": "..."}}

A test scripts the answers: each request takes the next :class:`Step` from ``script``,
or ``default`` when the script is empty. A step is a reply (assistant text, wrapped in
a ``chat.completion`` with ``usage``), an error (status + Groq error body + headers such
as ``retry-after``), a raw body, or a delay before answering. Every request is recorded
(path, headers, JSON body), so tests count requests and read what was sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_PATHS = ("/openai/v1/chat/completions", "/v1/chat/completions")


@dataclass(frozen=True)
class Step:
    """One scripted answer."""

    content: str | None = None  # the assistant's text (a 200 chat.completion)
    status: int = 200
    error: dict[str, Any] | None = None  # Groq's error object, for status >= 400
    raw: str | None = None  # a body sent as is (with content-type application/json)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    prompt_tokens: int = 120
    completion_tokens: int = 40
    echo_authorization: bool = False  # put the request's Authorization in the error text


def reply(content: str | dict[str, Any], **kwargs: Any) -> Step:
    """A successful answer whose assistant text is ``content`` (a dict is JSON-encoded)."""
    text = content if isinstance(content, str) else json.dumps(content)
    return Step(content=text, **kwargs)


def error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    **kwargs: Any,
) -> Step:
    """An error answer in Groq's shape."""
    body: dict[str, Any] = {"message": message, "type": type_}
    if code:
        body["code"] = code
    return Step(status=status, error=body, **kwargs)


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


class ChatStandIn:
    """The server; use as a context manager (``with ChatStandIn() as server``)."""

    def __init__(self, default: Step | None = None, model: str = "stand-in-model") -> None:
        self.default = default or reply({"summary": "ok", "rationale": "ok", "risks": []})
        self.model = model
        self.script: deque[Step] = deque()
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> ChatStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()  # wakes handlers that are sleeping through a delay
        self._server.shutdown()
        self._server.server_close()

    @property
    def root(self) -> str:
        """The base URL for the groq SDK (it appends /openai/v1/...)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_base_url(self) -> str:
        """The base URL for an OpenAI-compatible client (it appends /chat/completions)."""
        return self.root + "/v1"

    def queue(self, *steps: Step) -> None:
        self.script.extend(steps)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _record(self, recorded: Recorded) -> None:
        with self._lock:
            self.requests.append(recorded)

    def _next_step(self) -> Step:
        with self._lock:
            return self.script.popleft() if self.script else self.default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read ``requests`` instead."""

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = None
                recorded = Recorded(self.path, dict(self.headers.items()), body)
                standin._record(recorded)
                if self.path not in CHAT_PATHS:
                    self._send(404, _error_body(f"Unknown request URL: POST {self.path}"), {})
                    return
                problem = _request_problem(body)
                if problem:
                    self._send(400, _error_body(problem), {})
                    return
                step = standin._next_step()
                if step.delay and standin._stopping.wait(step.delay):
                    return
                if step.raw is not None:
                    self._send(step.status, step.raw.encode(), step.headers)
                elif step.status >= 400:
                    detail = dict(step.error or {"message": "error", "type": "api_error"})
                    if step.echo_authorization:
                        detail["message"] += f" ({self.headers.get('authorization')})"
                    self._send(step.status, json.dumps({"error": detail}).encode(), step.headers)
                else:
                    answer = _completion(body, step, standin.model)
                    self._send(step.status, json.dumps(answer).encode(), step.headers)

            def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        return Handler


def _error_body(message: str) -> bytes:
    error = {"message": message, "type": "invalid_request_error", "code": "invalid_request"}
    return json.dumps({"error": error}).encode()


def _request_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "'model' : property 'model' is missing"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' : property 'messages' is missing"
    for message in messages:
        if not isinstance(message, dict) or not {"role", "content"} <= message.keys():
            return "'messages' : each message needs role and content"
    response_format = body.get("response_format")
    if response_format is not None and response_format != {"type": "json_object"}:
        return "'response_format' : only json_object is served here"
    return None


def _completion(body: dict[str, Any], step: Step, default_model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or default_model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": step.content},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": step.prompt_tokens,
            "completion_tokens": step.completion_tokens,
            "total_tokens": step.prompt_tokens + step.completion_tokens,
        },
        "system_fingerprint": "fp_standin",
        "x_groq": {"id": "req_standin"},
    }


# -- what the LLM tests send through it ------------------------------------------------

#: A fake API key; tests assert it never shows in logs, reprs, reasons or cache files.
FAKE_KEY = "gsk_standin_SECRET_3f9a7c"
KEY_ENV = "OPTIINFRA_TEST_LLM_KEY"


def sample_request() -> Any:
    """A spot-migration request with three figures, evidence and a template."""
    from optiinfra.llm import ExplanationRequest, Figure, TemplateText

    return ExplanationRequest(
        kind="spot_migration",
        target="deployment chat-70b on g6.xlarge",
        figures={
            "savings": Figure(value=1234.5, unit="USD/month", display="$1,234.50/month"),
            "interruption_rate": Figure(value=0.0423, unit="ratio", display="4.23%"),
            "ttft_p95": Figure(value=1.8734, unit="seconds", display="1.87 s"),
        },
        evidence=["spot interruptions of g6.xlarge in us-east-1 over 30 days were rare"],
        template=TemplateText(
            summary="Move chat-70b to spot g6.xlarge to save $1,234.50/month.",
            rationale="Spot capacity was interrupted 4.23% of the time; p95 TTFT is 1.87 s.",
            risks=["Interruptions restart in-flight requests."],
        ),
    )


def good_reply() -> dict[str, Any]:
    """A reply that passes validation and the number guard for :func:`sample_request`."""
    return {
        "summary": "Moving chat-70b to spot g6.xlarge saves about $1.2k a month.",
        "rationale": "Spot capacity was interrupted 4.2% of the time over 30 days, and p95 "
        "TTFT stays at 1.87 s, so the saving of $1,234.50/month comes at little risk.",
        "risks": ["An interruption restarts the requests in flight on that replica."],
    }
