"""The load a sandbox deployment was offered in past (or future) hours, as a monitoring
system would have recorded it.

A live sandbox starts with an empty store, but forecasting needs weeks of history. For a
deployment whose load follows a daily :class:`~optiinfra.sandbox.spec.DailyCycle`, the
load of any wall-clock hour is defined (the schedule is seeded by the hour and thinned
by the cycle at that hour), so the past can be written out: :func:`offered_load` gives
the offered request rate per step, :func:`history_samples` turns it into the
``request_success_per_second`` samples a scrape of each replica would have produced, had
the deployment served all of it (the history is that of a fleet sized for its peak).
Only that one metric is written: it is what forecasts read. Rows carry the label
``history=offered-load`` so nobody mistakes them for scraped ones.

The same function evaluated on *future* hours is the truth a forecast is scored against
(tests and benchmarks do this; the agents never see it).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from optiinfra.errors import OptiInfraError
from optiinfra.models import Sample
from optiinfra.sandbox.load import schedule
from optiinfra.sandbox.spec import DeploymentSpec, FleetSpec

HOUR_S = 3600
#: Label on every written row.
HISTORY_LABELS = {"sandbox": "true", "history": "offered-load"}
#: Longest history written at once (the store keeps raw samples 90 days).
MAX_DAYS = 90


class HistoryError(OptiInfraError):
    """A history span that cannot be produced (bad span, step or deployment)."""


def _hour_start(at: datetime) -> int:
    utc = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return math.floor(utc.timestamp() / HOUR_S) * HOUR_S


def offered_load(
    deployment: DeploymentSpec,
    start: datetime,
    hours: int,
    *,
    seed: int = 0,
    step_s: int = 900,
) -> pd.Series:
    """Offered requests/s per ``step_s`` bin over ``hours`` whole UTC hours from the hour
    containing ``start``; indexed by each bin's start (UTC).

    Each hour is scheduled on its own, seeded by ``seed`` and the hour's epoch index, so
    an hour's load does not depend on the span asked for.
    """
    if hours < 0:
        raise HistoryError(f"hours must be >= 0, not {hours}")
    if step_s <= 0 or HOUR_S % step_s:
        raise HistoryError(f"step_s must divide an hour, not {step_s}")
    first = _hour_start(start)
    bins = HOUR_S // step_s
    rates = np.zeros(hours * bins, dtype=np.float64)
    load = deployment.load.model_copy(update={"seed": None})
    for h in range(hours):
        epoch = first + h * HOUR_S
        plan = schedule(load, float(HOUR_S), seed=seed * 1_000_003 + epoch // HOUR_S,
                        start_epoch=float(epoch))  # fmt: skip
        counts = np.bincount(
            np.minimum((plan.arrival_s // step_s).astype(np.int64), bins - 1), minlength=bins
        )
        rates[h * bins : (h + 1) * bins] = counts / step_s
    index = pd.date_range(
        datetime.fromtimestamp(first, UTC), periods=hours * bins, freq=f"{step_s}s"
    )
    return pd.Series(rates, index=index, name=deployment.name)


def history_samples(
    fleet: FleetSpec,
    end: datetime,
    days: float,
    *,
    step_s: int = 900,
    deployments: list[str] | None = None,
) -> pd.DataFrame:
    """``request_success_per_second`` samples of every replica over the ``days`` before
    the hour containing ``end`` (each replica serves an equal share), as ``Sample.COLUMNS``.

    Deployments without load are skipped; ``deployments`` limits the ones written.
    """
    if not 0 < days <= MAX_DAYS:
        raise HistoryError(f"days must be in (0, {MAX_DAYS}], not {days}")
    known = {d.name for d in fleet.deployments}
    unknown = sorted(set(deployments or ()) - known)
    if unknown:
        raise HistoryError(f"deployment(s) not in the fleet: {', '.join(unknown)}")
    hours = round(days * 24)
    start = datetime.fromtimestamp(_hour_start(end), UTC) - timedelta(hours=hours)
    frames = []
    for d in fleet.deployments:
        if (deployments and d.name not in deployments) or d.load.kind == "none" or d.replicas < 1:
            continue
        rates = offered_load(d, start, hours, seed=fleet.sandbox.seed, step_s=step_s)
        share = rates.to_numpy() / d.replicas
        # a scrape reads the rate over the step ending at its time: stamp the step's end
        ts = rates.index + pd.Timedelta(seconds=step_s - 1)
        for r in range(d.replicas):
            frames.append(
                pd.DataFrame(
                    {
                        "ts": ts,
                        "tenant": d.tenant,
                        "provider": d.provider,
                        "region": d.region,
                        "instance": f"{d.name}-{r}",  # the live servers' names
                        "deployment": d.name,
                        "engine": d.engine,
                        "metric": "request_success_per_second",
                        "value": share,
                        "labels": [HISTORY_LABELS] * len(share),
                    }
                )
            )
    if not frames:
        return pd.DataFrame(columns=list(Sample.COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(Sample.COLUMNS)]
