"""Replica schedules from load forecasts, the hour-of-day profile an autoscaler takes,
capacity runway, and replicas needed from engine pressure.

* :func:`replica_schedule` sizes each forecast hour on ``max(upper, point x headroom)``
  (the interval's upper end where the forecast is uncertain, the headroom where it is
  confident), never below ``min_replicas``, and only scales down once the lower need has
  lasted ``scale_down_delay_hours`` (a one-hour dip keeps its replicas).
* :meth:`ReplicaSchedule.by_hour_of_day` folds it into 24 values for weekdays and 24 for
  weekends (the busiest day of each kind), with KEDA-style cron windows.
* :func:`runway` finds the first hour the forecast's upper bound exceeds the fleet's
  capacity at the current growth, and the replicas to add to last ``weeks_ahead`` weeks.
* :func:`replicas_from_pressure` turns queue depth and batch occupancy into replicas
  needed, so schedules follow the engine rather than GPU utilisation.

Details and figures: ``docs/forecasting.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from agents.resource.forecast import WEEK, Forecast, forecast_load
from optiinfra.errors import OptiInfraError

_CRON_DAYS = {"weekday": "1-5", "weekend": "0,6", "every_day": "*"}


class ScheduleError(OptiInfraError):
    """A schedule, runway or pressure input is out of range or malformed."""


def _positive(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ScheduleError(f"{name}: must be a positive number, got {value!r}")
    return float(value)


# ------------------------------------------------------------------ hour-of-day profile


@dataclass(frozen=True)
class HourOfDaySchedule:
    """Replicas for each UTC hour (index 0..23) on weekdays and on weekends.

    ``weekend`` is None when it equals ``weekday`` (one profile for every day) or when
    the forecast covered no weekend day; each value is the most any forecast day of that
    kind needed at that hour, so the profile can repeat week after week.
    """

    weekday: tuple[int, ...]
    weekend: tuple[int, ...] | None
    min_replicas: int
    timezone: str = "UTC"

    @property
    def differs(self) -> bool:
        return self.weekend is not None

    def cron_windows(self) -> list[dict[str, str]]:
        """Runs of equal replica counts above the floor as KEDA cron triggers
        (``timezone``, ``start``, ``end``, ``desiredReplicas``; Linux cron, UTC). A run
        that reaches midnight ends at ``0 0 * * *``; the floor is ``min_replicas``."""
        profiles = {"weekday": self.weekday, "weekend": self.weekend}
        if self.weekend is None:
            profiles = {"every_day": self.weekday}
        windows = []
        for kind, hours in profiles.items():
            if hours is None:
                continue
            start = 0
            for hour in range(1, 25):
                if hour < 24 and hours[hour] == hours[start]:
                    continue
                if hours[start] > self.min_replicas:
                    end = f"0 {hour} * * {_CRON_DAYS[kind]}" if hour < 24 else "0 0 * * *"
                    windows.append(
                        {
                            "timezone": self.timezone,
                            "start": f"0 {start} * * {_CRON_DAYS[kind]}",
                            "end": end,
                            "desiredReplicas": str(hours[start]),
                        }
                    )
                start = hour
        return windows

    def as_config(self) -> dict[str, Any]:
        """Plain data for an autoscaler: the floor, the 24-hour profiles, cron windows."""
        config: dict[str, Any] = {"timezone": self.timezone, "min_replicas": self.min_replicas}
        if self.weekend is None:
            config["every_day"] = list(self.weekday)
        else:
            config["weekday"], config["weekend"] = list(self.weekday), list(self.weekend)
        config["cron"] = self.cron_windows()
        return config


# --------------------------------------------------------------------- replica schedule


@dataclass(frozen=True)
class ReplicaSchedule:
    """Replicas for each forecast hour.

    ``frame`` columns: ``point``, ``upper`` (forecast, rps), ``required_rps`` (what each
    hour is sized for), ``needed`` (replicas before hysteresis), ``replicas`` and
    ``capacity_rps`` (replicas x capacity per replica).
    """

    frame: pd.DataFrame
    capacity_rps_per_replica: float
    headroom: float
    min_replicas: int
    max_replicas: int | None
    scale_down_delay_hours: int
    gpus_per_replica: int

    @property
    def replicas(self) -> pd.Series:
        return self.frame["replicas"]

    @property
    def hours(self) -> int:
        return len(self.frame)

    @property
    def gpu_hours(self) -> float:
        return float(self.replicas.sum() * self.gpus_per_replica)

    @property
    def static_replicas(self) -> int:
        """A fixed allocation sized for the schedule's peak hour."""
        return int(self.replicas.max())

    @property
    def static_gpu_hours(self) -> float:
        return float(self.static_replicas * self.hours * self.gpus_per_replica)

    @property
    def gpu_hours_saved(self) -> float:
        return self.static_gpu_hours - self.gpu_hours

    @property
    def saved_fraction(self) -> float:
        return self.gpu_hours_saved / self.static_gpu_hours if self.static_gpu_hours else 0.0

    @property
    def capped_hours(self) -> int:
        """Hours where ``max_replicas`` stopped the schedule short of its need."""
        if self.max_replicas is None:
            return 0
        raw = np.ceil(self.frame["required_rps"] / self.capacity_rps_per_replica - 1e-9)
        return int((raw > self.max_replicas).sum())

    def shortfall_hours(self, actual: pd.Series) -> int:
        """Hours (of those ``actual`` has, NaN skipped) where the scheduled capacity was
        below the actual load."""
        joined = pd.concat([self.frame["capacity_rps"], actual.rename("actual")], axis=1)
        joined = joined.dropna()
        return int((joined["capacity_rps"] < joined["actual"]).sum())

    def by_hour_of_day(self) -> HourOfDaySchedule:
        replicas = self.replicas
        weekend_mask = replicas.index.day_of_week >= 5
        hour = replicas.index.hour

        def profile(mask: np.ndarray) -> tuple[int, ...] | None:
            if not mask.any():
                return None
            peak = replicas[mask].groupby(hour[mask]).max().reindex(range(24))
            peak = peak.fillna(peak.max())  # an hour the horizon missed: that kind's peak
            return tuple(int(v) for v in peak)

        weekday, weekend = profile(~weekend_mask), profile(weekend_mask)
        if weekday is None:
            weekday, weekend = weekend, None
        if weekend == weekday:
            weekend = None
        assert weekday is not None
        return HourOfDaySchedule(weekday=weekday, weekend=weekend, min_replicas=self.min_replicas)


