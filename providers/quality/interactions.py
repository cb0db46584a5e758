"""Sampled real interactions: read from a JSONL/JSON file or an HTTP source, kept to the
collection window, sampled, and handed to scoring.

Three record shapes are understood (docs/quality.md has an example of each):

- **optiinfra**: ``{id?, ts, deployment?, prompt, answer, reference?, aliases?,
  config_id?, latency_seconds?}``; ``ts`` is ISO-8601 or Unix seconds.
- **otel**: OpenTelemetry GenAI spans, either OTLP JSON (``{"resourceSpans": …}``, as the
  Collector's file exporter writes, one export a line) or the Python SDK's span JSON
  (``"attributes": {…}``, ``"start_time"``). The prompt is ``gen_ai.input.messages``
  (else the deprecated ``gen_ai.prompt``, or ``gen_ai.prompt.<n>.content``), the answer
  ``gen_ai.output.messages`` (else ``gen_ai.completion``…); the deployment is the
  attribute ``optiinfra.deployment``, else the configured one, else
  ``gen_ai.request.model``/``gen_ai.response.model``.
- **langfuse**: traces (``timestamp``, ``input``, ``output``) or observations of type
  ``GENERATION`` (``startTime``, ``endTime``, ``model``, ``input``, ``output``), alone, as
  a JSON list, or as an API page ``{"data": [...]}``; ``metadata.deployment``,
  ``metadata.config_id`` and ``metadata.reference`` are honoured.

Malformed records are skipped and counted (a note says how many and why); a source that
cannot be read raises :class:`InteractionSourceError`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from optiinfra.config.schema import QualityInteractions
from optiinfra.errors import OptiInfraError
from providers.quality.formats import (
    NO_CONTENT,
    Interaction,
    from_langfuse,
    from_optiinfra,
    from_otel_span,
    otel_attributes,
    record_shape,
)

_MAX_BYTES = 256 * 1024 * 1024


class InteractionSourceError(OptiInfraError):
    """The interactions file or URL could not be read at all."""


@dataclass
class Parsed:
    records: list[Interaction] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    without_content: int = 0  # GenAI spans recorded with content capture off


# --- documents ------------------------------------------------------------------------


def _units(value: Any, where: str) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(where, record, OTel resource attributes) for every record in a decoded value."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _units(item, f"{where}[{index}]")
    elif isinstance(value, Mapping) and isinstance(value.get("resourceSpans"), list):
        for rs in value["resourceSpans"]:
            if not isinstance(rs, Mapping):
                continue
            resource = otel_attributes((rs.get("resource") or {}).get("attributes"))
            scopes = rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []
            for scope in scopes if isinstance(scopes, list) else []:
                spans = scope.get("spans") if isinstance(scope, Mapping) else None
                for span in spans if isinstance(spans, list) else []:
                    if isinstance(span, Mapping):
                        yield where, span, resource
    elif isinstance(value, Mapping) and isinstance(value.get("data"), list):
        yield from _units(value["data"], where)
    elif isinstance(value, Mapping):
        # The Python SDK's span JSON: "resource" is {"attributes": {...}} (or, in older
        # versions, the attributes themselves).
        resource = value.get("resource")
        attrs: Mapping[str, Any] = {}
        if isinstance(resource, Mapping):
            inner = resource.get("attributes")
            attrs = otel_attributes(inner) if isinstance(inner, Mapping | list) else resource
        yield where, value, attrs
    else:
        yield where, {}, {}


def _decode(text: str, source: str) -> Iterator[tuple[str, Any]]:
    """Consecutive JSON values: one document, JSON lines, or pretty-printed objects one after
    another (as OpenTelemetry's console exporter writes them). A value that does not decode
    yields a :class:`_BadLine` and reading resumes at the next line."""
    decoder = json.JSONDecoder()
    pos, line, size = 0, 1, len(text)
    while True:
        while pos < size and text[pos] in " \t\r\n":
            line += text[pos] == "\n"
            pos += 1
        if pos >= size:
            return
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield f"{source}:{line}", _BadLine(exc.msg)
            end = text.find("\n", pos)
            end = size if end < 0 else end
        else:
            yield f"{source}:{line}", value
        line += text.count("\n", pos, end)
        pos = end


@dataclass(frozen=True)
class _BadLine:
    reason: str


def parse_interactions(
    text: str, source: str, *, format: str = "auto", default_deployment: str | None = None
) -> Parsed:
    """Every interaction in ``text`` (JSON or JSONL), with the problems of skipped records."""
    parsed = Parsed()
    for where, value in _decode(text, source):
        if isinstance(value, _BadLine):
            parsed.problems.append(f"{where}: not valid JSON ({value.reason})")
            continue
        for place, record, resource in _units(value, where):
            shape = record_shape(record) if format == "auto" else format
            result: Interaction | str | None
            if shape == "optiinfra":
                result = from_optiinfra(record, default_deployment)
            elif shape == "otel":
                result = from_otel_span(record, resource, default_deployment)
            elif shape == "langfuse":
                result = from_langfuse(record, default_deployment)
            else:
                result = "not an interaction record (see docs/quality.md for the formats)"
            if result == NO_CONTENT:
                parsed.without_content += 1
            elif isinstance(result, str):
                parsed.problems.append(f"{place}: {result}")
            elif result is not None:
                parsed.records.append(result)
    return parsed


def in_window(records: list[Interaction], start: datetime, end: datetime) -> list[Interaction]:
    """Records with ``start <= ts < end`` (each window scores only what is new to it)."""
    return [r for r in records if start <= r.ts < end]


def _unit_hash(record_id: str) -> float:
    digest = hashlib.sha256(record_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def sample(records: list[Interaction], rate: float, cap: int) -> list[Interaction]:
    """A deterministic sample: records whose id hashes below ``rate``, at most ``cap`` of
    them (the lowest hashes), so a retried run scores the same records."""
    kept = sorted((r for r in records if _unit_hash(r.id) < rate), key=lambda r: _unit_hash(r.id))
    return kept[:cap]


async def read_source(
    settings: QualityInteractions,
    client: httpx.AsyncClient,
    start: datetime,
    end: datetime,
    secret: SecretStr | None = None,
) -> tuple[str, str]:
    """(text, source name) of the configured file or URL; raises InteractionSourceError."""
    if settings.path is not None:
        path = Path(settings.path).expanduser()
        try:
            if path.stat().st_size > _MAX_BYTES:
                raise InteractionSourceError(f"interactions file {path} is larger than 256 MiB")
            return path.read_text(encoding="utf-8", errors="replace"), str(path)
        except OSError as exc:
            raise InteractionSourceError(
                f"cannot read interactions file {path}: {exc.strerror or exc}"
            ) from None
    assert settings.url is not None
    url = settings.url
    for name, moment in (("start", start), ("end", end)):
        iso = quote(moment.astimezone(UTC).isoformat().replace("+00:00", "Z"), safe="")
        url = url.replace("{" + name + "}", iso).replace("%7B" + name + "%7D", iso)
    auth: httpx.Auth | None = None
    headers: dict[str, str] = {}
    if secret is not None and settings.auth == "basic":
        user, sep, password = secret.get_secret_value().partition(":")
        if not sep:
            raise InteractionSourceError(
                "interactions credential for basic auth must be user:password"
            )
        auth = httpx.BasicAuth(user, password)
    elif secret is not None:
        headers["Authorization"] = f"Bearer {secret.get_secret_value()}"
    shown = settings.url.split("?")[0]
    try:
        response = await client.get(url, headers=headers, auth=auth)
    except httpx.HTTPError as exc:
        raise InteractionSourceError(
            f"interactions source {shown} unreachable: {type(exc).__name__}: {exc}"
        ) from None
    if response.status_code >= 400:
        raise InteractionSourceError(
            f"interactions source {shown} answered HTTP {response.status_code}"
        )
    return response.text, shown
