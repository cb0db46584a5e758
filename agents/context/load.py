"""Read a :class:`FleetContext` from the time-series store with aggregate queries.

Four queries, each grouped in ClickHouse so only small frames reach Python:

* per-series statistics over the recent window (raw rows, read through the ordering
  key's time range; a 1-hour window of a 1,000-instance fleet is a few million rows);
* the newest inventory row of every instance seen in the window;
* running instances per hour over the history window (commitments, from inventory);
* per deployment and hour over the history window: the request rate summed over
  instances (forecasts and schedules; one metric, a prefix of the ordering key, so a
  small part of the raw rows);
* quality events of the quality window (days: a configuration's baseline predates the
  recent window).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from agents.context.fleet import INVENTORY_COLUMNS, FleetContext
from optiinfra.config import OptiInfraConfig
from optiinfra.store.timeseries import TimeSeriesStore
from optiinfra.store.timeseries.store import quote_datetime


@dataclass(frozen=True)
class ContextWindow:
    """How far back agents look."""

    #: Serving statistics (latency, queues, KV use, traffic): the recent window.
    recent: timedelta = timedelta(hours=1)
    #: Fleet history for commitments (reserved capacity / savings plans).
    history: timedelta = timedelta(days=30)
    #: Quality events: long enough that the configuration a deployment ran before its
    #: latest change (its quality baseline, often days old) is still in view.
    quality: timedelta = timedelta(days=14)


_RECENT_SQL = """
SELECT tenant, provider, deployment, instance, metric,
       JSONExtractString(labels, 'quantile') AS quantile,
       count() AS n, avg(value) AS mean, quantile(0.95)(value) AS p95,
       max(value) AS max, argMax(value, ts) AS last, min(ts) AS first_ts, max(ts) AS last_ts
FROM samples
WHERE ts >= {since} AND ts <= {until} AND isFinite(value)
GROUP BY tenant, provider, deployment, instance, metric, quantile
"""

_INVENTORY_SQL = """
SELECT tenant, provider, instance,
       argMax(region, ts) AS region, argMax(instance_type, ts) AS instance_type,
       argMax(gpu_model, ts) AS gpu_model, argMax(gpu_count, ts) AS gpu_count,
       argMax(market, ts) AS market, argMax(price_usd_per_hour, ts) AS price_usd_per_hour,
       argMax(state, ts) AS state, argMax(labels, ts) AS labels, max(ts) AS last_seen
FROM instances
WHERE ts >= {since} AND ts <= {until}
GROUP BY tenant, provider, instance
"""

_FLEET_HOURS_SQL = """
SELECT tenant, provider, JSONExtractString(labels, 'cloud') AS cloud, region,
       gpu_model AS gpu, gpu_count, market, toStartOfHour(ts) AS hour,
       uniqExact(instance) AS instances
FROM instances
WHERE ts >= {since} AND ts <= {until} AND state = 'running'
GROUP BY tenant, provider, cloud, region, gpu, gpu_count, market, hour
"""

_HOURLY_SQL = """
SELECT tenant, provider, deployment, hour,
       sumIf(mean, metric = 'request_success_per_second') AS request_rate,
       countIf(metric = 'request_success_per_second') AS instances,
       avgIf(mean, metric = 'requests_running') AS running_mean,
       avgIf(mean, metric = 'requests_waiting') AS waiting_mean
FROM
(
    SELECT tenant, provider, deployment, instance, metric, toStartOfHour(ts) AS hour,
           avg(value) AS mean
    FROM samples
    WHERE metric IN ('request_success_per_second', 'requests_running', 'requests_waiting')
      AND ts >= {since} AND ts <= {until} AND isFinite(value) AND deployment != ''
    GROUP BY tenant, provider, deployment, instance, metric, hour
)
GROUP BY tenant, provider, deployment, hour
HAVING instances > 0
"""

_QUALITY_SQL = """
SELECT ts, tenant, provider, deployment, config_id, kind, item_id,
       exact_match, f1, judge_score, latency_seconds
FROM quality_events
WHERE ts >= {since} AND ts <= {until}
"""


def load_context(
    store: TimeSeriesStore,
    config: OptiInfraConfig,
    *,
    now: datetime | None = None,
    window: ContextWindow | None = None,
) -> FleetContext:
    """The fleet as of ``now`` (default: the current time) for every tenant."""
    window = window or ContextWindow()
    now = (now or datetime.now(UTC)).astimezone(UTC)
    until = quote_datetime(now)
    since = quote_datetime(now - window.recent)
    history = quote_datetime(now - window.history)
    quality_since = quote_datetime(now - window.quality)
    with store.hold():
        recent = store.query_df(_RECENT_SQL.format(since=since, until=until))
        inventory = store.query_df(_INVENTORY_SQL.format(since=since, until=until))
        fleet_hours = store.query_df(_FLEET_HOURS_SQL.format(since=history, until=until))
        hourly = store.query_df(_HOURLY_SQL.format(since=history, until=until))
        quality = store.query_df(_QUALITY_SQL.format(since=quality_since, until=until))
    if inventory.empty:
        inventory = pd.DataFrame(columns=INVENTORY_COLUMNS)
    return FleetContext.from_frames(
        now=now,
        window_seconds=window.recent.total_seconds(),
        inventory=inventory,
        recent=recent,
        fleet_hours=fleet_hours,
        hourly=hourly,
        quality=quality,
        config=config,
    )
