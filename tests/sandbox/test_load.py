"""Schedules honour the LoadSpec, prompts share what the trace shares, and the generator
records what a real HTTP server did to each request."""

from __future__ import annotations

import asyncio
import json
import math
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from optiinfra.sandbox.load import (
    LoadGenerator,
    PromptBuilder,
    Schedule,
    ScheduleError,
    completions_url,
    expected_requests,
    schedule,
    trace_period_s,
)
from optiinfra.sandbox.spec import LoadSpec
from optiinfra.sandbox.traces import load_trace

# ---------------------------------------------------------------- schedules


def _trace(name: str = "azure-conv", **kw: float) -> LoadSpec:
    return LoadSpec(kind="trace", trace=name, **kw)


def test_no_load_and_zero_rate_give_no_requests() -> None:
    assert len(schedule(LoadSpec(), 100.0)) == 0
    assert len(schedule(LoadSpec(kind="poisson", rps=0), 100.0)) == 0
    assert len(schedule(_trace(), 0.0)) == 0


def test_a_runaway_schedule_is_refused_with_a_reason() -> None:
    with pytest.raises(ScheduleError, match="time_scale"):
        schedule(_trace(time_scale=1000), 86_400.0)
    with pytest.raises(ScheduleError, match="duration_s"):
        schedule(LoadSpec(kind="poisson"), float("inf"))
    assert expected_requests(LoadSpec(kind="diurnal", rps=2), 100.0) == 200.0


def test_time_scale_plays_the_trace_faster_with_the_same_requests() -> None:
    trace = load_trace("azure-code")
    plan = schedule(_trace("azure-code", time_scale=10), trace_period_s(trace, 10), seed=3)
    assert len(plan) == len(trace)
    np.testing.assert_allclose(plan.arrival_s, trace.arrival_s / 10)
    assert np.array_equal(plan.prompt_tokens, trace.prompt_tokens)


def test_the_trace_loops_when_the_duration_exceeds_it() -> None:
    trace = load_trace("azure-code")
    period = trace_period_s(trace, 20)
    plan = schedule(_trace("azure-code", time_scale=20), 2.5 * period)
    in_first_half = int(np.sum(trace.arrival_s / 20 < 0.5 * period))
    assert len(plan) == 2 * len(trace) + in_first_half
    second = plan.arrival_s[len(trace) : 2 * len(trace)]
    np.testing.assert_allclose(second, trace.arrival_s / 20 + period)


def _within(count: int, expected: float, variance: float) -> bool:
    return abs(count - expected) <= 5 * math.sqrt(variance)


@pytest.mark.parametrize("rate_scale", [0.25, 1.0, 2.5])
def test_rate_scale_thins_or_superposes_arrivals(rate_scale: float) -> None:
    trace = load_trace("azure-conv")
    n, period = len(trace), trace_period_s(trace, 50)
    plan = schedule(_trace(rate_scale=rate_scale, time_scale=50), 2 * period, seed=11)
    fraction = rate_scale % 1
    # Over whole periods each full copy contributes exactly n per loop; the thinned copy
    # a binomial count.
    expected = 2 * n * rate_scale
    assert _within(len(plan), expected, 2 * n * fraction * (1 - fraction) + 1e-9)
    assert np.all(np.diff(plan.arrival_s) >= 0)
    if rate_scale > 1:  # the shifted copies do not arrive in lockstep with copy 0
        assert len(np.unique(plan.arrival_s)) > 0.9 * len(plan)


def test_mooncake_repetitions_get_fresh_block_ids() -> None:
    trace = load_trace("mooncake")
    period = trace_period_s(trace, 100)
    plan = schedule(_trace("mooncake", time_scale=100), 2 * period)
    first, second = plan[0], plan[len(trace)]
    assert first.prefix_blocks == tuple(trace.blocks(0).tolist())
    assert second.prefix_blocks is not None and first.prefix_blocks is not None
    assert set(first.prefix_blocks).isdisjoint(second.prefix_blocks)
    stride = trace.max_block_id + 1
    assert second.prefix_blocks[0] % stride == first.prefix_blocks[0]


