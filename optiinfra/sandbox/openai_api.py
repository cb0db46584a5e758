"""The OpenAI-compatible wire format the sandbox servers speak, as vLLM serves it.

``POST /v1/completions`` and ``POST /v1/chat/completions`` with the fields clients
actually send (``model``, ``prompt`` or ``messages``, ``max_tokens`` /
``max_completion_tokens``, ``stream``, ``stream_options.include_usage``, and vLLM's
``min_tokens`` / ``ignore_eos``); responses and server-sent-event chunks carry the
fields of OpenAI's schema; errors use vLLM's error body. Everything here is pure:
parsing a body into a :class:`CompletionCall` and building response payloads.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from optiinfra.sandbox.http import HTTPError

DEFAULT_COMPLETION_MAX_TOKENS = 16  # OpenAI's legacy completions default


@dataclass(frozen=True, slots=True)
class CompletionCall:
    """One parsed request."""

    kind: Literal["completion", "chat"]
    model: str
    prompt: str  # completion prompt, or the chat messages flattened to text
    max_tokens: int | None  # None: until the context is full (chat default)
    min_tokens: int
    stream: bool
    include_usage: bool
    request_id: str


def error(status: int, message: str, kind: str = "BadRequestError") -> HTTPError:
    """An error in vLLM's body format: ``{"object": "error", "message", "type", "code"}``."""
    body = {"object": "error", "message": message, "type": kind, "param": None, "code": status}
    return HTTPError(status, message, body)


def parse_call(body: Any, kind: Literal["completion", "chat"], request_id: str) -> CompletionCall:
    """Validate a request body; a 400 naming the offending field otherwise."""
    if not isinstance(body, dict):
        raise error(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise error(400, "field 'model' is required and must be a string")
    if kind == "completion":
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise error(400, "field 'prompt' must be a string (batched prompts are not served)")
        text = prompt
    else:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise error(400, "field 'messages' must be a non-empty list")
        parts = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                raise error(400, f"messages[{i}] must be an object with a string 'content'")
            parts.append(message["content"])
        text = "\n".join(parts)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is None and kind == "completion":
        max_tokens = DEFAULT_COMPLETION_MAX_TOKENS
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise error(400, "field 'max_tokens' must be a positive integer")
    min_tokens = body.get("min_tokens", 0)
    if not isinstance(min_tokens, int) or min_tokens < 0:
        raise error(400, "field 'min_tokens' must be a non-negative integer")
    if body.get("ignore_eos") and max_tokens is not None:
        min_tokens = max_tokens
    if max_tokens is not None and min_tokens > max_tokens:
        raise error(400, "min_tokens must be less than or equal to max_tokens")
    if body.get("n", 1) != 1:
        raise error(400, "only n=1 is served by the sandbox")
    stream = bool(body.get("stream", False))
    options = body.get("stream_options") or {}
    include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
    return CompletionCall(
        kind, model, text, max_tokens, min_tokens, stream, include_usage, request_id
    )


def usage(prompt_tokens: int, completion_tokens: int, cached: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def full_response(
    call: CompletionCall, text: str, finish_reason: str, usage_body: dict[str, Any]
) -> dict[str, Any]:
    created = int(time.time())
    if call.kind == "completion":
        choice: dict[str, Any] = {
            "index": 0,
            "text": text,
            "logprobs": None,
            "finish_reason": finish_reason,
            "stop_reason": None,
        }
        obj = "text_completion"
    else:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        obj = "chat.completion"
    return {
        "id": call.request_id,
        "object": obj,
        "created": created,
        "model": call.model,
        "choices": [choice],
        "usage": usage_body,
    }


def stream_chunk(
    call: CompletionCall,
    text: str,
    finish_reason: str | None = None,
    usage_body: dict[str, Any] | None = None,
    first: bool = False,
) -> bytes:
    """One ``data: {...}`` server-sent event."""
    if usage_body is not None:
        choices: list[dict[str, Any]] = []
    elif call.kind == "completion":
        choices = [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}]
    else:
        delta: dict[str, Any] = {"content": text}
        if first:
            delta["role"] = "assistant"
        choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    payload: dict[str, Any] = {
        "id": call.request_id,
        "object": "text_completion" if call.kind == "completion" else "chat.completion.chunk",
        "created": int(time.time()),
        "model": call.model,
        "choices": choices,
    }
    if usage_body is not None:
        payload["usage"] = usage_body
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


STREAM_DONE = b"data: [DONE]\n\n"
