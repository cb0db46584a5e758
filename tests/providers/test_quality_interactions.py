"""Sampled interactions: the three record formats, the window, sampling, HTTP sources."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from optiinfra.config import ProviderConfig
from providers import CollectionContext
from providers.quality import QualityCollectionError, QualityProvider
from providers.quality.formats import Interaction
from providers.quality.interactions import parse_interactions, sample
from tests.providers.quality_standin import StandIn

END = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
START = END - timedelta(minutes=15)
CTX = CollectionContext(start=START, end=END)
INSIDE = START + timedelta(minutes=5)
BEFORE = START - timedelta(minutes=1)


def _ns(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1_000_000_000))


def _otlp_attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def _span(span_id: str, at: datetime, attrs: dict[str, Any], seconds: float = 0.8) -> dict:
    return {
        "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
        "spanId": span_id,
        "name": "chat llama",
        "kind": 3,
        "startTimeUnixNano": _ns(at),
        "endTimeUnixNano": _ns(at + timedelta(seconds=seconds)),
        "attributes": [_otlp_attr(k, v) for k, v in attrs.items()],
    }


def otlp_lines() -> str:
    """Two exports as the Collector's file exporter writes them (one per line)."""
    parts = lambda role, text: [{"role": role, "parts": [{"type": "text", "content": text}]}]  # noqa: E731
    first = {
        "resourceSpans": [
            {
                "resource": {"attributes": [_otlp_attr("optiinfra.deployment", "chat")]},
                "scopeSpans": [
                    {
                        "scope": {"name": "opentelemetry.instrumentation.openai_v2"},
                        "spans": [
                            _span(
                                "00f067aa0ba902b7",
                                INSIDE,
                                {
                                    "gen_ai.operation.name": "chat",
                                    "gen_ai.request.model": "llama",
                                    "gen_ai.input.messages": json.dumps(
                                        parts("user", "What is the capital of France?")
                                    ),
                                    "gen_ai.output.messages": json.dumps(
                                        parts("assistant", "The capital is Paris.")
                                    ),
                                    "gen_ai.usage.output_tokens": 5,
                                    "optiinfra.reference": "Paris",
                                    "optiinfra.config_id": "cfg-a",
                                },
                            ),
                            # an HTTP span of the same trace: not a model call, ignored
                            _span("1111111111111111", INSIDE, {"http.request.method": "POST"}),
                            # a GenAI span recorded with content capture off
                            _span("2222222222222222", INSIDE, {"gen_ai.request.model": "llama"}),
                        ],
                    }
                ],
            }
        ]
    }
    second = {
        "resourceSpans": [
            {
                "resource": {"attributes": []},
                "scopeSpans": [
                    {
                        "spans": [
                            # the deprecated attributes (semantic conventions before 1.37)
                            _span(
                                "3333333333333333",
                                INSIDE + timedelta(minutes=1),
                                {
                                    "gen_ai.request.model": "llama-3-8b",
                                    "gen_ai.prompt": "Symbol for gold?",
                                    "gen_ai.completion": json.dumps(
                                        [{"role": "assistant", "content": "Ag"}]
                                    ),
                                },
                            ),
                            # outside the window: collected by the previous run
                            _span(
                                "4444444444444444",
                                BEFORE,
                                {
                                    "gen_ai.request.model": "llama",
                                    "gen_ai.prompt.0.role": "user",
                                    "gen_ai.prompt.0.content": "Old question?",
                                    "gen_ai.completion.0.content": "Old answer.",
                                },
                            ),
                        ]
                    }
                ],
            }
        ]
    }
    return json.dumps(first) + "\n" + json.dumps(second) + "\n"


def sdk_span_json() -> str:
    """Two spans as the Python SDK's console exporter prints them (pretty, back to back)."""
    spans = []
    for index, at in enumerate((INSIDE, BEFORE)):
        spans.append(
            {
                "name": "chat llama",
                "context": {"trace_id": "0xabc", "span_id": f"0x{index:016x}", "trace_state": "[]"},
                "kind": "SpanKind.CLIENT",
                "start_time": at.isoformat().replace("+00:00", "Z"),
                "end_time": (at + timedelta(seconds=2)).isoformat().replace("+00:00", "Z"),
                "attributes": {
                    "gen_ai.request.model": "llama",
                    "gen_ai.input.messages": json.dumps(
                        [{"role": "user", "parts": [{"type": "text", "content": "2 plus 2?"}]}]
                    ),
                    "gen_ai.output.messages": json.dumps(
                        [{"role": "assistant", "parts": [{"type": "text", "content": "4"}]}]
                    ),
                },
                "events": [],
                "resource": {"attributes": {"optiinfra.deployment": "math"}, "schema_url": ""},
            }
        )
    return "\n".join(json.dumps(span, indent=4) for span in spans) + "\n"


