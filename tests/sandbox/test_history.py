"""The daily cycle over a replayed trace, and the offered-load history written from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import ValidationError

from optiinfra.models import Sample
from optiinfra.sandbox.fleet import load_fleet
from optiinfra.sandbox.history import HistoryError, history_samples, offered_load
from optiinfra.sandbox.load import cycle_factor, schedule
from optiinfra.sandbox.spec import DailyCycle, DeploymentSpec, LoadSpec

#: A Wednesday, midnight UTC.
WEDNESDAY = datetime(2026, 11, 18, tzinfo=UTC)


def _epoch(at: datetime) -> float:
    return at.timestamp()


def _chat(**cycle: float) -> DeploymentSpec:
    return DeploymentSpec(
        name="chat",
        model="meta-llama/Llama-3.1-8B-Instruct",
        gpu="L4",
        replicas=3,
        load=LoadSpec(kind="trace", trace="azure-conv", rate_scale=0.5, cycle=DailyCycle(**cycle)),
    )


def test_the_cycle_peaks_at_its_hour_on_weekdays_and_is_lower_at_weekends() -> None:
    cycle = DailyCycle(peak_to_trough=3.0, peak_hour_utc=15, weekend_factor=0.6)
    peak = _epoch(WEDNESDAY + timedelta(hours=15))
    trough = _epoch(WEDNESDAY + timedelta(hours=3))
    saturday_peak = _epoch(WEDNESDAY + timedelta(days=3, hours=15))
    assert cycle_factor(cycle, peak) == pytest.approx(1.0)
    assert cycle_factor(cycle, trough) == pytest.approx(1 / 3)
    assert cycle_factor(cycle, saturday_peak) == pytest.approx(0.6)
    hours = np.arange(0, 7 * 86400, 600.0) + _epoch(WEDNESDAY)
    factors = cycle_factor(cycle, hours)
    assert factors.max() <= 1.0 + 1e-12 and factors.min() > 0


def test_day_jitter_gives_each_day_one_level_below_one() -> None:
    cycle = DailyCycle(peak_to_trough=1.0, day_jitter=0.3)  # flat within a day
    days = [_epoch(WEDNESDAY + timedelta(days=d)) for d in (0, 1)]  # Wed, Thu
    levels = [cycle_factor(cycle, np.array([t, t + 3600, t + 80000])) for t in days]
    for level in levels:
        assert np.ptp(level) == pytest.approx(0.0)
        assert 0.7 <= level[0] <= 1.0
    assert levels[0][0] != pytest.approx(levels[1][0])


def test_a_cycle_thins_the_trace_by_the_hour_of_day() -> None:
    d = _chat(peak_to_trough=4.0, peak_hour_utc=15, weekend_factor=1.0)
    peak = schedule(d.load, 3600, seed=1, start_epoch=_epoch(WEDNESDAY + timedelta(hours=15)))
    night = schedule(d.load, 3600, seed=1, start_epoch=_epoch(WEDNESDAY + timedelta(hours=3)))
    plain = schedule(d.load.model_copy(update={"cycle": None}), 3600, seed=1)
    assert len(peak) == pytest.approx(len(plain), rel=0.03)
    assert len(night) / len(peak) == pytest.approx(0.25, rel=0.1)
    assert np.all(np.diff(night.arrival_s) >= 0)


def test_a_cycle_only_shapes_a_trace() -> None:
    with pytest.raises(ValidationError, match="cycle shapes a replayed trace"):
        LoadSpec(kind="poisson", rps=2.0, cycle=DailyCycle())


def test_an_hours_offered_load_does_not_depend_on_the_span_asked_for() -> None:
    d = _chat(peak_to_trough=3.0)
    day = offered_load(d, WEDNESDAY, 24, seed=5)
    later = offered_load(d, WEDNESDAY + timedelta(hours=10), 4, seed=5)
    assert len(day) == 96 and len(later) == 16  # 15-minute bins
    assert later.to_numpy() == pytest.approx(day.iloc[40:56].to_numpy())
    hourly = day.resample("1h").mean()
    assert hourly.idxmax().hour in (14, 15, 16)
    assert hourly.max() / hourly.min() == pytest.approx(3.0, rel=0.2)
    with pytest.raises(HistoryError, match="step_s"):
        offered_load(d, WEDNESDAY, 1, step_s=7)


def test_history_samples_split_each_step_over_the_replicas_with_the_live_names() -> None:
    fleet = load_fleet("diurnal")
    end = WEDNESDAY + timedelta(hours=10, minutes=20)
    frame = history_samples(fleet, end, 2)
    assert list(frame.columns) == list(Sample.COLUMNS)
    chat = fleet.deployments[0]
    assert set(frame["instance"]) == {f"{chat.name}-{r}" for r in range(chat.replicas)}
    assert set(frame["metric"]) == {"request_success_per_second"}
    assert all(labels["history"] == "offered-load" for labels in frame["labels"])
    # 48 hours x 4 steps per replica, ending before the hour that holds ``end``
    assert len(frame) == 48 * 4 * chat.replicas
    assert frame["ts"].max() < WEDNESDAY + timedelta(hours=10)
    assert frame["ts"].min() >= WEDNESDAY + timedelta(hours=10) - timedelta(days=2)
    total = frame.groupby("ts")["value"].sum()
    offered = offered_load(chat, WEDNESDAY - timedelta(days=2) + timedelta(hours=10), 48, seed=23)
    assert total.to_numpy() == pytest.approx(offered.to_numpy())


def test_history_refuses_bad_spans_and_unknown_deployments() -> None:
    fleet = load_fleet("diurnal")
    with pytest.raises(HistoryError, match="days"):
        history_samples(fleet, WEDNESDAY, 0)
    with pytest.raises(HistoryError, match="nope"):
        history_samples(fleet, WEDNESDAY, 1, deployments=["nope"])
