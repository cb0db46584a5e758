"""A synthetic LLM endpoint's hourly traffic, shared by the resource-agent tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

START = "2026-09-28"  # a Monday


def llm_traffic(
    weeks: int = 5,
    *,
    seed: int = 0,
    base_rps: float = 20.0,
    peak_to_trough: float = 6.0,
    weekend_factor: float = 0.6,
    growth_per_week: float = 0.0,
    noise: float = 0.08,
    gaps: bool = True,
    start: str = START,
) -> pd.Series:
    """Hourly request rate that looks like an LLM endpoint's.

    A diurnal curve peaking at 15:00 UTC on weekdays (17:00 at weekends) with the given
    peak-to-trough ratio, weekends at ``weekend_factor`` of weekday volume, linear
    growth, a gamma-distributed multiplicative hour-to-hour swing (sd ``noise``) and
    Poisson request counts. With ``gaps``: 8 NaN hours, one 6-hour hole, 5 rows
    missing altogether (never in the last 200 hours, which holdouts score).
    """
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, periods=weeks * 168, freq="h", tz="UTC")
    hour = index.hour.to_numpy().astype(float)
    weekend = index.day_of_week.to_numpy() >= 5
    peak_hour = np.where(weekend, 17.0, 15.0)
    bump = (1 + np.cos(2 * np.pi * (hour - peak_hour) / 24)) / 2
    shape = 1 + (peak_to_trough - 1) * bump**1.5
    shape = shape / shape.mean()
    weeks_in = np.arange(len(index)) / 168
    rate = base_rps * shape * np.where(weekend, weekend_factor, 1.0)
    rate = rate * (1 + growth_per_week * weeks_in)
    swing = rng.gamma(1 / noise**2, noise**2, len(index))
    series = pd.Series(rng.poisson(rate * swing * 3600) / 3600.0, index=index, name="rps")
    if gaps:
        series.iloc[rng.choice(len(series) - 200, 8, replace=False)] = np.nan
        hole = int(rng.integers(24, max(len(series) - 250, 48)))
        series.iloc[hole : hole + 6] = np.nan
        series = series.drop(series.index[rng.choice(len(series) - 200, 5, replace=False)])
    return series
