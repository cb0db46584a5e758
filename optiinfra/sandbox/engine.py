"""A continuous-batching LLM engine, simulated in virtual time.

One :class:`EngineCore` is one inference server's scheduler. It follows the shape of
vLLM's V1 scheduler: every iteration has a token budget (``max_num_batched_tokens``);
running requests are served first (one decode token each, or the next chunk of their
prompt), then waiting requests are admitted in arrival order while the batch has room
(``max_num_seqs``), budget and KV-cache blocks. When a running request needs a new KV
block and none is free, the most recently admitted request is preempted: its blocks are
freed and it goes back to the head of the queue, to be recomputed later (vLLM V1
preempts by recomputation). Prompt blocks are published to the prefix cache
(:mod:`optiinfra.sandbox.kv`) as soon as they are computed, so a later request with the
same prefix skips them.

How long an iteration takes is not decided here but by a :class:`StepModel` (the GPU
roofline in :mod:`optiinfra.sandbox.perf`), with multiplicative log-normal jitter.

Time is virtual: :meth:`EngineCore.advance` runs every iteration that *ends* by a given
time. A server drives it with the wall clock, so its events happen in real time; a test
or a benchmark table comparison drives it as fast as the CPU allows.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from optiinfra.sandbox.kv import BlockPool
from optiinfra.sandbox.observations import EngineState, FinishedRequest, FinishReason, MetricsBook
from optiinfra.sandbox.spec import EngineArgs
from optiinfra.sandbox.truth import GroundTruth


class StepCostLike(Protocol):
    seconds: float
    sm_active: float
    tensor_active: float
    dram_active: float
    power_watts: float


class StepModel(Protocol):
    """How long one engine iteration takes on this server's GPUs."""

    kv_cache_tokens: int

    def step(
        self,
        prefill_tokens: int,
        decode_seqs: int,
        context_tokens: int,
        prefill_attended: int | None = None,
    ) -> StepCostLike:
        """One iteration: ``prefill_tokens`` prompt tokens plus one token for each of
        ``decode_seqs`` sequences holding ``context_tokens`` tokens of context in all;
        ``prefill_attended`` sums, over the prefill tokens, how many tokens each attends to
        (its position + 1), which differs from one fresh prompt for chunks and batches."""
        ...


@dataclass(eq=False, slots=True)
class SimRequest:
    """A request inside the engine. ``output_tokens`` is how many tokens it will produce
    (the server decides it from ``max_tokens``, ``min_tokens`` and the answer)."""

    request_id: str
    arrival: float
    prompt_tokens: int
    output_tokens: int
    max_tokens: int
    block_hashes: tuple[int, ...] = ()  # hashes of the prompt's full blocks, in order
    on_tokens: Callable[[SimRequest, int, float], None] | None = None
    on_finished: Callable[[SimRequest, FinishedRequest], None] | None = None
    # scheduler state
    target: int = 0  # tokens to compute before the next token is sampled
    computed: int = 0  # of those, computed (cached prefix included)
    generated: int = 0
    cached_tokens: int = 0
    private_blocks: int = 0
    held: list[int] = field(default_factory=list)  # cached block hashes referenced
    published: int = 0  # prompt blocks published to the cache
    first_scheduled: float | None = None
    first_token: float | None = None
    last_token: float = 0.0
    preemptions: int = 0
    finished: bool = False


@dataclass(slots=True)
class _Step:
    end: float
    seconds: float
    cost: StepCostLike
    prefill: list[tuple[SimRequest, int]]  # (request, tokens this step)
    decode: list[SimRequest]