def test_poisson_recovers_rate_and_mean_lengths() -> None:
    spec = LoadSpec(kind="poisson", rps=50, prompt_tokens=800, output_tokens=100)
    plan = schedule(spec, 400.0, seed=5)
    assert _within(len(plan), 20_000, 20_000)
    gaps = np.diff(plan.arrival_s)
    assert 0.95 < gaps.std() / gaps.mean() < 1.05  # exponential gaps: CV 1
    assert plan.prompt_tokens.mean() == pytest.approx(800, rel=0.03)
    assert plan.output_tokens.mean() == pytest.approx(100, rel=0.03)
    assert plan.prompt_tokens.min() >= 1 and plan.output_tokens.min() >= 1
    assert plan.arrival_s.min() >= 0 and plan.arrival_s.max() < 400


@pytest.mark.parametrize("ratio", [1.0, 4.0, 10.0])
def test_diurnal_recovers_mean_rate_and_peak_to_trough(ratio: float) -> None:
    spec = LoadSpec(kind="diurnal", rps=40, peak_to_trough=ratio, day_seconds=1000)
    plan = schedule(spec, 2000.0, seed=8)
    assert _within(len(plan), 80_000, 80_000)
    # For arrivals with density ∝ 1 - a cos(2πt/D) over whole days, E[cos] = -a/2.
    a = -2 * float(np.mean(np.cos(2 * np.pi * plan.arrival_s / 1000)))
    assert (1 + a) / (1 - a) == pytest.approx(ratio, rel=0.08)
    quiet = np.sum((plan.arrival_s % 1000 < 50) | (plan.arrival_s % 1000 >= 950))
    busy = np.sum(np.abs(plan.arrival_s % 1000 - 500) < 50)
    assert busy >= quiet * (0.8 * ratio if ratio > 1 else 0.8)


@pytest.mark.parametrize(
    "spec",
    [_trace("mooncake", rate_scale=1.7, time_scale=30), LoadSpec(kind="diurnal", rps=5)],
)
def test_same_seed_same_schedule(spec: LoadSpec) -> None:
    one, two, other = (schedule(spec, 600.0, seed=s) for s in (1, 1, 2))
    assert np.array_equal(one.arrival_s, two.arrival_s)
    assert np.array_equal(one.prompt_tokens, two.prompt_tokens)
    assert [one[i] for i in range(50)] == [two[i] for i in range(50)]
    assert not np.array_equal(one.arrival_s, other.arrival_s)
    pinned = spec.model_copy(update={"seed": 9})
    assert np.array_equal(
        schedule(pinned, 600.0, 1).arrival_s, schedule(pinned, 600.0, 2).arrival_s
    )


# ---------------------------------------------------------------- prompts


def test_prompts_have_exactly_the_requested_words_up_to_the_cap() -> None:
    builder = PromptBuilder(max_words=2000)
    assert len(builder.build(1, 0).split()) == 1
    assert len(builder.build(1234, 7, [3, 4, 5]).split()) == 1234
    assert len(builder.build(1300, 7, [3]).split()) == 1300  # blocks, then own words
    assert len(builder.build(5000, 7, [3]).split()) == 2000
    assert builder.words(5000) == 2000


def test_shared_blocks_share_words_and_nothing_else_is_shared() -> None:
    builder = PromptBuilder()
    a = builder.build(1000, 1, [0, 7]).split()
    b = builder.build(700, 2, [0, 9]).split()
    c = builder.build(300, 3, [0]).split()
    assert a[:512] == b[:512]
    assert a[512] != b[512]
    assert c == a[:300]  # a shorter last block is the start of the same block
    assert len(set(builder.build(50, 1).split()) & set(builder.build(50, 2).split())) == 0
    assert builder.build(900, 5, [0, 7]) == builder.build(900, 5, [0, 7])


def test_mooncake_requests_with_shared_hash_ids_share_their_word_prefix() -> None:
    trace = load_trace("mooncake")
    plan = schedule(_trace("mooncake"), 60.0)
    builder = PromptBuilder()
    checked = 0
    for i in range(1, min(len(plan), 200)):
        blocks_i, blocks_0 = plan.prefix_blocks(i), plan.prefix_blocks(0)
        shared = 0
        while shared < min(len(blocks_i), len(blocks_0)) and blocks_i[shared] == blocks_0[shared]:
            shared += 1
        words_i = builder.for_request(plan, i).split()
        words_0 = builder.for_request(plan, 0).split()
        assert len(words_i) == min(int(trace.prompt_tokens[plan.trace_row[i]]), 32_768)
        full = min(shared * 512, len(words_i), len(words_0))
        assert words_i[:full] == words_0[:full]
        if shared < min(len(blocks_i), len(blocks_0)):  # the first differing block differs
            assert words_i[shared * 512] != words_0[shared * 512]
        checked += shared > 0
    assert checked > 10


