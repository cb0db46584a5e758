"""Replays a :class:`Schedule` against OpenAI-compatible servers, in real time.

One :class:`LoadGenerator` drives one deployment: it sends each scheduled request at
its arrival time to the deployment's replicas in turn (round-robin by request order),
as ``POST {base}/v1/completions`` (or ``{base}/completions`` when the base URL already
ends in ``/v1``) with::

    {"model": ..., "prompt": <N words>, "max_tokens": out, "min_tokens": out, "stream": false}

``min_tokens`` (vLLM's extension) pins the output length to the trace's, so the server
does the work the trace describes. With ``stream=True`` it asks for server-sent events
(and ``stream_options.include_usage``, for the usage figures), reads ``data: {...}``
lines up to ``data: [DONE]``, and times the first event carrying a choice: the
client-side time to first token.

It is an open-loop generator: arrivals do not wait for answers. At most
``concurrency`` requests are in flight. What happens to a request that comes due when
the bound is reached is ``on_saturation``:

- ``"drop"`` (default): it is not sent and is recorded with outcome ``dropped``. An
  overloaded server then shows up as drops rather than as an ever-growing client queue
  that would hide the overload in the latency figures.
- ``"queue"``: it waits in the client for a free slot; its ``sent_s - scheduled_s``
  (``lag_s``) then includes that wait.

Only ``max_keepalive`` (default 16) idle connections are kept open between requests:
httpcore looks at every pooled connection on each request, and with a pool of hundreds
that scan, not the network, becomes the bottleneck (measured on 2 cores against a
trivial local server: 500 requests/s at ~1.1 ms of client CPU each with 16, a collapse
into second-long queues at 400/s with 256). Connections beyond it are opened per
request, which costs little on a LAN or loopback.

The dispatcher sleeps until each arrival; when it falls behind (a busy event loop) it
sends at once, records the lateness in each record's ``lag_s`` and logs a warning at
most every 10 s while more than ``lag_warning_s`` behind.

Example::

    gen = LoadGenerator(["http://127.0.0.1:8001"], model="meta-llama/Llama-3.1-8B")
    result = await gen.run(schedule(LoadSpec(kind="poisson", rps=5), duration_s=60))
    result.summary().latency_p95_s
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

import httpx

from optiinfra.sandbox.load.prompts import PromptBuilder
from optiinfra.sandbox.load.records import LoadResult, RequestRecord
from optiinfra.sandbox.load.schedule import Schedule

logger = logging.getLogger(__name__)

_LAG_LOG_EVERY_S = 10.0
_MAX_SLEEP_S = 0.25  # how often a sleeping dispatcher looks at stop()
_ERROR_CHARS = 200


def completions_url(base_url: str) -> str:
    """The completions endpoint under an OpenAI-compatible base URL (with or without /v1)."""
    base = base_url.rstrip("/")
    return f"{base}/completions" if base.endswith("/v1") else f"{base}/v1/completions"


class LoadGenerator:
    """Sends one deployment's scheduled requests and records what happened to each."""

    def __init__(
        self,
        base_urls: Sequence[str] | str,
        model: str,
        *,
        concurrency: int = 256,
        on_saturation: Literal["drop", "queue"] = "drop",
        stream: bool = False,
        timeout_s: float = 60.0,
        prompts: PromptBuilder | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: dict[str, str] | None = None,
        on_record: Callable[[RequestRecord], None] | None = None,
        lag_warning_s: float = 1.0,
        max_keepalive: int = 16,
        keep_records: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if on_saturation not in ("drop", "queue"):
            raise ValueError(f"on_saturation must be 'drop' or 'queue', not {on_saturation!r}")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.model = model
        self.concurrency = concurrency
        self.on_saturation = on_saturation
        self.stream = stream
        self.timeout_s = timeout_s
        self.prompts = prompts or PromptBuilder()
        self.lag_warning_s = lag_warning_s
        self.max_keepalive = max(0, min(max_keepalive, concurrency))
        self.keep_records = keep_records
        self._transport = transport
        self._headers = dict(headers or {})
        self._on_record = on_record
        self._urls: list[str] = []
        self._next = 0  # round-robin position
        # State of the run in progress (one at a time).
        self._running = False
        self._stopping = False
        self._in_flight = 0
        self._start = 0.0  # loop.time() at the run's start
        self._last_lag_log = 0.0
        self._sink: TextIO | None = None
        self.set_base_urls(base_urls)

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered (or waiting for a slot, in queue mode)."""
        return self._in_flight

    def set_base_urls(self, base_urls: Sequence[str] | str) -> None:
        """Change the replicas (e.g. after a scale-out); later requests use the new list."""
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        self._urls = urls
        self._next = 0

    def stop(self) -> None:
        """Send nothing more; :meth:`run` returns once requests in flight have ended."""
        self._stopping = True

    async def run(self, plan: Schedule, *, jsonl_path: str | Path | None = None) -> LoadResult:
        """Play ``plan`` from now and return what happened to each request.

        Returns once ``plan.duration_s`` has passed (so that runs of consecutive windows
        tile) and every request sent has ended, or, after :meth:`stop`, once requests in
        flight have ended. With ``jsonl_path``, each record is written there as a JSON
        line when it is final (so in order of completion), even if the run is cancelled.
        With ``keep_records=False`` the result holds no records (for runs of hours: use
        ``on_record`` or the JSONL file instead).
        """
        if self._running:
            raise RuntimeError("this LoadGenerator is already running a schedule")
        self._running, self._stopping = True, False
        loop = asyncio.get_running_loop()
        started_at = datetime.now(UTC)
        self._start = loop.time()
        records: list[RequestRecord] = []
        tasks: set[asyncio.Task[None]] = set()
        slots = asyncio.Semaphore(self.concurrency)
        limits = httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.max_keepalive
        )
        client = httpx.AsyncClient(
            transport=self._transport,
            limits=limits,
            timeout=httpx.Timeout(self.timeout_s),
            headers=self._headers,
        )
        # Closed in the finally below (a with-block would not cover the whole method).
        sink = Path(jsonl_path).open("w", encoding="utf-8") if jsonl_path else None  # noqa: SIM115
        self._sink = sink
        self._last_lag_log = -_LAG_LOG_EVERY_S
        try:
            for i in range(len(plan)):
                if not await self._wait_until(float(plan.arrival_s[i])):
                    break
                record = self._dispatch(plan, i, client, slots, tasks)
                if self.keep_records:
                    records.append(record)
            await self._wait_until(plan.duration_s)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            await client.aclose()
            if self._sink is not None:
                self._sink.close()
                self._sink = None
            self._running = False
        return LoadResult(started_at, plan.duration_s, records, loop.time() - self._start)

    def _now(self) -> float:
        return asyncio.get_running_loop().time() - self._start

    async def _wait_until(self, at_s: float) -> bool:
        """Sleep until ``at_s`` s into the run; False when stop() came first."""
        while not self._stopping:
            delay = at_s - self._now()
            if delay <= 0:
                return True
            await asyncio.sleep(min(delay, _MAX_SLEEP_S))
        return False

    def _dispatch(
        self,
        plan: Schedule,
        i: int,
        client: httpx.AsyncClient,
        slots: asyncio.Semaphore,
        tasks: set[asyncio.Task[None]],
    ) -> RequestRecord:
        """Record request ``i`` and send it, or record it dropped."""
        scheduled = float(plan.arrival_s[i])
        now = self._now()
        if now - scheduled > self.lag_warning_s and now - self._last_lag_log >= _LAG_LOG_EVERY_S:
            self._last_lag_log = now
            logger.warning(
                "load generator is %.2f s behind its schedule (request %d of %d)",
                now - scheduled,
                i,
                len(plan),
            )
        record = RequestRecord(
            index=i,
            url="",
            scheduled_s=scheduled,
            prompt_words=self.prompts.words(int(plan.prompt_tokens[i])),
            max_tokens=int(plan.output_tokens[i]),
        )
        if self._in_flight >= self.concurrency and self.on_saturation == "drop":
            record.error = f"client at its concurrency bound ({self.concurrency})"
        elif not self._urls:
            record.error = "no replica to send to"
        else:
            record.url = self._urls[self._next % len(self._urls)]
            self._next += 1
            self._in_flight += 1
            task = asyncio.create_task(self._send(client, slots, record, plan))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            return record
        self._emit(record)
        return record

    async def _send(
        self,
        client: httpx.AsyncClient,
        slots: asyncio.Semaphore,
        record: RequestRecord,
        plan: Schedule,
    ) -> None:
        clock = self._now
        try:
            async with slots:
                body: dict[str, Any] = {
                    "model": self.model,
                    "prompt": self.prompts.for_request(plan, record.index),
                    "max_tokens": record.max_tokens,
                    "min_tokens": record.max_tokens,
                    "stream": self.stream,
                }
                if self.stream:
                    body["stream_options"] = {"include_usage": True}
                url = completions_url(record.url)
                record.sent_s = clock()
                try:
                    async with asyncio.timeout(self.timeout_s):
                        if self.stream:
                            await self._streamed(client, url, body, record, clock)
                        else:
                            await self._plain(client, url, body, record)
                except (TimeoutError, httpx.TimeoutException):
                    record.outcome = "timeout"
                    record.error = f"no complete answer within {self.timeout_s:g} s"
                except httpx.DecodingError as exc:
                    record.outcome = "invalid_response"
                    record.error = f"undecodable body: {exc}"[:_ERROR_CHARS]
                except httpx.HTTPError as exc:  # refused, reset, closed mid-answer
                    record.outcome = "connection_error"
                    record.error = f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]
                record.finished_s = clock()
        finally:
            self._in_flight -= 1
        self._emit(record)

    async def _plain(
        self, client: httpx.AsyncClient, url: str, body: dict[str, Any], record: RequestRecord
    ) -> None:
        response = await client.post(url, json=body)
        record.status = response.status_code
        if response.status_code >= 400:
            record.outcome = "http_error"
            record.error = response.text[:_ERROR_CHARS]
            return
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
            record.outcome = "invalid_response"
            record.error = f"not an OpenAI completion: {response.text[:_ERROR_CHARS]!r}"
            return
        _take_usage(record, payload.get("usage"))
        record.outcome = "ok"

    async def _streamed(
        self,
        client: httpx.AsyncClient,
        url: str,
        body: dict[str, Any],
        record: RequestRecord,
        clock: Callable[[], float],
    ) -> None:
        async with client.stream("POST", url, json=body) as response:
            record.status = response.status_code
            if response.status_code >= 400:
                await response.aread()
                record.outcome = "http_error"
                record.error = response.text[:_ERROR_CHARS]
                return
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments, event:/id: fields
                data = line[5:].strip()
                if data == "[DONE]":
                    record.outcome = "ok"
                    return
                try:
                    event = json.loads(data)
                except ValueError:
                    event = None
                if not isinstance(event, dict) or "error" in event:
                    record.outcome = "invalid_response"
                    record.error = f"bad stream event: {data[:_ERROR_CHARS]!r}"
                    return
                if record.first_token_s is None and event.get("choices"):
                    record.first_token_s = clock()
                _take_usage(record, event.get("usage"))
        record.outcome = "invalid_response"
        record.error = "stream ended without 'data: [DONE]'"

    def _emit(self, record: RequestRecord) -> None:
        if self._sink is not None:
            self._sink.write(json.dumps(record.to_dict(), separators=(",", ":")) + "\n")
        if self._on_record is not None:
            self._on_record(record)


def _take_usage(record: RequestRecord, usage: object) -> None:
    """Copy usage.prompt_tokens / completion_tokens when the server reported them."""
    if not isinstance(usage, dict):
        return
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(prompt, int):
        record.prompt_tokens = prompt
    if isinstance(completion, int):
        record.completion_tokens = completion
