"""When each request of one deployment arrives, and how long it is.

:func:`schedule` turns a :class:`~optiinfra.sandbox.spec.LoadSpec` into a
:class:`Schedule`: columns of arrival offsets (seconds from the start of the run, sorted),
prompt and output token counts, and for Mooncake the prefix block ids of each request.
It is deterministic for a seed (``load.seed`` when set, else the ``seed`` argument).

How each kind is built:

``trace``
    The trace's arrival offsets are divided by ``time_scale`` (10 plays ten times
    faster). The trace repeats with period ``(span + span / (n - 1)) / time_scale``: its
    span plus one mean gap, so a loop's first request does not land on the previous
    loop's last. ``rate_scale`` = ``k + f`` (``k`` whole, ``0 <= f < 1``) superposes
    ``k`` full copies of the looping trace and one more copy of which each request is
    kept with probability ``f`` (independently per request and per loop). Copy 0 is the
    trace as published; every other copy is shifted in time by a uniform random fraction
    of the period, so copies do not arrive in lockstep. Hence ``rate_scale=0.25`` keeps
    a random quarter of the requests, ``rate_scale=2.5`` plays two full copies and a
    half-thinned third, and the mean rate is always ``rate_scale x`` the trace's.
    Token counts are the trace's, raised to at least 1 (an engine refuses
    ``max_tokens=0``). Mooncake prefix block ids are renumbered per (copy, loop), so
    repetitions look like new conversations with the same sharing structure rather than
    replays a prefix cache would serve from memory; copy 0's first loop keeps the
    published ids.
``poisson``
    A homogeneous Poisson process at ``rps``: the count over the duration is Poisson,
    the times uniform. Prompt and output lengths are independent log-normal draws with
    means ``prompt_tokens`` and ``output_tokens`` and log-space standard deviation
    :data:`LENGTH_SIGMA` (coefficient of variation ~0.53), rounded, at least 1.
``diurnal``
    A non-homogeneous Poisson process with rate
    ``rps * (1 - a * cos(2 pi t / day_seconds))``, ``a = (p - 1) / (p + 1)`` for
    ``p = peak_to_trough``: mean ``rps`` over a day, quietest at ``t = 0`` (the run
    starts at night), busiest half a day later, instantaneous peak / trough ratio
    exactly ``p`` (averaged over the busiest and quietest 24th of a day, the ratio is a
    little lower: 3.98 for ``p = 4``). It is sampled by thinning a Poisson process at
    the peak rate. Lengths as for poisson.
``none``
    No requests.

A trace load with a ``cycle`` (:class:`~optiinfra.sandbox.spec.DailyCycle`) is built as
above at ``rate_scale``, then each request is kept with probability
:func:`cycle_factor` at its wall-clock time ``start_epoch + arrival_s`` (UTC seconds):
the published trace's burstiness and lengths, at a volume that follows the hour of day
and the day of week. ``start_epoch`` is when the schedule's second 0 is; a history for
past hours and a live run therefore offer the same load for the same hour.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from optiinfra.errors import OptiInfraError
from optiinfra.sandbox.spec import DailyCycle, LoadSpec
from optiinfra.sandbox.traces import Trace, load_trace

#: Log-space standard deviation of synthetic prompt/output lengths (log-normal).
LENGTH_SIGMA = 0.5

#: Most requests one schedule may hold (~240 MB of columns); more is a typo in the spec
#: (a ``time_scale`` of 1000 over a day) or a job for consecutive shorter windows.
MAX_REQUESTS = 10_000_000


class ScheduleError(OptiInfraError):
    """A load spec and duration that cannot be scheduled (bad duration, far too many requests)."""


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One scheduled request: when it arrives (s from the run's start) and its shape."""

    index: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    prefix_blocks: tuple[int, ...] | None = None