def replica_schedule(
    forecast: Forecast | pd.DataFrame,
    capacity_rps_per_replica: float,
    headroom: float = 1.2,
    min_replicas: int = 1,
    max_replicas: int | None = None,
    scale_down_delay_hours: int = 1,
    *,
    gpus_per_replica: int = 1,
) -> ReplicaSchedule:
    """Replicas for each hour of ``forecast`` (a :class:`Forecast` or a frame with
    ``point`` and ``upper`` columns on an hourly index).

    Each hour is sized on ``max(upper, point x headroom)`` requests/s. Scale-up is
    immediate; scale-down waits until the lower need has lasted more than
    ``scale_down_delay_hours`` hours (a trailing maximum over that many hours plus one),
    so a dip no longer than the delay keeps its replicas.
    """
    capacity = _positive("capacity_rps_per_replica", capacity_rps_per_replica)
    if not (math.isfinite(headroom) and headroom >= 1):
        raise ScheduleError(f"headroom: must be >= 1, got {headroom!r}")
    if min_replicas < 0:
        raise ScheduleError(f"min_replicas: must be >= 0, got {min_replicas}")
    if max_replicas is not None and max_replicas < max(min_replicas, 1):
        raise ScheduleError(
            f"max_replicas: must be >= min_replicas ({min_replicas}) and >= 1, got {max_replicas}"
        )
    if scale_down_delay_hours < 0:
        raise ScheduleError(f"scale_down_delay_hours: must be >= 0, got {scale_down_delay_hours}")
    if gpus_per_replica < 1:
        raise ScheduleError(f"gpus_per_replica: must be >= 1, got {gpus_per_replica}")
    frame = forecast.frame if isinstance(forecast, Forecast) else forecast
    missing = {"point", "upper"} - set(frame.columns)
    if missing:
        raise ScheduleError(f"forecast: missing column(s) {sorted(missing)}")
    if frame[["point", "upper"]].isna().any().any():
        raise ScheduleError("forecast: point/upper contain NaN")
    point = frame["point"].to_numpy(float)
    upper = frame["upper"].to_numpy(float)
    required = np.maximum(upper, point * headroom)
    needed = np.ceil(required / capacity - 1e-9).astype(int)
    needed = np.maximum(needed, min_replicas)
    if max_replicas is not None:
        needed = np.minimum(needed, max_replicas)
    held = pd.Series(needed).rolling(scale_down_delay_hours + 1, min_periods=1).max().to_numpy(int)
    out = pd.DataFrame(
        {
            "point": point,
            "upper": upper,
            "required_rps": required,
            "needed": needed,
            "replicas": held,
            "capacity_rps": held * capacity,
        },
        index=frame.index,
    )
    return ReplicaSchedule(
        frame=out,
        capacity_rps_per_replica=capacity,
        headroom=float(headroom),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        scale_down_delay_hours=scale_down_delay_hours,
        gpus_per_replica=gpus_per_replica,
    )


