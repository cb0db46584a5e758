"""The simulated engine's scheduler: batching, queueing, KV pressure, prefix caching.

These tests drive :class:`EngineCore` in virtual time with a plain linear step model,
so they check the scheduler's behaviour, not the GPU roofline (tested in test_perf).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from optiinfra.sandbox.engine import EngineCore, SimRequest, prompt_block_hashes
from optiinfra.sandbox.kv import BlockPool
from optiinfra.sandbox.spec import EngineArgs


@dataclass
class Cost:
    seconds: float
    sm_active: float = 0.5
    tensor_active: float = 0.4
    dram_active: float = 0.6
    power_watts: float = 300.0


class LinearSteps:
    """5 ms per step, plus 0.1 ms per prefill token and 0.2 ms per decoding sequence."""

    def __init__(self, kv_cache_tokens: int = 1 << 20) -> None:
        self.kv_cache_tokens = kv_cache_tokens

    def step(
        self, prefill_tokens: int, decode_seqs: int, context_tokens: int, attended: int = 0
    ) -> Cost:
        return Cost(0.005 + 1e-4 * prefill_tokens + 2e-4 * decode_seqs + 1e-8 * context_tokens)


def run(
    arrivals: list[float],
    *,
    prompt: int = 200,
    output: int = 50,
    kv_tokens: int = 1 << 20,
    shared_prefix: bool = False,
    **args: object,
) -> EngineCore:
    engine = EngineCore(LinearSteps(kv_tokens), EngineArgs(**args))  # type: ignore[arg-type]
    for i, t in enumerate(arrivals):
        words = [f"w{j}" if shared_prefix else f"r{i}w{j}" for j in range(prompt)]
        engine.submit(
            SimRequest(f"r{i}", t, prompt, output, output, block_hashes=prompt_block_hashes(words))
        )
    engine.run_to_completion()
    return engine


def test_every_request_finishes_with_the_tokens_it_asked_for() -> None:
    engine = run([i * 0.05 for i in range(40)])
    summary = engine.truth.summary(engine.clock)
    assert summary["finished"] == 40
    assert summary["generation_tokens"] == 40 * 50
    assert engine.pool.free == engine.pool.num_blocks  # every block came back


def test_more_offered_load_means_more_queueing_and_a_slower_first_token() -> None:
    light = run([i * 0.5 for i in range(40)], max_num_seqs=8)
    heavy = run([i * 0.01 for i in range(40)], max_num_seqs=8)
    light_s = light.truth.summary(light.clock)
    heavy_s = heavy.truth.summary(heavy.clock)
    assert heavy_s["queue_seconds"]["p95"] > 10 * max(light_s["queue_seconds"]["p95"], 1e-3)
    assert heavy_s["ttft_seconds"]["p50"] > light_s["ttft_seconds"]["p50"]


def test_batch_never_exceeds_max_num_seqs() -> None:
    seen: list[int] = []
    engine = EngineCore(LinearSteps(), EngineArgs(max_num_seqs=4))
    for i in range(20):
        engine.submit(SimRequest(f"r{i}", 0.0, 100, 30, 30))
    now = 0.0
    while engine.has_work:
        now += 0.01
        engine.advance(now)
        seen.append(len(engine.running))
    assert max(seen) == 4


def test_kv_pressure_preempts_and_ample_cache_does_not() -> None:
    arrivals = [i * 0.01 for i in range(64)]
    tight = run(arrivals, prompt=400, output=200, kv_tokens=16 * 300, max_num_seqs=64)
    ample = run(arrivals, prompt=400, output=200, kv_tokens=16 * 10_000, max_num_seqs=64)
    assert tight.truth.preemptions > 0
    assert ample.truth.preemptions == 0
    assert tight.truth.finished == ample.truth.finished == 64  # preempted work is redone
    assert tight.pool.free == tight.pool.num_blocks


def test_prefix_cache_hits_shared_prompts_only_when_enabled() -> None:
    arrivals = [i * 0.2 for i in range(10)]
    cached = run(arrivals, prompt=800, shared_prefix=True, enable_prefix_caching=True)
    uncached = run(arrivals, prompt=800, shared_prefix=True, enable_prefix_caching=False)
    distinct = run(arrivals, prompt=800, shared_prefix=False, enable_prefix_caching=True)
    assert cached.truth.cached_prompt_tokens >= 9 * 784  # all but the first reuse 49 blocks
    assert uncached.truth.cached_prompt_tokens == 0
    assert distinct.truth.cached_prompt_tokens == 0
    hit = cached.truth.summary(cached.clock)["ttft_seconds"]["p50"]
    miss = uncached.truth.summary(uncached.clock)["ttft_seconds"]["p50"]
    assert hit < miss


def test_long_prompts_are_prefilled_in_chunks_of_the_token_budget() -> None:
    steps: list[int] = []

    class Recording(LinearSteps):
        def step(
            self, prefill_tokens: int, decode_seqs: int, context_tokens: int, attended: int = 0
        ) -> Cost:
            steps.append(prefill_tokens)
            return super().step(prefill_tokens, decode_seqs, context_tokens)

    engine = EngineCore(Recording(), EngineArgs(max_num_batched_tokens=1000))
    engine.submit(SimRequest("long", 0.0, 3500, 5, 5))
    engine.run_to_completion()
    assert steps[:4] == [1000, 1000, 1000, 500]


def test_reconfigure_to_a_smaller_cache_preempts_what_no_longer_fits() -> None:
    engine = EngineCore(LinearSteps(16 * 1000), EngineArgs(max_num_seqs=32))
    for i in range(32):
        engine.submit(SimRequest(f"r{i}", 0.0, 300, 400, 400))
    engine.advance(1.0)
    assert engine.pool.usage > 0.5
    engine.reconfigure(LinearSteps(16 * 200), EngineArgs(max_num_seqs=32))
    assert engine.truth.preemptions > 0
    assert engine.pool.num_blocks == 200
    engine.run_to_completion()
    assert engine.truth.finished == 32


def test_abort_all_finishes_everything_as_aborted() -> None:
    engine = EngineCore(LinearSteps(), EngineArgs())
    finished: list[str] = []
    for i in range(5):
        engine.submit(
            SimRequest(
                f"r{i}",
                0.0,
                100,
                100,
                100,
                on_finished=lambda _r, rec: finished.append(rec.finish_reason),
            )
        )
    engine.advance(0.05)
    assert engine.abort_all(0.05) == 5
    assert finished == ["abort"] * 5
    assert not engine.has_work
    assert engine.pool.free == engine.pool.num_blocks


def test_block_pool_evicts_least_recently_used_cached_blocks() -> None:
    pool = BlockPool(4, caching=True)
    assert pool.allocate(2)
    pool.publish([1, 2])  # the two private blocks become cached blocks 1 and 2
    pool.dereference([1, 2])  # unreferenced but still cached
    assert pool.free == 4 and pool.match_prefix([1, 2]) == 2
    assert pool.allocate(3)  # needs one cached block's space: evicts 1 (oldest)
    assert pool.match_prefix([1, 2]) == 0 and pool.match_prefix([2]) == 1
    assert not pool.allocate(2)
    with pytest.raises(ValueError):
        pool.resize(2)
