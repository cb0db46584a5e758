"""The forecast's constants, result record, errors and shared helpers."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from optiinfra.errors import OptiInfraError

DAY = 24
WEEK = 168
MIN_OBSERVED_HOURS = 24
NAIVE_BELOW_HOURS = 48
#: A level shift must be at least this fraction of the median level...
SHIFT_MIN_RELATIVE = 0.2
#: ...and this many robust sigmas of the daily-level noise.
SHIFT_MIN_SIGMAS = 5.0
#: Days after a shift before it is believed (a 2-day holiday is not a new level).
SHIFT_MIN_DAYS_AFTER = 3
#: Days of daily levels needed before level shifts are looked for.
SHIFT_MIN_HISTORY_DAYS = 14
#: Days of levels needed to estimate a slope; fewer give a flat trend.
TREND_MIN_DAYS = 7
#: Relative band used when there are no residuals to learn from (naive forecasts).
WIDE_BAND = (-0.5, 1.0)

BAND_WIDEN = 1.07
Method = Literal["profile", "fourier"]


class ForecastError(OptiInfraError):
    """The series cannot be forecast (wrong type, no data, too short)."""


@dataclass(frozen=True)
class Forecast:
    """Point forecast and interval for each future hour (UTC).

    ``frame`` has columns ``point``, ``lower``, ``upper`` (request rate, same unit as the
    input) on an hourly UTC index starting the hour after the series' last timestamp.
    ``level`` is the nominal coverage of ``[lower, upper]``.
    """

    frame: pd.DataFrame
    level: float
    method: str
    history_hours: int
    #: Mean weight of the per-hour-of-week profile against the product fallback (0..1).
    weekly_weight: float
    #: Deseasonalised level at the end of the history and its trend, per day.
    level_now: float
    trend_per_day: float
    #: First timestamp of the history the trend was fitted on (after a level shift).
    trend_since: pd.Timestamp | None
    notes: tuple[str, ...] = ()

    @property
    def point(self) -> pd.Series:
        return self.frame["point"]

    @property
    def lower(self) -> pd.Series:
        return self.frame["lower"]

    @property
    def upper(self) -> pd.Series:
        return self.frame["upper"]

    @property
    def growth_per_week(self) -> float:
        """Trend as a fraction of the current level per week (0.05 = +5%/week)."""
        return 7 * self.trend_per_day / self.level_now if self.level_now > 0 else 0.0


LOO_DAYS = 14

# ---------------------------------------------------------------------------- helpers


def _nanmedian(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN
        return np.nanmedian(values, axis=axis)


def _hour_of_week(index: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(index.day_of_week * DAY + index.hour, dtype=int)


def _residual_band(
    residuals: np.ndarray, hour: np.ndarray, level: float, min_count: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper residual quantiles for each hour of day, pooling neighbouring
    hours (circularly) until each hour has ``min_count`` residuals."""
    ok = np.isfinite(residuals)
    residuals, hour = residuals[ok], hour[ok]
    if residuals.size < 2 * DAY:
        return np.full(DAY, WIDE_BAND[0]), np.full(DAY, WIDE_BAND[1])
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    lower, upper = np.empty(DAY), np.empty(DAY)
    for h in range(DAY):
        for half in range(DAY // 2 + 1):
            near = np.abs((hour - h + DAY // 2) % DAY - DAY // 2) <= half
            if near.sum() >= min_count or half == DAY // 2:
                break
        lower[h], upper[h] = np.quantile(residuals[near], [lo_q, hi_q])
    return lower, upper


def _frame(point: np.ndarray, lower: np.ndarray, upper: np.ndarray, index) -> pd.DataFrame:
    point = np.maximum(point, 0.0)
    return pd.DataFrame(
        {
            "point": point,
            "lower": np.clip(lower, 0.0, point),
            "upper": np.maximum(upper, point),
        },
        index=index,
    )
