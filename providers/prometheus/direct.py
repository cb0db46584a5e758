"""Direct scrape of many targets: concurrent readings, rates against the previous one.

Each target is read once; where the stored previous reading is usable the window is
(previous, now]. The targets without one are read a second time after
``scrape_settle_seconds`` — all together, after one shared wait — so a first
collection, a restarted server or a stale cursor still yields rates. One target's
failure never touches the others: it becomes that target's status and note.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import httpx

from optiinfra.store.state import Cursor
from providers.prometheus.canonical import gauge_rows, merge
from providers.prometheus.counters import (
    Snapshot,
    decode,
    encode,
    is_reset,
    snapshot,
    windowed_rows,
)
from providers.prometheus.options import PrometheusOptions
from providers.prometheus.scrape import Reading, TargetError, read_target
from providers.prometheus.series import LabelPolicy, Row


@dataclass(frozen=True)
class Target:
    """One direct-scrape endpoint."""

    url: str  # what is fetched (may carry user:password@)
    key: str  # the URL without credentials: notes, status and the cursor's name
    instance: str  # host:port
    sources: tuple[str, ...]


@dataclass
class TargetResult:
    """What one target yielded: rows at ``at``, or why not."""

    target: Target
    status: Literal["ok", "partial", "failed"] = "ok"
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    sources: tuple[str, ...] = ()
    rows: list[Row] = field(default_factory=list)
    at: datetime | None = None
    window_seconds: float | None = None


@dataclass
class DirectOutcome:
    results: list[TargetResult]
    cursors: list[Cursor]


def _cause(exc: BaseException) -> str:
    if isinstance(exc, TargetError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"[:300]


def _unusable(
    cursor: Cursor | None, previous: Snapshot | None, reading: Reading, now: Snapshot,
    max_age: float,
) -> str | None:  # fmt: skip
    """Why the stored reading cannot open this window (None: it can)."""
    if cursor is None:
        return "first reading"
    if previous is None:
        return "stored reading has another format"
    age = (reading.at - cursor.scraped_at).total_seconds()
    if not 0 < age <= max_age:
        return f"stored reading is {age:.0f} s old"
    if is_reset(previous, now):
        return "counters went down since the stored reading (restarted)"
    return None


async def collect_targets(
    client: httpx.AsyncClient,
    targets: Sequence[Target],
    previous: dict[str, Cursor],
    policy: LabelPolicy,
    options: PrometheusOptions,
    *,
    max_age_seconds: float,
) -> DirectOutcome:
    """Read every target (bounded concurrency); compute each one's canonical rows."""
    gate = asyncio.Semaphore(options.concurrency)
    timeout = options.target_timeout_seconds

    async def read(target: Target) -> Reading:
        async with gate:
            return await read_target(client, target.url, timeout, target.sources)

    first = await asyncio.gather(*(read(t) for t in targets), return_exceptions=True)
    results: list[TargetResult] = []
    openings: dict[str, tuple[Reading, Snapshot, Snapshot | None, float | None, str | None]] = {}
    for target, reading in zip(targets, first, strict=True):
        result = TargetResult(target)
        results.append(result)
        if isinstance(reading, BaseException):
            if not isinstance(reading, Exception):
                raise reading
            result.status, result.error = "failed", _cause(reading)
            result.notes.append(result.error)
            continue
        now = snapshot(reading.series, policy)
        cursor = previous.get(target.key)
        stored = decode(cursor.payload, policy) if cursor else None
        why = _unusable(cursor, stored, reading, now, max_age_seconds)
        age = (reading.at - cursor.scraped_at).total_seconds() if cursor else None
        openings[target.key] = (reading, now, stored, age, why)

    again = [t for t in targets if t.key in openings and openings[t.key][4] is not None]
    second: dict[str, Reading | BaseException] = {}
    if again and options.scrape_settle_seconds > 0:
        await asyncio.sleep(options.scrape_settle_seconds)
        answers = await asyncio.gather(*(read(t) for t in again), return_exceptions=True)
        second = dict(zip((t.key for t in again), answers, strict=True))

    cursors: list[Cursor] = []
    for result in results:
        if result.status == "failed":
            continue
        reading, now, stored, age, why = openings[result.target.key]
        latest, windowed = reading, []
        if why is None and stored is not None and age is not None:
            windowed = windowed_rows(stored, now, age, options.quantiles)
            result.window_seconds = age
        elif result.target.key in second:
            later = second[result.target.key]
            if isinstance(later, BaseException):
                if not isinstance(later, Exception):
                    raise later
                result.status = "partial"
                result.notes.append(f"second reading failed ({_cause(later)}): gauges only")
            else:
                after = snapshot(later.series, policy)
                seconds = (later.at - reading.at).total_seconds()
                latest = later
                if is_reset(now, after):
                    result.status = "partial"
                    result.notes.append("counters went down between two readings: gauges only")
                else:
                    windowed = windowed_rows(now, after, seconds, options.quantiles)
                    result.window_seconds = seconds
                now = after
        else:
            result.notes.append(f"{why}: rates and quantiles from the next collection")
        result.at = latest.at
        result.sources = latest.sources
        result.rows = merge(gauge_rows(latest.series, policy) + windowed)
        cursors.append(Cursor(result.target.key, latest.at, encode(now, policy)))
    return DirectOutcome(results, cursors)