# ------------------------------------------------------------------------------ runway


@dataclass(frozen=True)
class Runway:
    """When the fleet runs out at the current growth, and what lasts ``weeks_ahead``.

    ``exceeds_at`` is the first forecast hour whose upper bound is above
    ``capacity_rps_total`` (None: not within ``horizon_weeks``); ``replicas_to_add`` is
    None when no per-replica capacity was given.
    """

    exceeds_at: pd.Timestamp | None
    capacity_rps_total: float
    horizon_weeks: int
    growth_per_week: float
    peak_upper_next_week: float
    weeks_ahead: int
    peak_upper_weeks_ahead: float
    extra_rps_needed: float
    replicas_to_add: int | None
    forecast: Forecast

    @property
    def date(self) -> date | None:
        return self.exceeds_at.date() if self.exceeds_at is not None else None

    @property
    def days_left(self) -> float | None:
        if self.exceeds_at is None:
            return None
        start = self.forecast.frame.index[0]
        return (self.exceeds_at - start) / pd.Timedelta(days=1)


def runway(
    series: pd.Series,
    capacity_rps_total: float,
    *,
    horizon_weeks: int = 26,
    weeks_ahead: int = 4,
    capacity_rps_per_replica: float | None = None,
    level: float = 0.9,
) -> Runway:
    """Capacity runway of a request-rate series against a fleet's total capacity.

    The forecast's trend is extrapolated linearly; its interval does not widen with the
    horizon, so a date months away is a "at today's growth" figure, not a promise.
    """
    total = _positive("capacity_rps_total", capacity_rps_total)
    if horizon_weeks < 1 or weeks_ahead < 0:
        raise ScheduleError(
            f"horizon_weeks must be >= 1 and weeks_ahead >= 0, got {horizon_weeks}, {weeks_ahead}"
        )
    per_replica = (
        _positive("capacity_rps_per_replica", capacity_rps_per_replica)
        if capacity_rps_per_replica is not None
        else None
    )
    hours = max(horizon_weeks, weeks_ahead, 1) * WEEK
    fc = forecast_load(series, horizon_hours=hours, level=level)
    upper = fc.upper
    over = upper[upper > total]
    ahead = upper.iloc[: max(weeks_ahead, 1) * WEEK] if weeks_ahead else upper.iloc[:0]
    peak_ahead = float(ahead.max()) if len(ahead) else 0.0
    extra = max(0.0, peak_ahead - total)
    return Runway(
        exceeds_at=over.index[0] if len(over) else None,
        capacity_rps_total=total,
        horizon_weeks=horizon_weeks,
        growth_per_week=fc.growth_per_week,
        peak_upper_next_week=float(upper.iloc[:WEEK].max()),
        weeks_ahead=weeks_ahead,
        peak_upper_weeks_ahead=peak_ahead,
        extra_rps_needed=extra,
        replicas_to_add=math.ceil(extra / per_replica - 1e-9) if per_replica else None,
        forecast=fc,
    )


