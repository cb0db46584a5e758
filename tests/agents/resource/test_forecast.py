"""Load forecasts on seeded synthetic LLM traffic: held-out error, interval coverage,
seasonality, trend, level shifts and the edge cases (short, all-zero, gappy series).

Run with ``-s`` to see the figures: ``.venv/bin/python -m pytest tests/agents/resource -s``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from agents.resource.forecast import (
    ForecastError,
    clean_hourly,
    forecast_load,
    holdout_error,
)
from tests.agents.resource.traffic import START, llm_traffic


def test_four_weeks_of_history_forecast_the_held_out_week() -> None:
    results = [holdout_error(llm_traffic(seed=seed), holdout_days=7) for seed in range(3)]
    for seed, r in enumerate(results):
        print(
            f"\nseed {seed}: WAPE {r.wape:.3f}  bias {r.bias:+.3f}  p90 APE {r.p90_ape:.3f}  "
            f"coverage {r.coverage:.2f} (nominal {r.level})  hours {r.hours}"
        )
        assert r.method == "profile" and r.hours == 168
        assert r.wape < 0.10  # measured 0.066-0.077 (noise alone gives ~0.064)
        assert abs(r.bias) < 0.05
        assert r.p90_ape < 0.25
        assert r.p90_ape_by_hour.index.tolist() == list(range(24))
        assert r.p90_ape_by_hour.notna().all()
    coverage = np.mean([r.coverage for r in results])
    assert 0.80 <= coverage <= 0.97, coverage


def test_three_weeks_total_one_held_out_still_forecasts_well() -> None:
    r = holdout_error(llm_traffic(weeks=4, seed=11), holdout_days=7)
    print(f"\n3 weeks fit: WAPE {r.wape:.3f} coverage {r.coverage:.2f}")
    assert r.wape < 0.12
    assert r.coverage > 0.75


def test_profile_and_fourier_methods_compared() -> None:
    """The alternative (log-linear Fourier least squares) on the same data and on a level
    shift: close on smooth traffic, clearly worse after a step (it fits one trend)."""
    rows = []
    for name, make in {
        "smooth": lambda seed: llm_traffic(seed=seed),
        "step": lambda seed: with_step(llm_traffic(seed=seed), days_before_end=17),
    }.items():
        for method in ("profile", "fourier"):
            runs = [holdout_error(make(seed), 7, method=method) for seed in range(3)]
            wape = float(np.mean([r.wape for r in runs]))
            coverage = float(np.mean([r.coverage for r in runs]))
            rows.append((name, method, wape, coverage))
            print(f"\n{name:6} {method:8} WAPE {wape:.3f} coverage {coverage:.2f}")
    table = {(name, method): (wape, cov) for name, method, wape, cov in rows}
    assert table["smooth", "fourier"][0] < 0.10 and table["smooth", "profile"][0] < 0.10
    assert abs(table["smooth", "fourier"][0] - table["smooth", "profile"][0]) < 0.02
    assert table["step", "profile"][0] < table["step", "fourier"][0] - 0.02


def test_weekday_and_weekend_shapes_are_forecast() -> None:
    fc = forecast_load(llm_traffic(weeks=4, seed=2), horizon_hours=168)
    point = fc.point
    weekday_peak = point[(point.index.day_of_week < 5)].groupby(lambda t: t.hour).mean()
    weekend_peak = point[(point.index.day_of_week >= 5)].groupby(lambda t: t.hour).mean()
    assert weekday_peak.idxmax() in (14, 15, 16)
    assert weekend_peak.idxmax() in (16, 17, 18)
    ratio = weekend_peak.sum() / weekday_peak.sum()
    assert 0.5 < ratio < 0.7  # the generator's weekend factor is 0.6
    assert 4 < weekday_peak.max() / weekday_peak.min() < 8  # peak-to-trough ~6
    # The generator has no hour-of-week effect beyond weekday/weekend: the per-hour-of-week
    # medians are noise around the weekday/weekend profile and are shrunk away.
    assert fc.weekly_weight < 0.2
    assert (fc.lower <= fc.point).all() and (fc.point <= fc.upper).all()
    assert fc.frame.index[0] == pd.Timestamp("2026-10-26 00:00", tz="UTC")


def test_a_weekly_batch_job_is_kept_in_the_profile() -> None:
    """Mondays 02:00-04:59 carry a bulk job (+3x): an hour-of-week effect that the
    shrinkage toward the weekday profile must not smooth away."""
    series = llm_traffic(weeks=4, seed=12, gaps=False)
    job = (series.index.day_of_week == 0) & (series.index.hour >= 2) & (series.index.hour < 5)
    series[job] *= 3.0
    point = forecast_load(series, horizon_hours=48).point  # Monday and Tuesday
    monday, tuesday = point.iloc[2:5].mean(), point.iloc[26:29].mean()
    assert monday / tuesday == pytest.approx(3.0, rel=0.15)


def test_growth_is_measured_and_extrapolated() -> None:
    series = llm_traffic(weeks=4, seed=3, growth_per_week=0.05, gaps=False)
    fc = forecast_load(series, horizon_hours=168)
    # 5% of the *initial* level per week; relative to the level at the end that is 5/1.2.
    print(f"\ngrowth per week {fc.growth_per_week:.3f} (true {0.05 / 1.2:.3f})")
    assert fc.growth_per_week == pytest.approx(0.05 / 1.2, abs=0.012)
    last_week = series.iloc[-168:].mean()
    assert 1.01 < fc.point.mean() / last_week < 1.09


def test_short_history_gets_a_naive_daily_profile_with_a_wide_interval() -> None:
    series = llm_traffic(weeks=1, seed=4, gaps=False).iloc[:36]
    fc = forecast_load(series, horizon_hours=24)
    assert fc.method == "naive_daily" and fc.notes
    assert np.allclose(fc.upper, 2 * fc.point) and np.allclose(fc.lower, 0.5 * fc.point)
    assert fc.point.idxmax().hour in (14, 15, 16)
    with pytest.raises(ForecastError, match="observed hours"):
        forecast_load(series.iloc[:20])


def test_all_zero_series_forecasts_zero() -> None:
    index = pd.date_range(START, periods=3 * 168, freq="h", tz="UTC")
    zeros = pd.Series(0.0, index=index)
    fc = forecast_load(zeros, horizon_hours=48)
    assert (fc.frame == 0).all().all()
    r = holdout_error(zeros, holdout_days=7)
    assert math.isnan(r.wape) and math.isnan(r.p90_ape) and r.coverage == 1.0


def test_gaps_and_nans_do_not_leak_into_the_forecast() -> None:
    series = llm_traffic(seed=5)
    series[(series.index >= "2026-10-12") & (series.index < "2026-10-14")] = np.nan  # 2 days
    series.iloc[::17] = np.nan
    series.iloc[40] = -3.0  # a counter reset that got through: treated as missing
    series.iloc[41] = np.inf
    r = holdout_error(series, holdout_days=7)
    print(f"\ngappy: WAPE {r.wape:.3f} coverage {r.coverage:.2f}")
    assert r.forecast.frame.notna().all().all()
    assert r.wape < 0.11


def with_step(series: pd.Series, days_before_end: int, factor: float = 1.8) -> pd.Series:
    stepped = series.copy()
    stepped[stepped.index > stepped.index[-1] - pd.Timedelta(days=days_before_end)] *= factor
    return stepped


def test_a_step_change_restarts_the_trend() -> None:
    series = with_step(llm_traffic(weeks=4, seed=6, gaps=False), days_before_end=10)
    fc = forecast_load(series, horizon_hours=168)
    assert any("level shift" in note for note in fc.notes)
    assert fc.trend_since is not None
    assert abs((fc.trend_since - (series.index[-1] - pd.Timedelta(days=10))).days) <= 1
    # Forecast level against the stepped level of the last week (no new trend invented).
    assert fc.point.mean() / series.iloc[-168:].mean() == pytest.approx(1.0, abs=0.06)
    assert abs(fc.growth_per_week) < 0.05


def test_holdout_on_a_step_stays_bounded() -> None:
    r = holdout_error(with_step(llm_traffic(seed=7), days_before_end=17), 7)
    print(f"\nstep 10 days before the holdout: WAPE {r.wape:.3f} coverage {r.coverage:.2f}")
    assert r.wape < 0.12


def test_outages_and_bursts_in_history_do_not_bend_the_forecast() -> None:
    series = llm_traffic(seed=8, gaps=False)
    for start in (200, 420, 610):
        series.iloc[start : start + 4] = 0.0  # outages
    for start in (300, 500):
        series.iloc[start : start + 3] *= 3.0  # retry storms
    r = holdout_error(series, 7)
    print(f"\nincidents: WAPE {r.wape:.3f} coverage {r.coverage:.2f}")
    assert r.wape < 0.10


def test_timestamps_are_normalised_to_hourly_utc() -> None:
    naive = pd.Series(
        [1.0, 2.0, 4.0],
        index=pd.to_datetime(["2026-10-01 00:10", "2026-10-01 00:50", "2026-10-01 03:00"]),
    )
    hourly = clean_hourly(naive)
    assert str(hourly.index.tz) == "UTC"
    assert hourly.tolist()[0] == 1.5 and math.isnan(hourly.iloc[1]) and len(hourly) == 4
    paris = llm_traffic(weeks=2, seed=9, gaps=False).tz_convert("Europe/Paris")
    assert forecast_load(paris, 24).frame.index.equals(
        forecast_load(paris.tz_convert("UTC"), 24).frame.index
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([1.0, 2.0], "pandas Series"),
        (pd.Series([1.0, 2.0]), "DatetimeIndex"),
        (pd.Series([np.nan] * 30, index=pd.date_range(START, periods=30, freq="h")), "no finite"),
    ],
)
def test_bad_input_is_a_clear_error(bad: object, message: str) -> None:
    with pytest.raises(ForecastError, match=message):
        forecast_load(bad)  # type: ignore[arg-type]


def test_bad_options_are_clear_errors() -> None:
    series = llm_traffic(weeks=2, seed=10)
    with pytest.raises(ForecastError, match="level"):
        forecast_load(series, level=1.5)
    with pytest.raises(ForecastError, match="horizon_hours"):
        forecast_load(series, horizon_hours=0)
    with pytest.raises(ForecastError, match="method"):
        forecast_load(series, method="arima")  # type: ignore[arg-type]