class EngineCore:
    """The scheduler and clock of one simulated server."""

    def __init__(
        self,
        step_model: StepModel,
        args: EngineArgs,
        book: MetricsBook | None = None,
        *,
        seed: int = 0,
        noise: float = 0.0,
        block_size: int = 16,
        max_model_len: int | None = None,
        truth: GroundTruth | None = None,
    ) -> None:
        self.args = args
        self.step_model = step_model
        self.book = book
        self.noise = noise
        self.block_size = block_size
        self.max_model_len = max_model_len or args.max_model_len
        self.rng = random.Random(seed)
        self.pool = BlockPool(
            max(1, step_model.kv_cache_tokens // block_size), block_size, args.enable_prefix_caching
        )
        self.truth = truth or GroundTruth()
        self.clock = 0.0  # the engine is busy until this virtual time
        self.waiting: deque[SimRequest] = deque()
        self.running: list[SimRequest] = []
        self._pending: _Step | None = None
        self._sigma = math.sqrt(math.log(1 + noise**2)) if noise > 0 else 0.0

    # --- feeding -----------------------------------------------------------------------

    def submit(self, request: SimRequest) -> None:
        """Queue a request; it is admitted at the first iteration after its arrival."""
        request.target = request.prompt_tokens
        self.waiting.append(request)
        self.truth.arrived += 1

    @property
    def next_event_time(self) -> float | None:
        """When the iteration in flight ends (None when the engine is idle)."""
        return self._pending.end if self._pending is not None else None

    def fits(self, tokens: int) -> bool:
        """Whether a sequence of ``tokens`` can ever fit in the KV cache."""
        return self.pool.blocks_for(tokens) <= self.pool.num_blocks

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self._pending)

    def reconfigure(self, step_model: StepModel, args: EngineArgs) -> None:
        """Apply new engine arguments or hardware between iterations.

        The KV cache is resized to the new capacity; running requests that no longer fit
        are preempted (as a restart with the new settings would drop them).
        """
        self._commit_pending_now()
        self.step_model = step_model
        self.args = args
        self.pool.caching = args.enable_prefix_caching
        new_blocks = max(1, step_model.kv_cache_tokens // self.block_size)
        while self.running and self.pool.num_blocks - self.pool.free > new_blocks:
            self._preempt(self.running[-1])
        self.pool.resize(new_blocks)

    def abort_all(self, now: float, reason: str = "abort") -> int:
        """Drop every request (a spot interruption or shutdown); returns how many."""
        self._pending = None
        dropped = list(self.running) + list(self.waiting)
        for req in self.running:
            self._release(req)
        self.running.clear()
        self.waiting.clear()
        for req in dropped:
            self._finish(req, now, "abort")
        self.clock = max(self.clock, now)
        return len(dropped)

    # --- running -----------------------------------------------------------------------

    def advance(self, until: float) -> int:
        """Run every iteration that ends by ``until``; returns how many ran."""
        steps = 0
        while True:
            if self._pending is None:
                if not (self.running or self.waiting):
                    self.clock = max(self.clock, until) if not self.waiting else self.clock
                    break
                start = self.clock
                if not self.running:
                    start = max(start, self.waiting[0].arrival)
                if start > until:
                    break
                self._pending = self._schedule(start)
                if self._pending is None:  # nothing could be scheduled (no memory): idle
                    self.clock = until
                    break
            if self._pending.end > until:
                break
            self._commit(self._pending)
            self._pending = None
            steps += 1
        return steps

    def run_to_completion(self, limit: float = 1e9) -> float:
        """Advance until every request has finished (tests and table comparisons)."""
        while self.has_work and self.clock < limit:
            if self._pending is not None:
                self.advance(self._pending.end)
            elif self.waiting and not self.running:
                self.advance(max(self.clock, self.waiting[0].arrival))
            else:
                self.advance(self.clock)
                if self._pending is None and not self.running and not self.waiting:
                    break
                if self._pending is None:
                    raise RuntimeError("engine cannot schedule its waiting requests")
        return self.clock

    def state(self) -> EngineState:
        return EngineState(
            running=len(self.running),
            waiting=len(self.waiting),
            kv_cache_usage=self.pool.usage,
            kv_cache_blocks=self.pool.num_blocks,
            block_size=self.block_size,
            max_num_seqs=self.args.max_num_seqs,
            max_num_batched_tokens=self.args.max_num_batched_tokens,
            gpu_memory_utilization=self.args.gpu_memory_utilization,
        )

    # --- one iteration -----------------------------------------------------------------

    def _schedule(self, start: float) -> _Step | None:
        budget = self.args.max_num_batched_tokens
        pool = self.pool
        prefill: list[tuple[SimRequest, int]] = []
        decode: list[SimRequest] = []
        context = 0
        preempted = False
        i = 0
        while i < len(self.running) and budget > 0:
            req = self.running[i]
            remaining = req.target - req.computed
            decoding = remaining == 1 and req.generated > 0
            n = 1 if decoding else min(remaining, budget)
            need = pool.blocks_for(req.computed + n) - req.private_blocks - len(req.held)
            while need > 0 and not pool.allocate(need):
                victim = self.running[-1]
                self._preempt(victim)
                preempted = True
                if victim is req:
                    break
            if i >= len(self.running) or self.running[i] is not req:
                break  # req itself was preempted: it was the last one running
            if need > 0:
                req.private_blocks += need
            if decoding:
                decode.append(req)
                context += req.computed
            else:
                prefill.append((req, n))
            budget -= n
            i += 1
        # admit waiting requests (never by preempting running ones)
        while (
            self.waiting
            and not preempted
            and budget > 0
            and len(self.running) < self.args.max_num_seqs
            and self.waiting[0].arrival <= start
        ):
            req = self.waiting[0]
            if req.computed == 0 and not req.held and pool.caching and req.block_hashes:
                usable = min(len(req.block_hashes), (req.target - 1) // self.block_size)
                hit = pool.match_prefix(req.block_hashes[:usable])
            else:
                hit = 0
            remaining = req.target - hit * self.block_size
            n = min(remaining, budget)
            if not self.args.enable_chunked_prefill and n < remaining:
                break
            need = pool.blocks_for(hit * self.block_size + n) - hit
            hashes = req.block_hashes[:hit]
            if pool.free - pool.unreferenced(hashes) < need:
                break  # no room: wait for running requests to finish (no preemption)
            if hit:
                pool.reference(hashes)
                req.held.extend(hashes)
                req.published = hit
                req.computed = hit * self.block_size
            if req.first_scheduled is None:
                req.cached_tokens = req.computed
                if self.book is not None:
                    self.book.record_prefix_cache(req.prompt_tokens, req.computed)
            pool.allocate(need)
            req.private_blocks += need
            self.waiting.popleft()
            self.running.append(req)
            if req.first_scheduled is None:
                req.first_scheduled = start
            prefill.append((req, n))
            budget -= n
        if not prefill and not decode:
            return None
        prefill_tokens = 0
        attended = 0
        for r, n in prefill:
            prefill_tokens += n
            attended += n * r.computed + n * (n + 1) // 2
        cost = self.step_model.step(prefill_tokens, len(decode), context, attended)
        seconds = cost.seconds
        if self._sigma:
            seconds *= math.exp(self.rng.gauss(-0.5 * self._sigma**2, self._sigma))
        return _Step(start + seconds, seconds, cost, prefill, decode)

    def _commit(self, step: _Step) -> None:
        end = step.end
        self.clock = end
        self.truth.record_step(step.seconds, step.cost, end)
        if self.book is not None:
            prefilled = sum(n for _r, n in step.prefill)
            if prefilled:
                self.book.record_prefill(prefilled)
            if step.decode:
                self.book.record_decode_step(step.seconds, len(step.decode))
        done: list[SimRequest] = []
        for req, n in step.prefill:
            if req.finished:
                continue
            req.computed += n
            self._publish(req)
            if req.computed >= req.target:
                self._emit_token(req, end)
                if req.generated >= req.output_tokens:
                    done.append(req)
        for req in step.decode:
            if req.finished:
                continue
            req.computed += 1
            self._emit_token(req, end)
            if req.generated >= req.output_tokens:
                done.append(req)
        for req in done:
            self.running.remove(req)
            self._release(req)
            reason: FinishReason = "length" if req.generated >= req.max_tokens else "stop"
            self._finish(req, end, reason)

    def _emit_token(self, req: SimRequest, now: float) -> None:
        req.generated += 1
        req.target = req.computed + 1  # the next token needs one more computed token
        if req.first_token is None:
            req.first_token = now
        req.last_token = now
        if req.on_tokens is not None:
            req.on_tokens(req, 1, now)

    def _publish(self, req: SimRequest) -> None:
        """Full prompt blocks computed so far go to the prefix cache."""
        if not self.pool.caching or not req.block_hashes:
            return
        full = min(len(req.block_hashes), req.computed // self.block_size)
        if full > req.published:
            hashes = req.block_hashes[req.published : full]
            moved = self.pool.publish(hashes)
            req.private_blocks -= moved
            req.held.extend(hashes)
            req.published = full

    def _preempt(self, req: SimRequest) -> None:
        self.running.remove(req)
        self._release(req)
        req.preemptions += 1
        req.target = req.prompt_tokens + req.generated  # recompute prompt and output so far
        req.computed = 0
        self.waiting.appendleft(req)
        self.truth.preemptions += 1
        if self.book is not None:
            self.book.record_preemptions(1)

    def _release(self, req: SimRequest) -> None:
        self.pool.release_private(req.private_blocks)
        self.pool.dereference(req.held)
        req.private_blocks = 0
        req.held = []
        req.published = 0

    def _finish(self, req: SimRequest, now: float, reason: FinishReason) -> None:
        req.finished = True
        scheduled = req.first_scheduled if req.first_scheduled is not None else now
        first = req.first_token if req.first_token is not None else now
        record = FinishedRequest(
            prompt_tokens=req.prompt_tokens,
            generation_tokens=req.generated,
            max_tokens=req.max_tokens,
            finish_reason=reason,
            queue_seconds=scheduled - req.arrival,
            prefill_seconds=first - scheduled,
            decode_seconds=now - first,
            ttft_seconds=first - req.arrival,
            e2e_seconds=now - req.arrival,
            cached_prompt_tokens=req.cached_tokens,
        )
        self.truth.record_finished(record, now)
        if self.book is not None:
            self.book.record_finished(record)
        if req.on_finished is not None:
            req.on_finished(req, record)

    def _commit_pending_now(self) -> None:
        if self._pending is not None:
            self._commit(self._pending)
            self._pending = None


def prompt_block_hashes(words: Sequence[str], block_size: int = 16) -> tuple[int, ...]:
    """Chained hashes of a prompt's full blocks: equal prefixes give equal hashes."""
    hashes: list[int] = []
    parent = 0
    for i in range(0, len(words) - block_size + 1, block_size):
        parent = hash((parent, *words[i : i + block_size]))
        hashes.append(parent)
    return tuple(hashes)
