"""Held-out error: fit on all but the last days, score those days."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from agents.resource.forecast.fit import clean_hourly, forecast_load
from agents.resource.forecast.records import (
    DAY,
    MIN_OBSERVED_HOURS,
    Forecast,
    ForecastError,
    Method,
)

# -------------------------------------------------------------------- held-out error


@dataclass(frozen=True)
class HoldoutError:
    """Errors of a forecast fitted before the last ``holdout_days`` days, on those days.

    ``wape`` = sum |actual - point| / sum actual (NaN when the actuals sum to zero);
    ``bias`` = sum (point - actual) / sum actual; ``p90_ape`` and ``p90_ape_by_hour``
    (index 0..23, UTC) are 90th percentiles of |error| / actual over hours with a
    positive actual; ``coverage`` is the share of hours inside ``[lower, upper]``.
    """

    wape: float
    bias: float
    p90_ape: float
    p90_ape_by_hour: pd.Series
    coverage: float
    level: float
    hours: int
    method: str
    forecast: Forecast
    actual: pd.Series


def holdout_error(
    series: pd.Series,
    holdout_days: int = 7,
    *,
    level: float = 0.9,
    method: Method = "profile",
    **options: int,
) -> HoldoutError:
    """Fit on everything before the last ``holdout_days`` days, score on them."""
    if holdout_days < 1:
        raise ForecastError(f"holdout_days: must be >= 1, got {holdout_days}")
    y = clean_hourly(series)
    cut = y.index[-1] - pd.Timedelta(hours=holdout_days * DAY - 1)
    train, test = y[y.index < cut], y[y.index >= cut]
    if train.notna().sum() < MIN_OBSERVED_HOURS:
        raise ForecastError(
            f"series: not enough history before the last {holdout_days} held-out days"
        )
    fc = forecast_load(train, horizon_hours=len(test), level=level, method=method, **options)
    frame = fc.frame.reindex(test.index)
    scored = test.notna()
    actual, point = test[scored], frame["point"][scored]
    lower, upper = frame["lower"][scored], frame["upper"][scored]
    total = float(actual.sum())
    error = point - actual
    positive = actual > 0
    ape = (error.abs() / actual)[positive]
    by_hour = ape.groupby(ape.index.hour).quantile(0.9).reindex(range(DAY))
    return HoldoutError(
        wape=float(error.abs().sum() / total) if total > 0 else math.nan,
        bias=float(error.sum() / total) if total > 0 else math.nan,
        p90_ape=float(ape.quantile(0.9)) if len(ape) else math.nan,
        p90_ape_by_hour=by_hour.rename("p90_ape"),
        coverage=float(((actual >= lower) & (actual <= upper)).mean()) if len(actual) else math.nan,
        level=level,
        hours=int(scored.sum()),
        method=fc.method,
        forecast=fc,
        actual=test,
    )