def langfuse_page() -> str:
    """A page of Langfuse's public API (observations and a trace), as JSON."""
    generation = {
        "id": "obs-1",
        "traceId": "trace-1",
        "type": "GENERATION",
        "name": "answer",
        "startTime": INSIDE.isoformat(),
        "endTime": (INSIDE + timedelta(seconds=1.5)).isoformat(),
        "model": "llama-3.1-8b",
        "input": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Largest ocean?"},
        ],
        "output": {"role": "assistant", "content": "The Pacific Ocean"},
        "metadata": {"reference": "Pacific", "config_id": "cfg-b"},
    }
    span = {**generation, "id": "obs-2", "type": "SPAN"}
    trace = {
        "id": "trace-9",
        "timestamp": (INSIDE + timedelta(minutes=2)).isoformat(),
        "name": "support",
        "input": {"question": "Boiling point of water in C?"},
        "output": "100",
        "latency": 0.9,
        "metadata": {"deployment": "support-bot", "reference": "100"},
        "tags": [],
    }
    old_trace = {**trace, "id": "trace-0", "timestamp": BEFORE.isoformat()}
    page = {"data": [generation, span, trace, old_trace], "meta": {"page": 1, "totalItems": 4}}
    return json.dumps(page)


def native_lines() -> str:
    records = [
        {"id": "n1", "ts": INSIDE.isoformat(), "deployment": "chat", "prompt": "Q1?",
         "answer": "yes", "reference": "yes", "latency_seconds": 0.4},
        {"id": "n2", "ts": INSIDE.timestamp(), "prompt": [{"role": "user", "content": "Q2?"}],
         "answer": "maybe", "reference": "no"},
        {"id": "n3", "ts": END.isoformat(), "deployment": "chat", "prompt": "Q3?",
         "answer": "late", "reference": "late"},  # ts == end: belongs to the next window
    ]  # fmt: skip
    lines = [json.dumps(r) for r in records]
    lines.insert(1, '{"id": "broken", "ts": ')  # a torn line
    lines.append('{"id": "n4", "ts": "yesterday", "prompt": "Q", "answer": "A"}')
    return "\n".join(lines) + "\n"


def _by_id(records: list[Interaction]) -> dict[str, Interaction]:
    return {r.id: r for r in records}


def test_otel_genai_spans_from_otlp_json_lines() -> None:
    parsed = parse_interactions(otlp_lines(), "spans.jsonl")
    found = _by_id(parsed.records)
    assert set(found) == {"00f067aa0ba902b7", "3333333333333333", "4444444444444444"}
    chat = found["00f067aa0ba902b7"]
    assert (chat.deployment, chat.config_id, chat.reference) == ("chat", "cfg-a", "Paris")
    assert chat.prompt == "What is the capital of France?"
    assert chat.answer == "The capital is Paris."
    assert chat.ts == INSIDE and chat.latency_seconds == pytest.approx(0.8)
    legacy = found["3333333333333333"]
    assert (legacy.deployment, legacy.prompt, legacy.answer) == (
        "llama-3-8b",
        "Symbol for gold?",
        "Ag",
    )
    assert found["4444444444444444"].prompt == "Old question?"
    assert parsed.without_content == 1 and parsed.problems == []


def test_otel_spans_as_the_python_sdk_prints_them() -> None:
    parsed = parse_interactions(sdk_span_json(), "console.log", format="otel")
    assert [(r.deployment, r.prompt, r.answer) for r in parsed.records] == [
        ("math", "2 plus 2?", "4")
    ] * 2
    assert parsed.records[0].latency_seconds == pytest.approx(2.0)


def test_langfuse_generations_and_traces() -> None:
    parsed = parse_interactions(langfuse_page(), "langfuse.json", default_deployment=None)
    found = _by_id(parsed.records)
    assert set(found) == {"obs-1", "trace-9", "trace-0"}  # the SPAN observation is skipped
    generation = found["obs-1"]
    assert generation.deployment == "llama-3.1-8b"  # the model, when metadata names none
    assert generation.prompt == "Be brief.\nLargest ocean?"
    assert (generation.answer, generation.reference) == ("The Pacific Ocean", "Pacific")
    assert generation.config_id == "cfg-b" and generation.latency_seconds == pytest.approx(1.5)
    trace = found["trace-9"]
    assert (trace.deployment, trace.prompt, trace.answer) == (
        "support-bot",
        "Boiling point of water in C?",
        "100",
    )
    assert trace.latency_seconds == 0.9


