"""The Fourier least-squares method (24 h and 168 h periods), kept for comparison and speed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from agents.resource.forecast.records import (
    DAY,
    WEEK,
    Forecast,
    _frame,
    _hour_of_week,
    _residual_band,
)

# ------------------------------------------------------------------- Fourier regression


def _fourier_design(pos: np.ndarray) -> np.ndarray:
    """Intercept, trend (weeks), 6 daily harmonics, weekly harmonics 1..12 except the
    multiples of 7 (they equal daily ones), a weekend dummy and weekend x 3 daily ones."""
    cols = [np.ones(len(pos)), pos / WEEK]
    for k in range(1, 7):
        cols += [np.cos(2 * np.pi * k * pos / DAY), np.sin(2 * np.pi * k * pos / DAY)]
    for k in range(1, 13):
        if k % 7:
            cols += [np.cos(2 * np.pi * k * pos / WEEK), np.sin(2 * np.pi * k * pos / WEEK)]
    weekend = ((pos % WEEK) >= 5 * DAY).astype(float)
    cols.append(weekend)
    for k in range(1, 4):
        cols += [
            weekend * np.cos(2 * np.pi * k * pos / DAY),
            weekend * np.sin(2 * np.pi * k * pos / DAY),
        ]
    return np.column_stack(cols)


def _fourier(y: pd.Series, future: pd.DatetimeIndex, level: float, observed: int) -> Forecast:
    x = y.to_numpy()
    ok = np.isfinite(x)
    offset = max(0.05 * float(np.nanmean(x)), 1e-6)  # log(0) guard, 5% of the mean
    z = np.log(x + offset)
    pos = np.arange(len(x)) + _hour_of_week(y.index)[0]
    design = _fourier_design(pos)
    a, b = design[ok], z[ok]
    penalty = np.eye(design.shape[1])
    penalty[:2, :2] = 0  # ridge on the seasonal terms only
    weights = np.ones(len(b))
    for _ in range(4):  # Huber IRLS: incidents do not bend the fit
        aw = a * weights[:, None]
        beta = np.linalg.solve(aw.T @ a + 1.0 * penalty, aw.T @ b)
        resid = b - a @ beta
        sigma = max(1.4826 * float(np.median(np.abs(resid))), 1e-9)
        weights = np.minimum(1.0, 1.345 * sigma / np.maximum(np.abs(resid), 1e-12))
    inflation = math.sqrt(len(b) / max(len(b) - design.shape[1], 1))
    band_lo, band_hi = _residual_band(resid * inflation, y.index.hour.to_numpy()[ok], level)
    future_pos = pos[-1] + np.arange(1, len(future) + 1)
    pred = _fourier_design(future_pos) @ beta
    hod = future.hour.to_numpy()
    point = np.exp(pred) - offset
    level_now = float(np.exp(beta[0] + beta[1] * (pos[-1] + 1) / WEEK))
    return Forecast(
        frame=_frame(
            point,
            np.exp(pred + band_lo[hod]) - offset,
            np.exp(pred + band_hi[hod]) - offset,
            future,
        ),
        level=level,
        method="fourier",
        history_hours=observed,
        weekly_weight=1.0,
        level_now=level_now,
        trend_per_day=level_now * (math.exp(beta[1] / 7) - 1),
        trend_since=y.index[0],
    )
