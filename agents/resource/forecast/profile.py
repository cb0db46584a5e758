"""The hour-of-week profile method (and the naive daily profile for short histories)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.stats import theilslopes

from agents.resource.forecast.records import (
    BAND_WIDEN,
    DAY,
    LOO_DAYS,
    SHIFT_MIN_DAYS_AFTER,
    SHIFT_MIN_HISTORY_DAYS,
    SHIFT_MIN_RELATIVE,
    SHIFT_MIN_SIGMAS,
    TREND_MIN_DAYS,
    WEEK,
    WIDE_BAND,
    Forecast,
    _frame,
    _hour_of_week,
    _nanmedian,
    _residual_band,
)

# ------------------------------------------------------------------ naive daily profile


def _naive_daily(y: pd.Series, future: pd.DatetimeIndex, level: float, observed: int) -> Forecast:
    by_hour = y.groupby(y.index.hour).median().reindex(range(DAY))
    by_hour = by_hour.fillna(float(y.mean()))
    point = by_hour.to_numpy()[future.hour]
    return Forecast(
        frame=_frame(point, point * (1 + WIDE_BAND[0]), point * (1 + WIDE_BAND[1]), future),
        level=level,
        method="naive_daily",
        history_hours=observed,
        weekly_weight=0.0,
        level_now=float(y.mean()),
        trend_per_day=0.0,
        trend_since=None,
        notes=(
            f"only {len(y)} hours of history: naive daily profile, no trend, "
            f"interval fixed at x{1 + WIDE_BAND[0]:g}..x{1 + WIDE_BAND[1]:g} of the point",
        ),
    )


# ------------------------------------------------------------------- seasonal profile


def _daily_shape(days: np.ndarray) -> np.ndarray | None:
    """Hour-of-day medians of (days, 24) ratios scaled to mean 1; None without data."""
    by_hour = _nanmedian(days, axis=0)
    if np.isfinite(by_hour).sum() < DAY // 2:
        return None
    by_hour = np.where(np.isfinite(by_hour), by_hour, np.nanmean(by_hour))
    mean = by_hour.mean()
    return by_hour / mean if mean > 0 else None


def _deviation_weight(
    grid: np.ndarray, weekly: np.ndarray, product: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """How much of each hour-of-week median's deviation from the product profile to keep.

    Empirical Bayes: the noise variance of a cell's median (relative, from the pooled
    spread of the ratios, x pi/2 for a median, / its count) against the spread of the
    deviations across cells beyond that noise; a deviation of more than 2 standard
    errors phases in on its own (fully at 4), so a weekly batch job at one hour is kept
    even when most cells follow the product profile. Cells seen once get weight 0."""
    seen = counts > 0
    if seen.sum() < DAY:
        return np.zeros(WEEK)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = grid / weekly - 1
        relative = np.where(seen & (product > 0), weekly / product - 1, np.nan)
    multi = counts[None, :] > 1
    errors = np.abs(spread[np.isfinite(spread) & multi])
    if errors.size == 0:
        return np.zeros(WEEK)
    n = np.maximum(counts, 1)
    sigma2 = (1.4826 * float(np.median(errors))) ** 2 * np.median(n / np.maximum(n - 1, 1))
    noise = np.pi / 2 * sigma2 / n
    ok = np.isfinite(relative) & (counts > 1)
    signal = max(0.0, float(np.mean(relative[ok] ** 2 - noise[ok]))) if ok.any() else 0.0
    pooled = signal / (signal + noise)
    z = np.abs(np.nan_to_num(relative)) / np.sqrt(noise)
    own = np.clip((z - 2) / 2, 0.0, 1.0)
    return np.where(counts > 1, np.maximum(pooled, own), 0.0)


def _blend(grid: np.ndarray) -> tuple[np.ndarray, float]:
    """Seasonal profile (168, mean 1) and mean weekly weight from a (weeks, 168) grid of
    ratios to the local level (NaN = not observed)."""
    week3 = grid.reshape(-1, 7, DAY)
    everyday = _daily_shape(week3.reshape(-1, DAY))
    if everyday is None:
        return np.ones(WEEK), 0.0
    shapes = np.empty((7, DAY))
    for days in (slice(0, 5), slice(5, 7)):  # weekdays, weekend
        own = _daily_shape(week3[:, days].reshape(-1, DAY))
        shapes[days] = own if own is not None else everyday
    rel = week3 / np.where(shapes > 0, shapes, np.nan)[None]
    by_day = _nanmedian(rel.transpose(1, 0, 2).reshape(7, -1), axis=1)
    by_day = np.where(np.isfinite(by_day), by_day, _nanmedian(by_day))
    by_day = np.where(np.isfinite(by_day), by_day, 1.0)
    product = (by_day[:, None] * shapes).reshape(WEEK)
    counts = np.isfinite(grid).sum(axis=0)
    weekly = _nanmedian(grid, axis=0)
    weight = _deviation_weight(grid, weekly, product, counts)
    deviation = np.where(counts > 0, weight * (weekly - product), 0.0)
    # The per-hour-of-week deviations are medians of a few values: smooth them over
    # neighbouring hours (1-2-1) to halve their noise; the product's shape is not.
    deviation = (np.roll(deviation, 1) + 2 * deviation + np.roll(deviation, -1)) / 4
    profile = product + deviation
    mean = profile.mean()
    return (profile / mean if mean > 0 else np.ones(WEEK)), float(weight.mean())


def _pairwise_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(len(x), k=1)
    return (y[j] - y[i]) / (x[j] - x[i])


def _last_level_shift(x: np.ndarray, levels: np.ndarray) -> int | None:
    """Index of the first day of the newest level, or None.

    Each split is fitted as two levels under a common within-segment Theil-Sen slope; the
    split with the smallest total absolute residual is the candidate (misplacing it by a
    day leaves a day with a large residual), and it is kept when the shift is at least
    ``SHIFT_MIN_RELATIVE`` of the level and ``SHIFT_MIN_SIGMAS`` robust sigmas."""
    n, scale = len(levels), float(np.median(levels)) if len(levels) else 0.0
    if n < 3 + SHIFT_MIN_DAYS_AFTER or scale <= 0:
        return None
    best: tuple[float, int, float, float] | None = None  # (L1, split, shift, sigma)
    for split in range(3, n - SHIFT_MIN_DAYS_AFTER + 1):
        within = np.concatenate(
            [
                _pairwise_slopes(x[:split], levels[:split]),
                _pairwise_slopes(x[split:], levels[split:]),
            ]
        )
        slope = float(np.median(within)) if within.size else 0.0
        flat = levels - slope * x
        before, after = np.median(flat[:split]), np.median(flat[split:])
        resid = flat - np.where(np.arange(n) < split, before, after)
        sigma = max(1.4826 * float(np.median(np.abs(resid))), 1e-3 * scale)
        l1 = float(np.abs(resid).sum())
        if best is None or l1 < best[0]:
            best = (l1, split, abs(after - before), sigma)
    assert best is not None
    _, split, shift, sigma = best
    if shift >= SHIFT_MIN_RELATIVE * scale and shift / sigma >= SHIFT_MIN_SIGMAS:
        return split
    return None


def _profile(
    y: pd.Series,
    future: pd.DatetimeIndex,
    level: float,
    observed: int,
    profile_weeks: int,
    trend_days: int,
) -> Forecast:
    x = y.to_numpy()
    ok = np.isfinite(x)
    how = _hour_of_week(y.index)
    pos = np.arange(len(x)) + how[0]  # hours since the Monday 00:00 before the start
    week, day = pos // WEEK, pos // DAY
    n_days = day[-1] + 1
    in_profile = week > week[-1] - profile_weeks
    grid_rows = week[in_profile] - week[in_profile][0]
    profile = np.ones(WEEK)
    shift_day: int | None = None
    notes: list[str] = []

    def daily_levels(prof: np.ndarray) -> np.ndarray:
        seasonal = prof[how]
        deseason = np.where(ok & (seasonal > 0.05), x / np.where(seasonal > 0, seasonal, 1), np.nan)
        has = np.isfinite(deseason)
        sums = np.bincount(day[has], weights=deseason[has], minlength=n_days)
        counts = np.bincount(day[has], minlength=n_days)
        return np.where(counts >= 6, sums / np.maximum(counts, 1), np.nan)

    def local_level(levels: np.ndarray, split: int | None) -> np.ndarray:
        """Mean daily level over a 7-day window around each day, shifted to stay inside
        the history and not reaching across a level shift: a whole week in the window
        averages the day-of-week effect out even at the edges."""
        out = np.empty(n_days)
        bounds = [0, split, n_days] if split else [0, n_days]
        for a, b in itertools.pairwise(bounds):
            for d in range(a, b):
                lo = min(max(d - 3, a), max(b - 7, a))
                window = levels[lo : min(lo + 7, b)]
                window = window[np.isfinite(window)]
                out[d] = window.mean() if window.size else np.nan
        return out

    for iteration in range(3):
        levels = daily_levels(profile)
        days = np.arange(max(0, n_days - trend_days), n_days)
        days = days[np.isfinite(levels[days])]
        # Shifts are looked for once a profile exists (the first pass's levels still
        # hold the weekend dip) and with two weeks of levels (with one, a weekend dip
        # and a step cannot be told apart).
        if iteration > 0 and days.size >= SHIFT_MIN_HISTORY_DAYS:
            shift = _last_level_shift(days + 0.5, levels[days])
            shift_day = int(days[shift]) if shift is not None else None
        local = local_level(levels, shift_day)[day]
        ratio = np.where(ok & (local > 0), x / np.where(local > 0, local, 1), np.nan)
        grid = np.full((grid_rows[-1] + 1, WEEK), np.nan)
        grid[grid_rows, how[in_profile]] = ratio[in_profile]
        profile, weekly_weight = _blend(grid)

    # Trend on the deseasonalised daily levels since the newest shift.
    start = shift_day if shift_day is not None else max(0, n_days - trend_days)
    days = np.arange(start, n_days)
    days = days[np.isfinite(levels[days])]
    centres = days + 0.5
    if days.size >= TREND_MIN_DAYS and np.ptp(levels[days]) > 0:
        slope = float(theilslopes(levels[days], centres)[0])
    else:
        slope = 0.0
        if days.size < TREND_MIN_DAYS:
            notes.append(f"{days.size} days of level since the trend start: flat trend")
    recent = slice(-min(7, days.size), None) if days.size else slice(0, 0)
    anchor = float(np.median(levels[days][recent] - slope * centres[recent])) if days.size else 0.0
    end_days = (pos[-1] + 1) / DAY
    level_now = max(anchor + slope * end_days, 0.0)
    if shift_day is not None:
        notes.append(f"level shift detected on day {shift_day}: trend restarted there")

    # Out-of-sample residuals: each observed day against a profile without that day, and
    # against the fitted trend line since the trend start (the local level before it), so
    # day-to-day swings of the level count as the forecast errors they are.
    fitted = np.maximum(anchor + slope * (pos + 0.5) / DAY, 0.0)
    baseline = np.where(day >= start, fitted, local)
    residuals = np.full(len(x), np.nan)
    rows = grid_rows
    # The most recent LOO_DAYS days only: each costs one profile fit, and two weeks of
    # hourly residuals (14 per hour of day) are enough for the band's quantiles.
    for d in np.unique(day[in_profile & ok])[-LOO_DAYS:]:
        held = grid.copy()
        cells = day[in_profile] == d
        held[rows[cells], how[in_profile][cells]] = np.nan
        loo, _ = _blend(held)
        at = np.flatnonzero(in_profile)[cells]
        expected = baseline[at] * loo[how[at]]
        residuals[at] = np.where(
            expected > 0, x[at] / np.where(expected > 0, expected, 1) - 1, np.nan
        )
    band_lo, band_hi = _residual_band(residuals, y.index.hour.to_numpy(), level)
    band_lo, band_hi = band_lo * BAND_WIDEN, band_hi * BAND_WIDEN

    hours_ahead = np.arange(1, len(future) + 1)
    trend = np.maximum(anchor + slope * (end_days + (hours_ahead - 0.5) / DAY), 0.0)
    point = trend * profile[_hour_of_week(future)]
    hod = future.hour.to_numpy()
    return Forecast(
        frame=_frame(point, point * (1 + band_lo[hod]), point * (1 + band_hi[hod]), future),
        level=level,
        method="profile",
        history_hours=observed,
        weekly_weight=weekly_weight,
        level_now=level_now,
        trend_per_day=slope,
        trend_since=y.index[np.argmax(day == start)] if start else y.index[0],
        notes=tuple(notes),
    )
