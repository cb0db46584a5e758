"""Steady state of one continuous-batching replica at a request rate.

The approximations, stated once (``docs/capacity.md`` discusses their limits):

1. **Engine steps.** Every step carries the running decodes (one token each) and, while
   prompts wait, up to ``K = max_num_batched_tokens - N`` prompt tokens (vLLM's chunked
   prefill: decodes first, prefill fills the leftover budget). A prompt of ``P_new``
   uncached tokens needs ``P_new / K`` such "mixed" steps.
2. **Decode occupancy by Little's law.** In one second the replica runs
   ``lambda x P_new / K`` mixed steps of ``tau_mix`` each and fills the remaining time
   with pure decode steps of ``tau_dec(N)``; the mean inter-token latency is one over
   the steps per second, and the mean running batch solves ``N = lambda (O-1) ITL(N)``
   (fixed point by bisection). No solution with ``N`` within the KV/``max_num_seqs``
   limit means the rate is beyond capacity: saturated.
3. **Prompt queue as M/G/1.** Prompts are served first-come first-served by the mixed
   steps; a prompt's work is ``P_new / K x tau_mix`` and ``rho = lambda x work``. Mean
   wait is Pollaczek-Khinchine, ``rho/(1-rho) x work x (1 + cv^2)/2``, with ``cv`` the
   prompt-length coefficient of variation; the wait's quantiles use the usual
   exponential-tail form ``P(W > t) = rho exp(-t rho / E[W])``.
4. **Admission as M/M/c.** A request holds one of ``c`` sequence slots (``max_num_seqs``
   or what the KV cache holds, the smaller) for ``H = (O-1) x ITL``; the offered load is
   ``a = N``. Erlang C gives the probability of waiting for a slot and the exponential
   wait tail ``P(W > t) = C exp(-(c - a) t / H)``: TTFT rises steeply as the running
   batch nears the slot limit instead of jumping at it.
5. **Percentiles are composed conservatively.** TTFT_q = admission wait_q + prompt wait_q
   + own prefill_q (prompt lengths gamma-distributed with the workload's cv) + the step
   in progress; ITL p95 is
   a mixed step when more than 5% of steps carry prefill, else a decode step, at the
   95th percentile of a Poisson-distributed running batch.
6. **GPU busy** = mixed-step time share + the rest x P(at least one decode running),
   with the running count taken as Poisson.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import gamma

from optiinfra.capacity.memory import batched_tokens
from optiinfra.capacity.physics import Deployment, Efficiencies, decode_step_time, step_time
from optiinfra.capacity.records import MemoryFit, ServingConfig, Workload

_BISECT = 60


@dataclass(frozen=True)
class SteadyState:
    """Raw figures of one replica at one rate (no uncertainty)."""

    saturated: bool
    reason: str
    running_batch: float
    max_sequences: int
    itl_mean_s: float
    itl_p95_s: float
    ttft_p50_s: float
    ttft_p95_s: float
    busy: float
    prefill_rho: float


class Replica:
    """Step-time and queueing arithmetic for one config, workload and set of constants."""

    def __init__(
        self,
        dep: Deployment,
        eff: Efficiencies,
        config: ServingConfig,
        memory: MemoryFit,
        workload: Workload,
    ) -> None:
        self.dep, self.eff = dep, eff
        hit = workload.prefix_hit_ratio if config.enable_prefix_caching else 0.0
        self.prompt = workload.prompt_tokens
        self.cached = workload.prompt_tokens * hit
        self.new = max(workload.prompt_tokens - self.cached, 1.0)
        self.output = workload.output_tokens
        self.cv = workload.prompt_cv
        self.context = workload.prompt_tokens + workload.output_tokens / 2.0
        self.budget = float(batched_tokens(config))
        per_seq = workload.prompt_tokens + workload.output_tokens
        self.max_sequences = (
            min(config.max_num_seqs, int(memory.kv_capacity_tokens // per_seq))
            if memory.fits
            else 0
        )

    # -- step times ---------------------------------------------------------------------
    def tau_decode(self, n: float) -> float:
        return float(decode_step_time(self.dep, self.eff, max(n, 1.0), self.context))

    def tau_mixed(self, n: float, prompt_tokens: float) -> float:
        """A step with ``n`` decodes and ``prompt_tokens`` prompt tokens of one prompt."""
        attended = n * self.context + prompt_tokens * (self.cached + self.new / 2.0)
        return float(
            step_time(
                self.dep,
                self.eff,
                new_tokens=n + prompt_tokens,
                sequences=n + 1.0,
                attended_tokens=attended,
                cached_tokens=n * self.context + self.cached,
            )
        )

    def prefill_chunk(self, n: float) -> float:
        return max(self.budget - n, 1.0)

    def prefill_work(self, n: float) -> float:
        """Step time a prompt occupies in the prompt queue (token share of full steps)."""
        k = self.prefill_chunk(n)
        return self.new / k * self.tau_mixed(n, k)

    def itl_mean(self, rate: float, n: float) -> float:
        k = self.prefill_chunk(n)
        mixed_steps = rate * self.new / k
        mixed_time = rate * self.prefill_work(n)
        if mixed_time >= 1.0:
            return math.inf
        steps = mixed_steps + (1.0 - mixed_time) / self.tau_decode(n)
        return 1.0 / steps

    # -- steady state -------------------------------------------------------------------
    def running_batch(self, rate: float) -> float | None:
        """Mean decoding sequences at ``rate``; None when none within the limit exists."""
        if rate == 0.0:
            return 0.0
        decode_tokens = rate * max(self.output - 1.0, 0.0)

        def excess(n: float) -> float:
            return decode_tokens * self.itl_mean(rate, n) - n

        top = float(self.max_sequences)
        if excess(top) > 0.0:
            return None
        low, high = 0.0, top
        for _ in range(_BISECT):
            mid = (low + high) / 2.0
            if excess(mid) > 0.0:
                low = mid
            else:
                high = mid
            if high - low < 1e-3 * max(top, 1.0):
                break
        return high

    def steady_state(self, rate: float) -> SteadyState:
        if self.max_sequences < 1:
            return _saturated("does not fit in GPU memory", self.max_sequences)
        n = self.running_batch(rate)
        if n is None:
            return _saturated(
                "the decode batch this rate needs exceeds max_num_seqs / KV-cache capacity "
                f"({self.max_sequences} sequences)",
                self.max_sequences,
            )
        work = self.prefill_work(n)
        rho = rate * work
        if rho >= 1.0:
            return _saturated("prefill demand exceeds the step budget", self.max_sequences)
        itl = self.itl_mean(rate, n)
        k = self.prefill_chunk(n)
        mixed_share = rate * self.new / k * itl  # fraction of steps that carry a prompt
        n95 = min(float(self.max_sequences), n + 1.645 * math.sqrt(n))
        if mixed_share > 0.05:
            itl95 = self.tau_mixed(n95, min(self.new, self.prefill_chunk(n95)))
        else:
            itl95 = self.tau_decode(n95)
        itl95 = max(itl95, itl)
        own = max(work, self.tau_mixed(n, min(self.new, k)))
        wait_mean = rho / (1.0 - rho) * work * (1.0 + self.cv**2) / 2.0 if rho > 0 else 0.0
        in_progress = (1.0 - math.exp(-n)) * self.tau_decode(n)
        slots = float(self.max_sequences)
        holding = max(self.output - 1.0, 1.0) * itl
        blocked = erlang_c(self.max_sequences, n) if rate > 0 else 0.0
        ttft = {}
        for q in (0.5, 0.95):
            wait_q = 0.0
            if rho > 1.0 - q and wait_mean > 0.0:
                wait_q = wait_mean / rho * math.log(rho / (1.0 - q))
            admit_q = 0.0
            if blocked > 1.0 - q:
                admit_q = math.log(blocked / (1.0 - q)) * holding / max(slots - n, 1e-9)
            ttft[q] = admit_q + wait_q + own * _prompt_quantile(q, self.cv) + in_progress * q
        busy = rho + (1.0 - rho) * (1.0 - math.exp(-n))
        return SteadyState(
            saturated=False,
            reason="",
            running_batch=n,
            max_sequences=self.max_sequences,
            itl_mean_s=itl if rate > 0 else self.tau_decode(1.0),
            itl_p95_s=itl95,
            ttft_p50_s=ttft[0.5],
            ttft_p95_s=ttft[0.95],
            busy=min(busy, 1.0),
            prefill_rho=rho,
        )

    def capacity(self) -> float:
        """The largest rate that does not saturate (requests/s), by bisection."""
        if self.max_sequences < 1:
            return 0.0
        high = 1.0 / self.prefill_work(0.0)
        while not self.steady_state(high).saturated:
            high *= 2.0
        low = 0.0
        for _ in range(_BISECT):
            mid = (low + high) / 2.0
            if self.steady_state(mid).saturated:
                high = mid
            else:
                low = mid
            if high - low < 1e-3 * high:
                break
        return low


def erlang_c(servers: int, load: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with offered load ``load``
    (Erlang B by its stable recursion, then converted); 1 when ``load >= servers``."""
    if load <= 0.0:
        return 0.0
    if load >= servers:
        return 1.0
    b = 1.0
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
    return b / (1.0 - load / servers * (1.0 - b))


def _prompt_quantile(q: float, cv: float) -> float:
    """Quantile of a mean-1 gamma with coefficient of variation ``cv`` (1 when cv=0)."""
    if cv <= 1e-6:
        return 1.0
    shape = 1.0 / cv**2
    return float(gamma.ppf(q, shape, scale=1.0 / shape))


def _saturated(reason: str, max_sequences: int) -> SteadyState:
    return SteadyState(
        saturated=True,
        reason=reason,
        running_batch=float(max_sequences),
        max_sequences=max_sequences,
        itl_mean_s=math.inf,
        itl_p95_s=math.inf,
        ttft_p50_s=math.inf,
        ttft_p95_s=math.inf,
        busy=1.0,
        prefill_rho=1.0,
    )