# ---------------------------------------------------------------- generator


@dataclass
class Server:
    """A tiny OpenAI-compatible server whose behaviour is picked by the model name."""

    delay_s: float = 0.0
    active: int = 0
    peak: int = 0
    bodies: list[dict] = field(default_factory=list)
    ports: Counter = field(default_factory=Counter)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        self.ports[request.scope["server"][1]] += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            return await self._answer(body)
        finally:
            self.active -= 1

    async def _answer(self, body: dict) -> Response:
        model, words = body["model"], len(body["prompt"].split())
        usage = {"prompt_tokens": words, "completion_tokens": body["max_tokens"]}
        if model == "fail":
            return PlainTextResponse("engine exploded", status_code=500)
        if model == "hang":
            await asyncio.wait_for(self.release.wait(), 10)
        if model == "garbage":
            return PlainTextResponse("hello")
        if body["stream"]:
            return StreamingResponse(self._events(body, usage), media_type="text/event-stream")
        await asyncio.sleep(self.delay_s)
        choice = {"index": 0, "text": " w" * body["max_tokens"], "finish_reason": "length"}
        return JSONResponse({"object": "text_completion", "choices": [choice], "usage": usage})

    async def _events(self, body: dict, usage: dict) -> AsyncIterator[bytes]:
        await asyncio.sleep(0.2)  # before the first token
        for _ in range(body["max_tokens"]):
            chunk = {"choices": [{"index": 0, "text": " w", "finish_reason": None}]}
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            await asyncio.sleep(0.05)
        if body.get("stream_options", {}).get("include_usage"):
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode()
        if body["model"] != "no-done":
            yield b"data: [DONE]\n\n"


def _bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def serving(app_state: Server, sockets: int = 1) -> AsyncIterator[list[str]]:
    app = Starlette(routes=[Route("/v1/completions", app_state.completions, methods=["POST"])])
    socks = [_bound_socket() for _ in range(sockets)]
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=socks))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield [f"http://127.0.0.1:{s.getsockname()[1]}" for s in socks]
    finally:
        app_state.release.set()
        server.should_exit = True
        await task
        for s in socks:
            s.close()


def _plan(
    count: int, spacing_s: float = 0.0, prompt: int = 20, output: int = 3, duration_s: float = 0.0
) -> Schedule:
    arrival = np.arange(count, dtype=np.float64) * spacing_s
    prompts = np.full(count, prompt, dtype=np.int64)
    outputs = np.full(count, output, dtype=np.int64)
    return Schedule("poisson", max(duration_s, count * spacing_s), 0, arrival, prompts, outputs)


def test_generator_records_usage_and_round_robins_replicas(tmp_path: Path) -> None:
    async def main() -> tuple:
        state = Server()
        async with serving(state, sockets=2) as urls:
            urls[1] += "/v1"  # a base URL that already names /v1 works too
            gen = LoadGenerator(urls, model="m", concurrency=8)
            result = await gen.run(
                _plan(6, 0.01, prompt=37, output=4), jsonl_path=tmp_path / "r.jsonl"
            )
        return state, result, urls

    state, result, urls = asyncio.run(main())
    assert [r.outcome for r in result.records] == ["ok"] * 6
    assert [r.url for r in result.records] == [urls[0], urls[1]] * 3
    assert sorted(state.ports.values()) == [3, 3]
    for r in result.records:
        assert (r.prompt_tokens, r.completion_tokens, r.status) == (37, 4, 200)
        assert r.sent_s is not None and r.finished_s is not None and r.sent_s <= r.finished_s
        assert r.first_token_s is None
    body = state.bodies[0]
    assert body["max_tokens"] == body["min_tokens"] == 4 and body["stream"] is False
    summary = result.summary()
    assert (summary.requests, summary.ok, summary.ok_rate) == (6, 6, 1.0)
    assert summary.prompt_tokens == 6 * 37 and summary.latency_p50_s is not None
    frame = result.to_frame()
    assert len(frame) == 6 and {"latency_s", "lag_s", "outcome"} <= set(frame.columns)
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert [json.loads(line)["completion_tokens"] for line in lines] == [4] * 6


