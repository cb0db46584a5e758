"""Reading one ``/metrics`` endpoint: fetch it, keep the mapped lines, parse them.

An engine's ``/metrics`` holds hundreds of families the mappings never use (``_created``
series, ``cache_config_info`` with forty labels, Python process metrics); parsing them
would cost most of a scrape's CPU. :func:`filter_exposition` keeps only the lines of
mapped names (a string test per line) and prometheus_client's parser reads the rest, so
escaping, label syntax and counter suffixes are handled the way Prometheus does.

Everything that can go wrong with one target — refused, timed out, HTTP error, too big,
not the Prometheus text format, no known metric — raises :class:`TargetError`, whose
message is the cause alone (the caller prefixes the URL).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families

from providers.prometheus.detect import exposed_names, mapping_of, source_of
from providers.prometheus.series import RawSeries

#: Ask for the classic text format (prometheus_client's parser reads it, not protobuf).
ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
#: An exposition larger than this is refused (a wrong URL serving a file, say).
MAX_BYTES = 32 * 1024 * 1024
_NAME = re.compile(r"[^{\s]+")


class TargetError(Exception):
    """One target could not be read; ``str()`` is the cause, for a note."""


@dataclass(frozen=True)
class Reading:
    """One scrape of one target: when it was read and the mapped samples it held."""

    at: datetime
    series: tuple[RawSeries, ...]
    sources: tuple[str, ...]
    seconds: float


def filter_exposition(text: str, names: frozenset[str]) -> str:
    """Only the comment and sample lines of ``names`` (the parser needs nothing else)."""
    kept: list[str] = []
    for line in text.splitlines():
        if not line:
            continue
        if line[0] == "#":
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("TYPE", "HELP") and parts[2] in names:
                kept.append(line)
            continue
        match = _NAME.match(line)
        if match is not None and match.group(0) in names:
            kept.append(line)
    return "\n".join(kept) + "\n" if kept else ""


def parse_exposition(text: str, sources: Iterable[str]) -> tuple[list[RawSeries], list[str]]:
    """Mapped samples of an exposition, and the tables they belong to (in table order).

    Raises :class:`TargetError` for text the parser rejects; NaN samples ("no
    observation yet") are dropped.
    """
    allowed = tuple(sources)
    filtered = filter_exposition(text, exposed_names(allowed))
    out: list[RawSeries] = []
    found: set[str] = set()
    try:
        for family in text_string_to_metric_families(filtered):
            for sample in family.samples:
                hit = mapping_of(sample.name, allowed)
                if hit is None or math.isnan(sample.value):
                    continue
                source, mapping = hit
                found.add(source)
                out.append(RawSeries(source, mapping, sample.name, sample.labels, sample.value))
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TargetError(f"not valid Prometheus text ({first[:200]})") from None
    return out, [s for s in allowed if s in found]


def describe_unknown(text: str, content_type: str) -> str:
    """Why an answer held no mapped metric, as precisely as the answer allows."""
    names = {m.group(0) for line in text.splitlines()[:2000] if line and line[0] != "#"
             if (m := _NAME.match(line)) is not None}  # fmt: skip
    if any(source_of(n) for n in names):
        return "no metric this collector maps (engine option excludes it, or a newer format)"
    kind = content_type.split(";")[0].strip() or "no content type"
    if kind not in ("text/plain", "application/openmetrics-text"):
        return f"answered {kind}, not the Prometheus text format (is this a /metrics URL?)"
    return "no vLLM, SGLang, TGI, DCGM or node_exporter metric in the answer"


async def fetch(client: httpx.AsyncClient, url: str, timeout: float) -> tuple[str, str]:
    """The body and content type of ``GET url``, within ``timeout`` seconds overall."""
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("GET", url, headers={"Accept": ACCEPT}) as response:
                if response.status_code != 200:
                    raise TargetError(f"HTTP {response.status_code} {response.reason_phrase}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_BYTES:
                        raise TargetError(f"answer larger than {MAX_BYTES // (1024 * 1024)} MiB")
                    chunks.append(chunk)
                content_type = response.headers.get("content-type", "")
    except TimeoutError:
        raise TargetError(f"timed out after {timeout:g} s") from None
    except httpx.TimeoutException:
        raise TargetError(f"timed out after {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise TargetError(_http_cause(exc)) from None
    return b"".join(chunks).decode("utf-8", "replace"), content_type


def _http_cause(exc: httpx.HTTPError) -> str:
    """A short cause: ``connection refused`` rather than a chain of wrappers."""
    inner: BaseException | None = exc
    while inner is not None:
        if isinstance(inner, ConnectionRefusedError):
            return "connection refused"
        if isinstance(inner, OSError) and inner.strerror:
            return inner.strerror.lower()
        inner = inner.__cause__ or inner.__context__
    text = str(exc).strip()
    if isinstance(exc, httpx.ConnectError) and "refused" in text.lower():
        return "connection refused"
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


async def read_target(
    client: httpx.AsyncClient, url: str, timeout: float, sources: Iterable[str]
) -> Reading:
    """Scrape and parse one target; :class:`TargetError` says why not."""
    started = time.perf_counter()
    text, content_type = await fetch(client, url, timeout)
    at = datetime.now(UTC)
    allowed = tuple(sources)
    series, found = parse_exposition(text, allowed)
    if not series:
        raise TargetError(describe_unknown(text, content_type))
    return Reading(at, tuple(series), tuple(found), time.perf_counter() - started)
