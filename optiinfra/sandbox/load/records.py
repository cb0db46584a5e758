"""What the load generator measured: one record per request, a frame, a summary.

Times are seconds on the generator's monotonic clock, counted from the start of the run
(``LoadResult.started_at`` is that instant on the wall clock, UTC), so they compare
directly with the schedule's arrival offsets.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

#: ``ok``: 2xx with a parseable body. ``http_error``: the server answered >= 400.
#: ``timeout``: no complete answer within the generator's timeout. ``connection_error``:
#: refused, reset or closed mid-answer. ``invalid_response``: 2xx but a body that is not
#: an OpenAI completion. ``dropped``: never sent, because the client was at its
#: concurrency bound (``on_saturation="drop"``) or the run was stopped first.
Outcome = Literal["ok", "http_error", "timeout", "connection_error", "invalid_response", "dropped"]
OUTCOMES: tuple[Outcome, ...] = (
    "ok",
    "http_error",
    "timeout",
    "connection_error",
    "invalid_response",
    "dropped",
)


@dataclass(slots=True)
class RequestRecord:
    """One request as the client saw it (times in s from the run's start)."""

    index: int  # position in the schedule
    url: str  # the base URL it was sent to ("" when dropped)
    scheduled_s: float  # when the schedule wanted it sent
    prompt_words: int  # words actually sent (after the prompt cap)
    max_tokens: int
    sent_s: float | None = None  # request handed to the HTTP client
    first_token_s: float | None = None  # first SSE event with a choice (stream only)
    finished_s: float | None = None  # answer fully read, or the error seen
    status: int | None = None  # HTTP status code, None when none arrived
    outcome: Outcome = "dropped"
    prompt_tokens: int | None = None  # from the response's usage
    completion_tokens: int | None = None  # from the response's usage
    error: str | None = None  # short reason for a non-ok outcome

    @property
    def lag_s(self) -> float | None:
        """How late the request was sent relative to its schedule."""
        return None if self.sent_s is None else self.sent_s - self.scheduled_s

    @property
    def latency_s(self) -> float | None:
        """Sent to fully answered (None unless both happened)."""
        if self.sent_s is None or self.finished_s is None:
            return None
        return self.finished_s - self.sent_s

    @property
    def ttft_s(self) -> float | None:
        """Sent to first token, measured by the client (stream mode only)."""
        if self.sent_s is None or self.first_token_s is None:
            return None
        return self.first_token_s - self.sent_s

    def to_dict(self) -> dict[str, object]:
        row = asdict(self)
        row.update(lag_s=self.lag_s, latency_s=self.latency_s, ttft_s=self.ttft_s)
        return row


_COLUMNS = [f.name for f in fields(RequestRecord)] + ["lag_s", "latency_s", "ttft_s"]


@dataclass(frozen=True)
class LoadSummary:
    """Headline figures of one run. Latency and TTFT percentiles cover ok requests."""

    requests: int  # records (scheduled requests that came due before the run ended)
    sent: int
    ok: int
    ok_rate: float  # ok / requests (0 when there were none)
    outcomes: dict[str, int]
    duration_s: float  # run start to the last request's end
    offered_rps: float  # requests / duration of the schedule
    achieved_rps: float  # ok requests per second of duration_s
    latency_p50_s: float | None
    latency_p95_s: float | None
    ttft_p50_s: float | None  # stream mode only
    ttft_p95_s: float | None
    max_lag_s: float  # latest send relative to its schedule (0 when never behind)
    prompt_tokens: int  # sums of the servers' usage figures
    completion_tokens: int


@dataclass
class LoadResult:
    """Everything one :meth:`LoadGenerator.run` recorded."""

    started_at: datetime
    schedule_duration_s: float
    records: list[RequestRecord]
    duration_s: float

    def to_frame(self) -> pd.DataFrame:
        """One row per record, with lag_s, latency_s and ttft_s columns added."""
        return pd.DataFrame([r.to_dict() for r in self.records], columns=_COLUMNS)

    def summary(self) -> LoadSummary:
        counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        latencies: list[float] = []
        ttfts: list[float] = []
        lags: list[float] = []
        prompt = completion = 0
        for r in self.records:
            counts[r.outcome] += 1
            if r.lag_s is not None:
                lags.append(r.lag_s)
            if r.outcome == "ok":
                if r.latency_s is not None:
                    latencies.append(r.latency_s)
                if r.ttft_s is not None:
                    ttfts.append(r.ttft_s)
            prompt += r.prompt_tokens or 0
            completion += r.completion_tokens or 0
        n = len(self.records)
        ok = counts["ok"]
        return LoadSummary(
            requests=n,
            sent=n - counts["dropped"],
            ok=ok,
            ok_rate=ok / n if n else 0.0,
            outcomes=counts,
            duration_s=self.duration_s,
            offered_rps=n / self.schedule_duration_s if self.schedule_duration_s > 0 else 0.0,
            achieved_rps=ok / self.duration_s if self.duration_s > 0 else 0.0,
            latency_p50_s=_quantile(latencies, 0.5),
            latency_p95_s=_quantile(latencies, 0.95),
            ttft_p50_s=_quantile(ttfts, 0.5),
            ttft_p95_s=_quantile(ttfts, 0.95),
            max_lag_s=max([0.0, *lags]),
            prompt_tokens=prompt,
            completion_tokens=completion,
        )

    def write_jsonl(self, path: str | Path) -> Path:
        """Write one JSON object per record (the columns of :meth:`to_frame`)."""
        target = Path(path)
        with target.open("w", encoding="utf-8") as out:
            for r in self.records:
                out.write(json.dumps(r.to_dict(), separators=(",", ":")) + "\n")
        return target


def _quantile(values: list[float], q: float) -> float | None:
    return float(np.quantile(values, q)) if values else None