@dataclass(frozen=True, eq=False)
class Schedule:
    """The requests of one deployment over ``duration_s``, as sorted columns.

    Index ``i`` is the request's identity within the schedule (prompts use it for their
    unique words). ``trace_row``/``block_shift`` locate Mooncake prefix blocks: request
    ``i``'s blocks are ``trace.blocks(trace_row[i]) + block_shift[i]``.
    """

    kind: str
    duration_s: float
    seed: int
    arrival_s: np.ndarray  # float64, ascending
    prompt_tokens: np.ndarray  # int64, >= 1
    output_tokens: np.ndarray  # int64, >= 1
    trace: Trace | None = None
    trace_row: np.ndarray | None = None  # int64
    block_shift: np.ndarray | None = None  # int64

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    def __getitem__(self, i: int) -> TraceRequest:
        blocks = self.prefix_blocks(i)
        return TraceRequest(
            index=i,
            arrival_s=float(self.arrival_s[i]),
            prompt_tokens=int(self.prompt_tokens[i]),
            output_tokens=int(self.output_tokens[i]),
            prefix_blocks=None if blocks is None else tuple(blocks.tolist()),
        )

    def __iter__(self) -> Iterator[TraceRequest]:
        return (self[i] for i in range(len(self)))

    @property
    def offered_rps(self) -> float:
        """Mean requests per second over the schedule's duration."""
        return len(self) / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def has_blocks(self) -> bool:
        return self.trace is not None and self.trace.has_blocks

    def prefix_blocks(self, i: int) -> np.ndarray | None:
        """Prefix block ids of request ``i`` (renumbered per copy and loop), or None."""
        if self.trace is None or self.trace_row is None or self.block_shift is None:
            return None
        blocks = self.trace.blocks(int(self.trace_row[i]))
        if blocks is None:
            return None
        return blocks + self.block_shift[i]

    def subset(self, keep: np.ndarray) -> Schedule:
        """The requests where ``keep`` (a boolean mask) is true, in the same order."""
        return Schedule(
            self.kind,
            self.duration_s,
            self.seed,
            self.arrival_s[keep],
            self.prompt_tokens[keep],
            self.output_tokens[keep],
            self.trace,
            None if self.trace_row is None else self.trace_row[keep],
            None if self.block_shift is None else self.block_shift[keep],
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per request: arrival_s, prompt_tokens, output_tokens."""
        return pd.DataFrame(
            {
                "arrival_s": self.arrival_s,
                "prompt_tokens": self.prompt_tokens,
                "output_tokens": self.output_tokens,
            }
        )


def schedule(
    load: LoadSpec, duration_s: float, seed: int = 0, *, start_epoch: float = 0.0
) -> Schedule:
    """The requests ``load`` offers one deployment over ``[0, duration_s)`` seconds,
    second 0 being the UTC epoch time ``start_epoch`` (only a ``cycle`` reads it)."""
    if not math.isfinite(duration_s) or duration_s < 0:
        raise ScheduleError(f"duration_s must be a finite number >= 0, not {duration_s!r}")
    _check_size(load, duration_s)
    used_seed = load.seed if load.seed is not None else seed
    rng = np.random.default_rng(used_seed)
    if load.kind == "trace":
        plan = _trace_schedule(load, duration_s, used_seed, rng)
        if load.cycle is not None and len(plan):
            keep = rng.random(len(plan)) < cycle_factor(load.cycle, start_epoch + plan.arrival_s)
            plan = plan.subset(keep)
        return plan
    if load.kind in ("poisson", "diurnal") and load.rps > 0 and duration_s > 0:
        if load.kind == "poisson":
            times = _poisson_times(rng, load.rps, duration_s)
        else:
            times = _diurnal_times(rng, load, duration_s)
        prompt = _lognormal_lengths(rng, load.prompt_tokens, times.size)
        output = _lognormal_lengths(rng, load.output_tokens, times.size)
        return Schedule(load.kind, duration_s, used_seed, times, prompt, output)
    empty_f, empty_i = np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
    return Schedule(load.kind, duration_s, used_seed, empty_f, empty_i, empty_i.copy())


def cycle_factor(cycle: DailyCycle, epoch_s: np.ndarray | float) -> np.ndarray:
    """The cycle's factor (0, 1] at UTC epoch second(s) ``epoch_s``."""
    t = np.asarray(epoch_s, dtype=np.float64)
    a = (cycle.peak_to_trough - 1.0) / (cycle.peak_to_trough + 1.0)
    hour = np.mod(t, 86400.0) / 3600.0
    shape = (1.0 + a * np.cos(2.0 * np.pi * (hour - cycle.peak_hour_utc) / 24.0)) / (1.0 + a)
    # 1970-01-01 was a Thursday: day 0 -> weekday 3 (Monday = 0).
    day = np.floor(t / 86400.0)
    weekday = np.mod(day + 3.0, 7.0)
    factor = shape * np.where(weekday >= 5.0, cycle.weekend_factor, 1.0)
    if cycle.day_jitter > 0:
        factor = factor * (1.0 - cycle.day_jitter * _day_uniform(day))
    return factor


def _day_uniform(day: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random number in [0, 1) per day index (a multiplicative hash), so
    any span of hours sees the same level for the same day."""
    key = (day.astype(np.int64) * 2654435761 + 97) % (1 << 32)
    key = (key ^ (key >> 16)) * 73244475 % (1 << 32)
    return (key ^ (key >> 16)).astype(np.float64) / float(1 << 32)


def trace_period_s(trace: Trace, time_scale: float = 1.0) -> float:
    """Seconds after which a replayed trace starts over (span plus one mean gap)."""
    n = len(trace)
    span = trace.span_s
    period = span + span / (n - 1) if n > 1 and span > 0 else max(span, 1.0)
    return period / time_scale


def diurnal_rate(load: LoadSpec, t: np.ndarray | float) -> np.ndarray | float:
    """The diurnal profile's instantaneous rate (requests/s) at time(s) ``t``."""
    a = (load.peak_to_trough - 1.0) / (load.peak_to_trough + 1.0)
    return load.rps * (1.0 - a * np.cos(2.0 * np.pi * np.asarray(t) / load.day_seconds))


def _trace_schedule(
    load: LoadSpec, duration_s: float, seed: int, rng: np.random.Generator
) -> Schedule:
    trace = load_trace(load.trace)
    period = trace_period_s(trace, load.time_scale)
    base = trace.arrival_s / load.time_scale
    n_loops = math.ceil(duration_s / period) if duration_s > 0 else 0
    whole = math.floor(load.rate_scale)
    fraction = load.rate_scale - whole
    copies = [1.0] * whole + ([fraction] if fraction > 1e-12 else [])
    shifts = [0.0] + [float(rng.uniform(0.0, period)) for _ in copies[1:]]
    block_stride = trace.max_block_id + 1
    times, rows, groups = [], [], []
    rows_all = np.arange(len(trace), dtype=np.int64)
    for c, (keep, shift) in enumerate(zip(copies, shifts, strict=True)):
        # A shifted copy's loop -1 reaches into [0, shift); loop n_loops-1 covers the end.
        for loop in range(-1 if shift > 0 else 0, n_loops):
            t = base + shift + loop * period
            mask = (t >= 0.0) & (t < duration_s)
            if keep < 1.0:
                mask &= rng.random(t.size) < keep
            if not mask.any():
                continue
            times.append(t[mask])
            rows.append(rows_all[mask])
            groups.append(np.full(int(mask.sum()), c * (n_loops + 2) + loop, dtype=np.int64))
    if times:
        arrival = np.concatenate(times)
        row = np.concatenate(rows)
        group = np.concatenate(groups)
        order = np.argsort(arrival, kind="stable")
        arrival, row, group = arrival[order], row[order], group[order]
    else:
        arrival = np.zeros(0, dtype=np.float64)
        row = group = np.zeros(0, dtype=np.int64)
    prompt = np.maximum(trace.prompt_tokens[row], 1)
    output = np.maximum(trace.output_tokens[row], 1)
    shift_ids = group * block_stride if trace.has_blocks else np.zeros_like(group)
    return Schedule("trace", duration_s, seed, arrival, prompt, output, trace, row, shift_ids)


def expected_requests(load: LoadSpec, duration_s: float) -> float:
    """The mean number of requests :func:`schedule` produces for ``load`` over ``duration_s``."""
    if load.kind == "trace":
        trace = load_trace(load.trace)
        return load.rate_scale * len(trace) * duration_s / trace_period_s(trace, load.time_scale)
    if load.kind in ("poisson", "diurnal"):
        return load.rps * duration_s
    return 0.0


def _check_size(load: LoadSpec, duration_s: float) -> None:
    expected = expected_requests(load, duration_s)
    if expected > MAX_REQUESTS:
        raise ScheduleError(
            f"load {load.kind} over {duration_s:g} s would schedule ~{expected:,.0f} requests, "
            f"more than {MAX_REQUESTS:,}: lower rate_scale/time_scale/rps or schedule "
            "shorter windows"
        )


def _poisson_times(rng: np.random.Generator, rps: float, duration_s: float) -> np.ndarray:
    count = int(rng.poisson(rps * duration_s))
    return np.sort(rng.uniform(0.0, duration_s, count))


def _diurnal_times(rng: np.random.Generator, load: LoadSpec, duration_s: float) -> np.ndarray:
    a = (load.peak_to_trough - 1.0) / (load.peak_to_trough + 1.0)
    peak = load.rps * (1.0 + a)
    candidates = _poisson_times(rng, peak, duration_s)
    accept = rng.random(candidates.size) * peak < diurnal_rate(load, candidates)
    return candidates[accept]


def _lognormal_lengths(rng: np.random.Generator, mean: int, count: int) -> np.ndarray:
    mu = math.log(mean) - LENGTH_SIGMA**2 / 2.0
    draws = rng.lognormal(mu, LENGTH_SIGMA, count)
    return np.maximum(np.rint(draws), 1).astype(np.int64)
