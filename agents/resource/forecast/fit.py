"""clean_hourly and forecast_load: the entry points, choosing the method."""

from __future__ import annotations

import numpy as np
import pandas as pd

from agents.resource.forecast.fourier import _fourier
from agents.resource.forecast.profile import _naive_daily, _profile
from agents.resource.forecast.records import (
    MIN_OBSERVED_HOURS,
    NAIVE_BELOW_HOURS,
    WEEK,
    Forecast,
    ForecastError,
    Method,
)


def clean_hourly(series: pd.Series, *, name: str = "series") -> pd.Series:
    """The series on a full hourly UTC grid: non-finite or negative values and gaps are
    NaN, sub-hourly samples averaged. Naive timestamps are taken as UTC. The grid runs
    from the first finite value to the series' last timestamp."""
    if not isinstance(series, pd.Series):
        raise ForecastError(f"{name}: expected a pandas Series, got {type(series).__name__}")
    if not isinstance(series.index, pd.DatetimeIndex):
        raise ForecastError(
            f"{name}.index: expected hourly timestamps (a DatetimeIndex), "
            f"got {type(series.index).__name__}"
        )
    index = series.index
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    values = pd.to_numeric(pd.Series(series.to_numpy(), index=index), errors="coerce")
    values = values.astype(float).where(lambda v: np.isfinite(v) & (v >= 0))
    hourly = values.groupby(index.floor("h")).mean().sort_index()
    first = hourly.first_valid_index()
    if first is None:
        raise ForecastError(f"{name}: no finite, non-negative value to forecast from")
    return hourly.reindex(pd.date_range(first, hourly.index[-1], freq="h"))


def forecast_load(
    series: pd.Series,
    horizon_hours: int = WEEK,
    *,
    level: float = 0.9,
    method: Method = "profile",
    profile_weeks: int = 4,
    trend_days: int = 28,
) -> Forecast:
    """Forecast the next ``horizon_hours`` hours of an hourly request-rate series.

    >>> fc = forecast_load(rps, horizon_hours=168)   # doctest: +SKIP
    >>> fc.point.max(), fc.upper.max(), fc.growth_per_week   # doctest: +SKIP
    """
    if horizon_hours < 1:
        raise ForecastError(f"horizon_hours: must be >= 1, got {horizon_hours}")
    if not 0 < level < 1:
        raise ForecastError(f"level: must be between 0 and 1, got {level}")
    if method not in ("profile", "fourier"):
        raise ForecastError(f"method: expected 'profile' or 'fourier', got {method!r}")
    y = clean_hourly(series)
    observed = int(y.notna().sum())
    if observed < MIN_OBSERVED_HOURS:
        raise ForecastError(
            f"series: {observed} observed hours; at least {MIN_OBSERVED_HOURS} are needed "
            "to forecast (a daily shape)"
        )
    future = pd.date_range(y.index[-1] + pd.Timedelta(hours=1), periods=horizon_hours, freq="h")
    if len(y) < NAIVE_BELOW_HOURS:
        return _naive_daily(y, future, level, observed)
    if method == "fourier":
        return _fourier(y, future, level, observed)
    return _profile(y, future, level, observed, profile_weeks, trend_days)


#: Days whose leave-one-out residuals make the interval (the most recent ones).
