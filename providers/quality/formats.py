"""The interaction record formats: OptiInfra's own, OpenTelemetry GenAI spans, Langfuse.

Each ``from_*`` function turns one decoded record into an :class:`Interaction`, returns
a short reason string when the record is malformed, :data:`NO_CONTENT` for a GenAI span
recorded without its prompt or answer (content capture off), or ``None`` for a record
that is not a model call at all (an HTTP span, a Langfuse SPAN observation). Field
names follow the OpenTelemetry GenAI semantic conventions (``gen_ai.input.messages`` with
``parts``, the deprecated ``gen_ai.prompt``/``gen_ai.completion``, OpenLLMetry's
flattened ``gen_ai.prompt.<n>.content``) and Langfuse's public API (traces:
``timestamp``, ``input``, ``output``, ``latency``; observations: ``type``,
``startTime``, ``endTime``, ``model``, ``input``, ``output``, ``metadata``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: Returned for a GenAI span that carries no prompt or answer text.
NO_CONTENT = "content"


@dataclass(frozen=True)
class Interaction:
    """One prompt and the answer a deployment gave, at ``ts``."""

    id: str
    ts: datetime
    deployment: str
    prompt: str
    answer: str
    reference: str | None = None
    aliases: tuple[str, ...] = ()
    config_id: str = ""
    latency_seconds: float | None = None


# --- small readers ----------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """ISO-8601 text, Unix seconds, or nanoseconds (OTLP's ``*UnixNano``) → UTC datetime."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, int | float):
        seconds = value / 1e9 if abs(value) > 1e14 else float(value)
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return None


def _content(value: Any) -> str:
    """Text of a message content: a string, OpenAI parts (``text``), OTel parts (``content``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and part.get("type", "text") in (
                "text",
                "input_text",
                "output_text",
            ):
                text = part.get("text", part.get("content"))
                if isinstance(text, str):
                    texts.append(text)
        return "\n".join(texts)
    return ""


def _message_text(message: Any) -> str:
    if isinstance(message, str):
        return message
    if isinstance(message, Mapping):
        if "parts" in message:
            return _content(message["parts"])
        return _content(message.get("content", message.get("text")))
    return ""


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _prompt_text(value: Any) -> str:
    """A prompt given as text, chat messages, or an object holding either."""
    value = _maybe_json(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for t in (_message_text(m) for m in value) if t)
    if isinstance(value, Mapping):
        for key in ("messages", "prompt", "input", "question", "query", "text", "content"):
            if key in value:
                return _prompt_text(value[key])
        return json.dumps(value, sort_keys=True)
    return ""


def _answer_text(value: Any) -> str:
    """An answer given as text, an assistant message, a list of them (the last), or an
    object with content/text/completion/output/answer or OpenAI ``choices``."""
    value = _maybe_json(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = [_answer_text(m) for m in value]
        return next((t for t in reversed(texts) if t), "")
    if isinstance(value, Mapping):
        if "parts" in value or "content" in value:
            return _message_text(value)
        if isinstance(value.get("choices"), list) and value["choices"]:
            choice = value["choices"][0]
            if isinstance(choice, Mapping):
                return _answer_text(choice.get("message", choice.get("text")))
        for key in ("text", "completion", "output", "answer", "message"):
            if key in value:
                return _answer_text(value[key])
    return ""


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _record_id(*parts: Any) -> str:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


# --- the three formats ------------------------------------------------------------------


def from_optiinfra(raw: Mapping[str, Any], default_deployment: str | None) -> Interaction | str:
    ts = parse_time(raw.get("ts", raw.get("timestamp")))
    if ts is None:
        return "no ts (ISO-8601 or Unix seconds)"
    prompt, answer = _prompt_text(raw.get("prompt")), _answer_text(raw.get("answer"))
    if not prompt or not isinstance(raw.get("answer"), str | list | dict):
        return "needs prompt and answer"
    deployment = _text(raw.get("deployment")) or default_deployment
    if deployment is None:
        return "no deployment (set interactions.deployment)"
    aliases = raw.get("aliases", [])
    latency = raw.get("latency_seconds")
    return Interaction(
        id=_text(raw.get("id")) or _record_id(raw.get("ts"), deployment, prompt, answer),
        ts=ts,
        deployment=deployment,
        prompt=prompt,
        answer=answer,
        reference=_text(raw.get("reference")),
        aliases=tuple(a for a in aliases if isinstance(a, str))
        if isinstance(aliases, list)
        else (),
        config_id=_text(raw.get("config_id")) or "",
        latency_seconds=float(latency) if isinstance(latency, int | float) else None,
    )


def _otlp_value(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return value
    for key in ("stringValue", "boolValue", "doubleValue", "bytesValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        try:
            return int(value["intValue"])
        except (TypeError, ValueError):
            return value["intValue"]
    if "arrayValue" in value:
        return [_otlp_value(v) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        return otel_attributes((value["kvlistValue"] or {}).get("values", []))
    return None


def otel_attributes(raw: Any) -> dict[str, Any]:
    """OTLP ``[{key, value: {stringValue…}}]`` or an SDK's plain mapping → plain dict."""
    if isinstance(raw, Mapping):
        return dict(raw)
    out: dict[str, Any] = {}
    for pair in raw if isinstance(raw, list) else []:
        if isinstance(pair, Mapping) and isinstance(pair.get("key"), str):
            out[pair["key"]] = _otlp_value(pair.get("value"))
    return out


def _indexed(attrs: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """``gen_ai.prompt.0.role``/``.content`` (flattened messages) → message dicts."""
    messages: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        rest = key.removeprefix(prefix + ".")
        index, _, name = rest.partition(".")
        if rest != key and index.isdigit() and name:
            messages.setdefault(int(index), {})[name] = value
    return [messages[i] for i in sorted(messages)]


def from_otel_span(
    span: Mapping[str, Any], resource: Mapping[str, Any], default_deployment: str | None
) -> Interaction | str | None:
    attrs = otel_attributes(span.get("attributes"))
    if not any(k.startswith("gen_ai.") for k in attrs):
        return None  # not a GenAI span (an HTTP or database span of the same trace)
    events = {
        e.get("name"): otel_attributes(e.get("attributes"))
        for e in span.get("events") or []
        if isinstance(e, Mapping)
    }
    prompt = _prompt_text(
        attrs.get("gen_ai.input.messages")
        or attrs.get("gen_ai.prompt")
        or _indexed(attrs, "gen_ai.prompt")
        or events.get("gen_ai.content.prompt", {}).get("gen_ai.prompt")
    )
    answer = _answer_text(
        attrs.get("gen_ai.output.messages")
        or attrs.get("gen_ai.completion")
        or _indexed(attrs, "gen_ai.completion")
        or events.get("gen_ai.content.completion", {}).get("gen_ai.completion")
    )
    if not prompt or not answer:
        return NO_CONTENT
    start = parse_time(span.get("startTimeUnixNano", span.get("start_time")))
    end = parse_time(span.get("endTimeUnixNano", span.get("end_time")))
    if start is None:
        return "no start time"
    context = span.get("context") if isinstance(span.get("context"), Mapping) else {}
    span_id = _text(span.get("spanId")) or _text(context.get("span_id"))
    deployment = (
        _text(attrs.get("optiinfra.deployment"))
        or _text(resource.get("optiinfra.deployment"))
        or default_deployment
        or _text(attrs.get("gen_ai.request.model"))
        or _text(attrs.get("gen_ai.response.model"))
    )
    if deployment is None:
        return "no deployment (no optiinfra.deployment, no gen_ai.request.model)"
    return Interaction(
        id=span_id or _record_id(start.isoformat(), prompt, answer),
        ts=start,
        deployment=deployment,
        prompt=prompt,
        answer=answer,
        reference=_text(attrs.get("optiinfra.reference")),
        config_id=_text(attrs.get("optiinfra.config_id"))
        or _text(resource.get("optiinfra.config_id"))
        or "",
        latency_seconds=(end - start).total_seconds() if end is not None else None,
    )


def from_langfuse(
    raw: Mapping[str, Any], default_deployment: str | None
) -> Interaction | str | None:
    kind = raw.get("type")
    if isinstance(kind, str) and kind.upper() != "GENERATION":
        return None  # spans, events, tools: not a model's answer
    is_trace = kind is None
    started = raw.get("timestamp") if is_trace else raw.get("startTime", raw.get("start_time"))
    ts = parse_time(started)
    if ts is None:
        return "no timestamp/startTime"
    prompt, answer = _prompt_text(raw.get("input")), _answer_text(raw.get("output"))
    if not prompt or not answer:
        return "needs input and output"
    metadata = raw.get("metadata") if isinstance(raw.get("metadata"), Mapping) else {}
    deployment = (
        _text(metadata.get("deployment"))
        or default_deployment
        or (None if is_trace else _text(raw.get("model")))
    )
    if deployment is None:
        return "no deployment (metadata.deployment, model, or interactions.deployment)"
    latency: float | None = None
    if is_trace and isinstance(raw.get("latency"), int | float):
        latency = float(raw["latency"])
    elif not is_trace:
        end = parse_time(raw.get("endTime", raw.get("end_time")))
        latency = (end - ts).total_seconds() if end is not None else None
    return Interaction(
        id=_text(raw.get("id")) or _record_id(ts.isoformat(), prompt, answer),
        ts=ts,
        deployment=deployment,
        prompt=prompt,
        answer=answer,
        reference=_text(metadata.get("reference")),
        config_id=_text(metadata.get("config_id")) or "",
        latency_seconds=latency,
    )


def record_shape(raw: Mapping[str, Any]) -> str:
    if "attributes" in raw and any(
        k in raw for k in ("startTimeUnixNano", "start_time", "context", "spanId")
    ):
        return "otel"
    if "prompt" in raw and "answer" in raw:
        return "optiinfra"
    if any(k in raw for k in ("traceId", "startTime", "observations")) or (
        "timestamp" in raw and "input" in raw
    ):
        return "langfuse"
    return "unknown"