def test_malformed_records_are_skipped_with_their_place() -> None:
    parsed = parse_interactions(native_lines(), "log.jsonl", default_deployment="default-dep")
    assert set(_by_id(parsed.records)) == {"n1", "n2", "n3"}
    assert _by_id(parsed.records)["n2"].deployment == "default-dep"
    assert len(parsed.problems) == 2
    assert parsed.problems[0].startswith("log.jsonl:2: not valid JSON")
    assert parsed.problems[1].startswith("log.jsonl:5: no ts")


def test_sampling_is_deterministic_and_capped() -> None:
    records = [
        Interaction(id=f"r{i}", ts=INSIDE, deployment="d", prompt="q", answer="a")
        for i in range(400)
    ]
    half = sample(records, 0.5, 10_000)
    assert 150 < len(half) < 250  # about half, by a hash of each id
    assert (
        sample(records, 0.5, 10_000) == half
        and sample(list(reversed(records)), 0.5, 10_000) == half
    )
    assert sample(records, 0.5, 20) == half[:20]
    assert sample(records, 0.0, 100) == [] and len(sample(records, 1.0, 1000)) == 400


def _config(interactions: dict[str, Any], **extra: Any) -> ProviderConfig:
    return ProviderConfig(
        name="traffic", kind="quality", quality={"interactions": interactions}, **extra
    )


async def _collect(config: ProviderConfig, environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    provider = QualityProvider(config, environ=environ or {})
    try:
        return await provider.collect_quality(CTX), provider.notes
    finally:
        await provider.aclose()


def test_a_file_source_yields_sampled_events_for_the_window_only(tmp_path: Path) -> None:
    path = tmp_path / "interactions.jsonl"
    path.write_text(otlp_lines() + native_lines(), encoding="utf-8")
    frame, notes = asyncio.run(_collect(_config({"path": str(path), "deployment": "fallback"})))
    assert isinstance(frame, pd.DataFrame)
    rows = frame.set_index("item_id")
    # in the window: the OTLP chat span, the legacy span, n1, n2 (not the old span, not n3);
    # the legacy span has no reference and there is no judge: nothing scores it
    assert set(rows.index) == {"00f067aa0ba902b7", "n1", "n2"}
    assert any("1 sampled interactions were not scored" in n for n in notes)
    assert set(frame.kind) == {"sampled"}
    assert rows.loc["00f067aa0ba902b7", "f1"] == pytest.approx(0.5)  # 1 of 3 tokens: P 1/3, R 1
    assert rows.loc["00f067aa0ba902b7", "exact_match"] == 0.0
    assert rows.loc["00f067aa0ba902b7", "config_id"] == "cfg-a"
    assert rows.loc["n1", "exact_match"] == 1.0 and rows.loc["n2", "exact_match"] == 0.0
    assert rows.loc["n1", "latency_seconds"] == 0.4
    assert rows.loc["n2", "deployment"] == "fallback"  # the record names none
    assert any("skipped 2 records" in n for n in notes)
    assert any("content capture is off" in n for n in notes)


def test_an_http_source_gets_the_window_and_the_credential(tmp_path: Path) -> None:
    async def main() -> tuple[pd.DataFrame, list[str], str, dict[str, str]]:
        files = {"/api/public/observations": ("application/json", langfuse_page())}
        async with StandIn(reply=lambda body: "", files=files) as server:
            url = server.root + "/api/public/observations?type=GENERATION&from={start}&to={end}"
            config = _config(
                {"url": url, "auth": "basic", "credential": "langfuse"},
                credentials={"langfuse": "LANGFUSE_KEYS"},
            )
            frame, notes = await _collect(config, {"LANGFUSE_KEYS": "pk-lf-1:sk-lf-2"})
            target, headers, _ = server.requests[0]
            return frame, notes, target, headers

    frame, notes, target, headers = asyncio.run(main())
    query = parse_qs(urlsplit(target).query)
    assert query["from"] == ["2026-11-24T11:45:00Z"] and query["to"] == ["2026-11-24T12:00:00Z"]
    assert headers["authorization"] == "Basic " + base64.b64encode(b"pk-lf-1:sk-lf-2").decode()
    assert set(frame.item_id) == {"obs-1", "trace-9"}
    assert all("sk-lf-2" not in note for note in notes)


def test_an_unreadable_source_fails_the_run_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(QualityCollectionError) as info:
        asyncio.run(_collect(_config({"path": str(missing)})))
    assert str(missing) in str(info.value) and "traffic" in str(info.value)