# ------------------------------------------------------------------ engine pressure


PRESSURE_COLUMNS = ("instances", "running_mean", "waiting_mean")


def replicas_from_pressure(
    hourly: pd.DataFrame,
    max_num_seqs: int,
    *,
    target_occupancy: float = 0.7,
    waiting_tolerance: float = 0.5,
    min_replicas: int = 1,
    max_replicas: int | None = None,
) -> pd.DataFrame:
    """Replicas needed per hour from what the engines report.

    ``hourly`` has, per hour, ``instances`` (replicas serving), ``running_mean`` and
    ``waiting_mean`` (requests running / waiting, mean per replica: the context's hourly
    frame). Demand is every request in the system, ``instances x (running + waiting)``;
    a replica offers ``max_num_seqs`` batch slots, or only the ``running`` it managed
    while requests waited with slots free (the KV cache or the token budget is the
    limit then, not ``max_num_seqs``). Replicas needed = ceil(demand / (target x slots)),
    which puts occupancy at ``target_occupancy`` and drains the queue.

    Returns the input's index with ``occupancy``, ``demand_seqs``, ``slots_per_replica``,
    ``limit`` ("max_num_seqs" or "admission") and ``replicas_needed`` (NA without data).
    """
    if max_num_seqs < 1:
        raise ScheduleError(f"max_num_seqs: must be >= 1, got {max_num_seqs}")
    if not 0 < target_occupancy <= 1:
        raise ScheduleError(f"target_occupancy: must be in (0, 1], got {target_occupancy}")
    missing = [c for c in PRESSURE_COLUMNS if c not in hourly.columns]
    if missing:
        raise ScheduleError(
            f"hourly: missing column(s) {missing}; expected {list(PRESSURE_COLUMNS)}"
        )
    values = {c: pd.to_numeric(hourly[c], errors="coerce").astype(float) for c in PRESSURE_COLUMNS}
    instances, running, waiting = (values[c].clip(lower=0) for c in PRESSURE_COLUMNS)
    queueing = waiting > waiting_tolerance
    admission_bound = queueing & (running < 0.95 * max_num_seqs) & (running > 0)
    slots = pd.Series(float(max_num_seqs), index=hourly.index).where(~admission_bound, running)
    demand = instances * (running + waiting)
    raw = np.ceil(demand / (target_occupancy * slots) - 1e-9)
    needed = raw.clip(lower=min_replicas, upper=max_replicas)
    return pd.DataFrame(
        {
            "occupancy": running / max_num_seqs,
            "demand_seqs": demand,
            "slots_per_replica": slots,
            "limit": np.where(admission_bound, "admission", "max_num_seqs"),
            "replicas_needed": needed.astype("Int64"),
        },
        index=hourly.index,
    )


def capacity_from_pressure(
    request_rate: pd.Series, pressure: pd.DataFrame, *, target_occupancy: float = 0.7
) -> float:
    """Requests/s one replica serves at the target occupancy, from history.

    By Little's law the requests in the system grow with the request rate, so each hour
    gives ``rate x target x slots / demand``; the median over the busiest quarter of
    hours (where the estimate is not noise) is returned. Feed it to
    :func:`replica_schedule` as ``capacity_rps_per_replica``.
    """
    joined = pd.concat(
        [request_rate.rename("rate"), pressure[["demand_seqs", "slots_per_replica"]]], axis=1
    ).dropna()
    joined = joined[(joined["demand_seqs"] > 0) & (joined["rate"] > 0)]
    if joined.empty:
        raise ScheduleError("request_rate/pressure: no hour with both traffic and demand")
    busy = joined[joined["demand_seqs"] >= joined["demand_seqs"].quantile(0.75)]
    per_hour = busy["rate"] * target_occupancy * busy["slots_per_replica"] / busy["demand_seqs"]
    return float(per_hour.median())