def test_streaming_measures_ttft_and_reads_usage_from_the_last_event() -> None:
    async def main():
        async with serving(Server()) as urls:
            return await LoadGenerator(urls, model="m", stream=True).run(_plan(3, output=3))

    result = asyncio.run(main())
    for r in result.records:
        assert r.outcome == "ok" and r.completion_tokens == 3 and r.prompt_tokens == 20
        # The server waits 0.2 s before the first token and 0.05 s after each token.
        assert r.ttft_s is not None and r.ttft_s >= 0.2
        assert r.finished_s - r.first_token_s >= 0.1
    assert result.summary().ttft_p50_s >= 0.2


@pytest.mark.parametrize(
    ("model", "stream", "outcome", "status"),
    [
        ("fail", False, "http_error", 500),
        ("fail", True, "http_error", 500),
        ("hang", False, "timeout", None),
        ("garbage", False, "invalid_response", 200),
        ("no-done", True, "invalid_response", 200),
    ],
)
def test_failures_get_their_outcome(model: str, stream: bool, outcome: str, status: int) -> None:
    async def main():
        async with serving(Server()) as urls:
            gen = LoadGenerator(urls, model=model, stream=stream, timeout_s=0.5)
            return await gen.run(_plan(2, output=1))

    records = asyncio.run(main()).records
    assert [(r.outcome, r.status) for r in records] == [(outcome, status)] * 2
    assert all(r.error for r in records)


def test_a_closed_port_is_a_connection_error() -> None:
    sock = _bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()  # nothing listens there now
    result = asyncio.run(LoadGenerator(url, model="m").run(_plan(2)))
    assert [r.outcome for r in result.records] == ["connection_error"] * 2
    assert result.summary().ok_rate == 0.0


@pytest.mark.parametrize("mode", ["drop", "queue"])
def test_the_concurrency_bound_holds(mode: str) -> None:
    async def main():
        state = Server(delay_s=0.2)
        async with serving(state) as urls:
            gen = LoadGenerator(urls, model="m", concurrency=4, on_saturation=mode)
            return state, await gen.run(_plan(12))

    state, result = asyncio.run(main())
    outcomes = Counter(r.outcome for r in result.records)
    assert state.peak == 4
    if mode == "drop":
        assert outcomes == {"ok": 4, "dropped": 8}
        assert all(r.sent_s is None for r in result.records if r.outcome == "dropped")
    else:
        assert outcomes == {"ok": 12}
        assert max(r.lag_s for r in result.records) >= 0.2 * 2  # the last 4 waited 2 rounds


def test_stop_ends_the_run_early_and_the_transport_is_injectable() -> None:
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"choices": [], "usage": {"completion_tokens": 1}})

    gen = LoadGenerator(
        "http://replica:9",
        model="m",
        transport=httpx.MockTransport(answer),
        on_record=lambda r: gen.stop() if r.index == 2 else None,
    )
    result = asyncio.run(gen.run(_plan(500, 0.02)))
    assert 3 <= len(result.records) < 500
    assert seen[0] == completions_url("http://replica:9") == "http://replica:9/v1/completions"


def test_records_can_stream_to_jsonl_only_and_the_run_lasts_the_plan(tmp_path: Path) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"choices": [{"text": "x"}], "usage": None})

    gen = LoadGenerator(
        ["http://a", "http://b"],
        model="m",
        transport=httpx.MockTransport(answer),
        keep_records=False,
    )
    plan = _plan(5, duration_s=0.3)
    result = asyncio.run(gen.run(plan, jsonl_path=tmp_path / "out.jsonl"))
    assert result.records == [] and result.summary().requests == 0
    assert result.duration_s >= plan.duration_s  # windows played back to back tile
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(row["index"] for row in rows) == [0, 1, 2, 3, 4]
    assert {row["outcome"] for row in rows} == {"ok"}
    assert {row["completion_tokens"] for row in rows} == {None}  # no usage reported
