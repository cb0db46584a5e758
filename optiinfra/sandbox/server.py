"""One simulated inference server: an engine, its /metrics, its GPUs and its HTTP face.

A :class:`SimServer` is one replica of a deployment. It answers the OpenAI-compatible
endpoints by submitting the request to its :class:`~optiinfra.sandbox.engine.EngineCore`
and replying when the engine, driven by the event loop's clock, has produced the tokens;
``/metrics`` is the imitated engine's exposition; ``/admin/config`` reads and changes
its configuration (what the sandbox actuator and a canary use) and ``/admin/truth``
tells what it really served. Its GPUs are exposed in DCGM-exporter format on a second
port when the deployment asks for it.

Tokens are whitespace-separated words: the load generator builds prompts of N words for
N tokens, and shared prefixes hash to shared KV blocks.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from optiinfra.catalog import gpu_spec, model_spec
from optiinfra.sandbox import openai_api
from optiinfra.sandbox.checks import changed_spec
from optiinfra.sandbox.engine import EngineCore, SimRequest, prompt_block_hashes
from optiinfra.sandbox.exposition import gpu_book, metrics_book
from optiinfra.sandbox.gpus import gpu_readings
from optiinfra.sandbox.http import HTTPError, Request, Response
from optiinfra.sandbox.observations import FinishedRequest, MetricsBook
from optiinfra.sandbox.perf import StepTimeModel
from optiinfra.sandbox.quality import QualityModel
from optiinfra.sandbox.spec import DeploymentSpec

SANDBOX_NOTICE = "OptiInfra sandbox: a simulated inference server, not a real GPU"
SANDBOX_HEADER = "x-optiinfra-sandbox"
#: Which configuration answered (quality probes label their events with it, so a canary
#: replica's answers are told apart from its baseline's).
CONFIG_ID_HEADER = "x-optiinfra-config-id"
_FILLER = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "was",
    "on",
    "be",
    "by",
    "this",
    "are",
    "at",
    "from",
    "or",
    "an",
    "have",
    "not",
    "which",
    "but",
    "all",
    "were",
    "when",
    "we",
    "there",
    "can",
    "been",
    "has",
    "more",
    "if",
    "will",
    "one",
    "so",
    "would",
]
QUALITY_PROMPT_CHARS = 4000  # longer prompts are never looked up in the question set
_MEAN_FREE_OUTPUT = 160  # mean output length when a client sets no min_tokens


class QualityTally:
    """How many bundled questions this server answered, and how many correctly."""

    def __init__(self) -> None:
        self.answered = 0
        self.correct = 0

    def record(self, answer: Any) -> None:
        if answer.correct is None:
            return
        self.answered += 1
        self.correct += bool(answer.correct)

    def summary(self) -> dict[str, Any]:
        accuracy = self.correct / self.answered if self.answered else None
        return {"answered": self.answered, "correct": self.correct, "accuracy": accuracy}


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    deployment: str
    replica: int
    hostname: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.deployment}-{self.replica}"


@functools.lru_cache(maxsize=1024)
def config_id(spec: DeploymentSpec) -> str:
    """A short stable id of what changes behaviour (model, GPU, engine arguments).

    Cached per spec (specs are frozen): every response carries it in a header."""
    key = f"{spec.model}|{spec.gpu}|{spec.engine}|{spec.engine_args.model_dump_json()}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class SimServer:
    """One replica. Create, then :meth:`attach` to a running event loop."""

    def __init__(
        self, spec: DeploymentSpec, identity: ServerIdentity, *, noise: float, quality: QualityModel
    ) -> None:
        self.identity = identity
        self.noise = noise
        self.quality = quality
        self.rng = random.Random(identity.seed)
        self.spec = spec
        self.started_at = time.time()
        self.state = "running"  # running | interrupted | stopped
        self.port: int | None = None
        self.dcgm_port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ids = itertools.count()
        self.book = _book_for(spec)
        self.gpu_book = gpu_book()
        self.perf = StepTimeModel(gpu_spec(spec.gpu), model_spec(spec.model), spec.engine_args)
        self.engine = EngineCore(
            self.perf,
            spec.engine_args,
            self.book,
            seed=identity.seed,
            noise=noise,
            max_model_len=spec.engine_args.max_model_len or model_spec(spec.model).max_context,
        )
        self.energy_offset_mj = self.rng.uniform(1e9, 5e9)
        self.quality_truth = QualityTally()
        self.attached_at = 0.0

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def config_id(self) -> str:
        return config_id(self.spec)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.engine.clock = loop.time()
        self.attached_at = loop.time()

    # --- driving the engine with the loop's clock --------------------------------------

    def _kick(self) -> None:
        if self._timer is None and self._loop is not None:
            self._timer = self._loop.call_soon(self._drive)  # type: ignore[assignment]

    def _drive(self) -> None:
        assert self._loop is not None
        self._timer = None
        self.engine.advance(self._loop.time())
        pending = self.engine.next_event_time
        if pending is not None:
            self._timer = self._loop.call_at(pending, self._drive)

    def now(self) -> float:
        return self._loop.time() if self._loop is not None else self.engine.clock

    # --- configuration -----------------------------------------------------------------

    def apply(self, spec: DeploymentSpec) -> None:
        """Run this replica with ``spec`` from now on (checked by
        :func:`~optiinfra.sandbox.checks.changed_spec`). Like a real engine restarted with
        new arguments, its /metrics counters start again from zero when the metrics'
        settings change."""
        perf = StepTimeModel(gpu_spec(spec.gpu), model_spec(spec.model), spec.engine_args)
        if _book_options(spec) != _book_options(self.spec):
            self.book = _book_for(spec)
            self.engine.book = self.book
        self.engine.advance(self.now())
        self.engine.reconfigure(perf, spec.engine_args)
        self.perf = perf
        self.spec = spec
        self._kick()

    def describe(self) -> dict[str, Any]:
        return {
            "sandbox": True,
            "notice": SANDBOX_NOTICE,
            "name": self.name,
            "deployment": self.identity.deployment,
            "replica": self.identity.replica,
            "state": self.state,
            "port": self.port,
            "dcgm_port": self.dcgm_port,
            "config_id": self.config_id,
            "kv_cache_tokens": self.perf.kv_cache_tokens,
            "spec": self.spec.model_dump(mode="json"),
        }

    # --- requests ----------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        """Answer one request; every response says it comes from a sandbox."""
        try:
            response = await self._route(request)
        except HTTPError as exc:
            response = Response.json(exc.payload or {"error": exc.message}, exc.status)
        response.headers[SANDBOX_HEADER] = "simulated"
        response.headers[CONFIG_ID_HEADER] = self.config_id
        return response

    async def _route(self, request: Request) -> Response:
        path, method = request.path, request.method
        if path == "/metrics" and method == "GET":
            self.engine.advance(self.now())
            self.book.set_state(self.engine.state())
            text = f"# {SANDBOX_NOTICE} ({self.name})\n" + self.book.render()
            return Response.text(text, self.book.content_type)
        if path in ("/v1/completions", "/v1/chat/completions") and method == "POST":
            kind = "completion" if path == "/v1/completions" else "chat"
            return await self._complete(request, kind)  # type: ignore[arg-type]
        if path == "/v1/models" and method == "GET":
            return Response.json(
                {
                    "object": "list",
                    "data": [
                        {"id": self.spec.model, "object": "model", "owned_by": "optiinfra-sandbox"}
                    ],
                }
            )
        if path in ("/health", "/ping") and method == "GET":
            return Response(200, b"")
        if path == "/version" and method == "GET":
            return Response.json({"version": "sandbox", "notice": SANDBOX_NOTICE})
        if path == "/admin/config":
            if method == "GET":
                return Response.json(self.describe())
            if method in ("PATCH", "PUT", "POST"):
                self.apply(changed_spec(self.spec, request.json()))
                return Response.json(self.describe())
        if path == "/admin/truth" and method == "GET":
            seconds = request.seconds("window")
            self.engine.advance(self.now())
            summary = self.engine.truth.summary(self.now(), seconds)
            summary.update(
                {
                    "sandbox": True,
                    "server": self.name,
                    "config_id": self.config_id,
                    "quality": self.quality_truth.summary(),
                }
            )
            return Response.json(summary)
        raise HTTPError(404, f"no route {method} {path} on sandbox server {self.name}")

    async def dcgm(self, request: Request) -> Response:
        if request.path != "/metrics":
            raise HTTPError(404, f"no route {request.path} on the DCGM exporter of {self.name}")
        self.engine.advance(self.now())
        readings = gpu_readings(self, self.now())
        text = f"# {SANDBOX_NOTICE} ({self.name})\n" + self.gpu_book.render(readings)
        response = Response.text(text, self.gpu_book.content_type)
        response.headers[SANDBOX_HEADER] = "simulated"
        return response

    async def _complete(self, request: Request, kind: str) -> Response:
        call = openai_api.parse_call(request.json(), kind, f"cmpl-{uuid.uuid4().hex}")  # type: ignore[arg-type]
        if call.model != self.spec.model:
            raise openai_api.error(
                404, f"The model `{call.model}` does not exist.", "NotFoundError"
            )
        if self.state != "running":
            raise openai_api.error(
                503, f"server {self.name} is {self.state}", "ServiceUnavailableError"
            )
        words = call.prompt.split()
        prompt_tokens = max(1, len(words))
        limit = self.engine.max_model_len or 1 << 30
        max_tokens = call.max_tokens if call.max_tokens is not None else limit - prompt_tokens
        if prompt_tokens + max_tokens > limit:
            raise openai_api.error(
                400,
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, "
                f"{max_tokens} in the completion). Please reduce the length of the messages or "
                "completion.",
            )
        if not self.engine.fits(prompt_tokens + max_tokens):
            raise openai_api.error(
                400,
                f"prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) exceeds the "
                f"KV cache of {self.name} ({self.perf.kv_cache_tokens} tokens)",
            )
        # Bundled questions are short: a long prompt is load, not a probe, and scanning it
        # would cost milliseconds of the event loop (sandbox_bench).
        answer = (
            self.quality.answer(call.prompt, self.spec, self.rng)
            if len(call.prompt) <= QUALITY_PROMPT_CHARS
            else None
        )
        if answer is not None:
            answer_words = answer.text.split()
            out = max(len(answer_words), call.min_tokens, 1)
            self.quality_truth.record(answer)
        else:
            answer_words = []
            drawn = 1 + int(self.rng.expovariate(1 / _MEAN_FREE_OUTPUT))
            out = max(call.min_tokens, drawn)
        out = min(out, max_tokens)
        text_words = (answer_words + _filler(out))[:out] if answer_words else _filler(out)
        hashes = prompt_block_hashes(words, self.engine.block_size) if words else ()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[FinishedRequest] = loop.create_future()
        stream: asyncio.Queue[int | None] | None = asyncio.Queue() if call.stream else None

        def finished(_req: SimRequest, record: FinishedRequest) -> None:
            if not done.done():
                done.set_result(record)
            if stream is not None:
                stream.put_nowait(None)

        def tokens(_req: SimRequest, count: int, _at: float) -> None:
            assert stream is not None
            stream.put_nowait(count)

        sim = SimRequest(
            request_id=call.request_id,
            arrival=loop.time(),
            prompt_tokens=prompt_tokens,
            output_tokens=out,
            max_tokens=max_tokens,
            block_hashes=hashes,
            on_tokens=tokens if stream is not None else None,
            on_finished=finished,
        )
        self.engine.submit(sim)
        self._kick()
        if stream is None:
            record = await done
            return self._full(call, record, text_words)
        return Response(
            200,
            content_type="text/event-stream",
            stream=self._stream(call, stream, done, text_words),
        )

    def _full(
        self, call: openai_api.CompletionCall, record: FinishedRequest, words: list[str]
    ) -> Response:
        if record.finish_reason == "abort":
            raise openai_api.error(
                503,
                f"request aborted: server {self.name} was interrupted",
                "ServiceUnavailableError",
            )
        text = " ".join(words[: record.generation_tokens])
        body = openai_api.full_response(
            call,
            text,
            record.finish_reason,
            openai_api.usage(
                record.prompt_tokens, record.generation_tokens, record.cached_prompt_tokens
            ),
        )
        return Response.json(body)

    async def _stream(
        self,
        call: openai_api.CompletionCall,
        queue: asyncio.Queue[int | None],
        done: asyncio.Future[FinishedRequest],
        words: list[str],
    ) -> AsyncIterator[bytes]:
        sent = 0
        while True:
            item = await queue.get()
            if item is None:
                break
            chunk = " ".join(words[sent : sent + item])
            yield openai_api.stream_chunk(call, (" " if sent else "") + chunk, first=sent == 0)
            sent += item
        record = done.result()
        yield openai_api.stream_chunk(call, "", finish_reason=record.finish_reason)
        if call.include_usage:
            yield openai_api.stream_chunk(
                call,
                "",
                usage_body=openai_api.usage(
                    record.prompt_tokens, record.generation_tokens, record.cached_prompt_tokens
                ),
            )
        yield openai_api.STREAM_DONE

    # --- lifecycle ---------------------------------------------------------------------

    def interrupt(self) -> int:
        """A spot interruption: every request is aborted and the server stops answering."""
        self.state = "interrupted"
        return self.engine.abort_all(self.now())

    def restart(self) -> None:
        self.state = "running"
        self.started_at = time.time()


def _book_for(spec: DeploymentSpec) -> MetricsBook:
    """The /metrics book of the engine a deployment imitates, with its settings."""
    engine, model, options = _book_options(spec)
    return metrics_book(engine, model_name=model, **dict(options))


def _book_options(spec: DeploymentSpec) -> tuple[str, str, tuple[tuple[str, Any], ...]]:
    """What a metrics book is built from (a change of any of it rebuilds the book)."""
    args = spec.engine_args
    context = args.max_model_len or model_spec(spec.model).max_context
    options: dict[str, Any] = {
        "vllm": {
            "max_model_len": context,
            "enable_prefix_caching": args.enable_prefix_caching,
            "kv_cache_dtype": args.kv_cache_dtype,
        },
        "sglang": {
            "tensor_parallel_size": args.tensor_parallel_size,
            "pipeline_parallel_size": args.pipeline_parallel_size,
            "context_len": context,
        },
        "tgi": {"max_input_tokens": context - 1, "max_total_tokens": context},
    }[spec.engine]
    return spec.engine, spec.model, tuple(sorted(options.items()))


def _filler(count: int) -> list[str]:
    n = len(_FILLER)
    return [_FILLER[i % n] for i in range(count)]
