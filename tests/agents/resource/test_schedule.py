"""Replica schedules, hour-of-day profiles, runway and engine-pressure signals, on the
same seeded synthetic traffic as the forecast tests.

Run with ``-s`` to see the figures: ``.venv/bin/python -m pytest tests/agents/resource -s``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import gamma

from agents.resource.forecast import forecast_load
from agents.resource.schedule import (
    ScheduleError,
    capacity_from_pressure,
    replica_schedule,
    replicas_from_pressure,
    runway,
)
from tests.agents.resource.traffic import llm_traffic

CAPACITY = 3.0  # rps one replica serves within its latency targets


def frame(point: list[float], upper: list[float] | None = None) -> pd.DataFrame:
    index = pd.date_range("2026-10-26", periods=len(point), freq="h", tz="UTC")
    return pd.DataFrame({"point": point, "upper": upper or point}, index=index)


@pytest.mark.parametrize("seed", [0, 1])
def test_schedule_serves_the_held_out_week_with_fewer_gpu_hours(seed: int) -> None:
    series = llm_traffic(weeks=5, seed=seed)
    history, actual = series.iloc[:-168], series.iloc[-168:]
    schedule = replica_schedule(forecast_load(history, 168), CAPACITY, gpus_per_replica=2)
    short = schedule.shortfall_hours(actual)
    print(
        f"\nseed {seed}: GPU-hours scheduled {schedule.gpu_hours:.0f} vs static peak "
        f"{schedule.static_gpu_hours:.0f} ({schedule.static_replicas} replicas x 168 h x 2 GPUs): "
        f"saved {schedule.gpu_hours_saved:.0f} ({schedule.saved_fraction:.0%}); "
        f"hours short of capacity {short}/168"
    )
    assert short <= 3
    assert schedule.gpu_hours < 0.75 * schedule.static_gpu_hours
    assert (schedule.replicas >= 1).all()
    # Every hour is sized on the larger of the interval's top and point x headroom.
    sized = np.maximum(schedule.frame["upper"], 1.2 * schedule.frame["point"])
    assert np.allclose(schedule.frame["required_rps"], sized)
    assert (schedule.frame["capacity_rps"] >= schedule.frame["required_rps"] - 1e-9).all()


def test_a_single_hour_dip_does_not_scale_down() -> None:
    dip = replica_schedule(frame([9, 9, 6, 9, 9]), CAPACITY, headroom=1.0)
    assert dip.frame["needed"].tolist() == [3, 3, 2, 3, 3]
    assert dip.replicas.tolist() == [3, 3, 3, 3, 3]
    long_dip = replica_schedule(frame([9, 6, 6, 6, 9]), CAPACITY, headroom=1.0)
    assert long_dip.replicas.tolist() == [3, 3, 2, 2, 3]  # down after the delay, up at once
    patient = replica_schedule(frame([9, 6, 6, 6, 9]), CAPACITY, 1.0, scale_down_delay_hours=3)
    assert patient.replicas.tolist() == [3, 3, 3, 3, 3]
    eager = replica_schedule(frame([9, 6, 9]), CAPACITY, 1.0, scale_down_delay_hours=0)
    assert eager.replicas.tolist() == [3, 2, 3]


def test_floor_cap_headroom_and_upper_bound() -> None:
    quiet = replica_schedule(frame([0.0, 0.0, 0.1]), CAPACITY, min_replicas=2)
    assert quiet.replicas.tolist() == [2, 2, 2]
    capped = replica_schedule(frame([30.0, 3.0, 3.0]), CAPACITY, max_replicas=5)
    assert capped.replicas.max() == 5 and capped.capped_hours == 1
    # Narrow interval: point x headroom decides; wide interval: the upper bound does.
    narrow = replica_schedule(frame([10.0], upper=[10.5]), CAPACITY, headroom=1.2)
    wide = replica_schedule(frame([10.0], upper=[20.0]), CAPACITY, headroom=1.2)
    assert narrow.replicas.iloc[0] == 4 and wide.replicas.iloc[0] == 7  # 12/3, ceil(20/3)


def test_hour_of_day_profile_splits_weekdays_and_weekends() -> None:
    fc = forecast_load(llm_traffic(weeks=4, seed=3), 168)
    profile = replica_schedule(fc, CAPACITY).by_hour_of_day()
    print(f"\nweekday {list(profile.weekday)}\nweekend {list(profile.weekend or [])}")
    assert profile.differs and profile.weekend is not None
    assert max(profile.weekday) > max(profile.weekend)
    assert int(np.argmax(profile.weekday)) in range(13, 18)
    config = profile.as_config()
    assert config["timezone"] == "UTC" and len(config["weekday"]) == len(config["weekend"]) == 24
    cron = re.compile(r"^0 \d{1,2} \* \* (1-5|0,6|\*)$")
    for window in config["cron"]:
        assert cron.match(window["start"]) and cron.match(window["end"])
        assert int(window["desiredReplicas"]) > profile.min_replicas
    # Rebuild the weekday profile from its cron windows: they are exact.
    rebuilt = [profile.min_replicas] * 24
    for window in config["cron"]:
        if window["start"].endswith("1-5"):
            start = int(window["start"].split()[1])
            end = int(window["end"].split()[1]) or 24
            rebuilt[start:end] = [int(window["desiredReplicas"])] * (end - start)
    assert rebuilt == list(profile.weekday)


def test_hour_of_day_profile_without_a_weekend_difference() -> None:
    flat = frame([6.0] * 24 + [9.0] * 24)  # Monday and Tuesday only
    profile = replica_schedule(flat, CAPACITY, headroom=1.0).by_hour_of_day()
    assert profile.weekend is None and not profile.differs
    assert profile.weekday == (3,) * 24  # the busiest weekday of the horizon
    assert set(profile.as_config()) == {"timezone", "min_replicas", "every_day", "cron"}


def test_runway_finds_the_week_capacity_runs_out() -> None:
    """Launch-phase series (+10% of the first week's level per week, 4 weeks of history):
    the date is within a few days of the truth on most seeds. Its error is about the
    peak's relative error (2-4% from 4 weeks of history) divided by the weekly growth,
    and leans early: the first crossing is the noisiest-high peak of the forecast."""
    growth, noise, weeks = 0.10, 0.08, 4
    q95 = gamma.ppf(0.95, 1 / noise**2, scale=noise**2)  # the generator's 95th-pct swing
    errors = []
    for seed in range(8):
        series = llm_traffic(weeks=weeks, seed=seed, growth_per_week=growth, noise=noise)
        future = pd.date_range(series.index[-1] + pd.Timedelta(hours=1), periods=26 * 168, freq="h")
        noiseless = llm_traffic(
            weeks=weeks + 26, seed=seed, growth_per_week=growth, noise=1e-4, gaps=False
        )
        true_upper = noiseless.reindex(future) * q95
        capacity = 1.4 * series.iloc[-168:].max()
        true_date = true_upper[true_upper > capacity].index[0]
        result = runway(series, capacity, weeks_ahead=8, capacity_rps_per_replica=CAPACITY)
        assert result.exceeds_at is not None and result.days_left is not None
        errors.append((result.exceeds_at - true_date) / pd.Timedelta(days=1))
        print(
            f"\nrunway seed {seed}: capacity {capacity:.1f} rps exceeded on {result.date} "
            f"({result.days_left:.1f} days; truth {true_date.date()}, "
            f"error {errors[-1]:+.1f} days); "
            f"growth {result.growth_per_week:.3f}/week; add {result.replicas_to_add} replicas "
            f"({result.extra_rps_needed:.1f} rps) to last 8 weeks"
        )
        assert result.date == result.exceeds_at.date()
        assert result.replicas_to_add is not None and result.replicas_to_add > 0
        more = capacity + result.replicas_to_add * CAPACITY
        after = runway(series, more, weeks_ahead=8)
        assert after.exceeds_at is None or after.days_left >= 8 * 7  # type: ignore[operator]
        assert after.replicas_to_add is None and after.extra_rps_needed == 0.0
    assert float(np.median(np.abs(errors))) <= 4
    assert max(abs(e) for e in errors) <= 10


def test_runway_without_growth_never_runs_out_and_already_short_runs_out_now() -> None:
    series = llm_traffic(weeks=4, seed=5)
    peak = series.max()
    assert runway(series, 1.5 * peak).exceeds_at is None
    short = runway(series, 0.5 * peak, capacity_rps_per_replica=CAPACITY)
    assert short.days_left is not None and short.days_left < 1.0
    assert short.replicas_to_add == math.ceil(
        (short.peak_upper_weeks_ahead - 0.5 * peak) / CAPACITY
    )


def engine_hours(
    rates: list[float],
    instances: int,
    max_num_seqs: int,
    latency_s: float,
    admit: int | None = None,
) -> pd.DataFrame:
    """Per-hour engine gauges of a fleet where each request stays ``latency_s`` seconds
    (Little's law) and each replica admits at most ``admit`` (default ``max_num_seqs``)."""
    admit = admit or max_num_seqs
    concurrency = np.asarray(rates) * latency_s / instances  # per replica
    running = np.minimum(concurrency, admit)
    index = pd.date_range("2026-10-26", periods=len(rates), freq="h", tz="UTC")
    return pd.DataFrame(
        {"instances": instances, "running_mean": running, "waiting_mean": concurrency - running},
        index=index,
    )


def test_replicas_from_pressure_target_occupancy_and_queue() -> None:
    hourly = engine_hours([5.0, 20.0, 60.0, 120.0], instances=4, max_num_seqs=64, latency_s=4.0)
    result = replicas_from_pressure(hourly, max_num_seqs=64)
    # demand = rate x 4 s: 20, 80, 240, 480 sequences; / (0.7 x 64 = 44.8) per replica
    assert result["replicas_needed"].tolist() == [1, 2, 6, 11]
    assert result["limit"].tolist() == ["max_num_seqs"] * 4
    assert result["occupancy"].iloc[3] == pytest.approx(1.0)  # saturated, 56/replica waiting
    # Occupancy at the target when the needed replicas serve the demand:
    assert 480 / (11 * 64) <= 0.7


def test_admission_bound_engine_counts_its_real_slots() -> None:
    # The KV cache lets only 40 run per replica though max_num_seqs is 64: 10 wait each.
    hourly = engine_hours([50.0], instances=4, max_num_seqs=64, latency_s=4.0, admit=40)
    result = replicas_from_pressure(hourly, max_num_seqs=64)
    assert result["limit"].iloc[0] == "admission"
    assert result["slots_per_replica"].iloc[0] == 40
    assert result["replicas_needed"].iloc[0] == math.ceil(200 / (0.7 * 40))  # 8, not 5


def test_pressure_gaps_bounds_and_capacity_estimate() -> None:
    rates = [2.0, 8.0, 15.0, 30.0, 45.0, 60.0, 50.0, 40.0]
    hourly = engine_hours(rates, instances=6, max_num_seqs=64, latency_s=4.0)
    hourly.loc[hourly.index[1], "running_mean"] = np.nan
    result = replicas_from_pressure(hourly, max_num_seqs=64, min_replicas=2, max_replicas=5)
    assert result["replicas_needed"].isna().tolist() == [False, True, *[False] * 6]
    assert result["replicas_needed"].dropna().between(2, 5).all()
    rate = pd.Series(rates, index=hourly.index)
    per_replica = capacity_from_pressure(rate, replicas_from_pressure(hourly, 64))
    assert per_replica == pytest.approx(0.7 * 64 / 4.0)  # 11.2 rps at 70% occupancy
    assert replica_schedule(frame([40.0]), per_replica, headroom=1.0).replicas.iloc[0] == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity_rps_per_replica": 0}, "capacity_rps_per_replica"),
        ({"capacity_rps_per_replica": 3, "headroom": 0.8}, "headroom"),
        ({"capacity_rps_per_replica": 3, "min_replicas": 4, "max_replicas": 2}, "max_replicas"),
        ({"capacity_rps_per_replica": 3, "scale_down_delay_hours": -1}, "scale_down_delay"),
    ],
)
def test_bad_schedule_options_are_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        replica_schedule(frame([1.0]), **kwargs)


def test_bad_pressure_and_forecast_frames_are_clear_errors() -> None:
    with pytest.raises(ScheduleError, match="waiting_mean"):
        replicas_from_pressure(pd.DataFrame({"instances": [1], "running_mean": [2]}), 64)
    with pytest.raises(ScheduleError, match="upper"):
        replica_schedule(pd.DataFrame({"point": [1.0]}), CAPACITY)
    with pytest.raises(ScheduleError, match="capacity_rps_total"):
        runway(llm_traffic(weeks=2), 0.0)
