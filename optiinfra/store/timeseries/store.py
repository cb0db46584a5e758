"""The time-series store: samples, inventory, costs and quality events in ClickHouse SQL.

The store builds SQL from ``sql/clickhouse`` and talks only to a
:class:`~optiinfra.store.timeseries.backend.Backend`, so the same statements run on
embedded chDB and on a ClickHouse server. Literals are quoted here
(:func:`quote_string`), never bound by a transport.

Writes are idempotent twice over: raw tables are ReplacingMergeTrees on their natural
key, and every batch carries ``insert_deduplication_token`` = a hash of its content, so
a retried identical batch is dropped before the rollup views count it. See
``docs/timeseries-store.md`` for the limits.
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optiinfra.errors import StoreError
from optiinfra.models import CostRecord, Instance, QualityEvent, Sample
from optiinfra.store.timeseries import frames
from optiinfra.store.timeseries.backend import Backend
from optiinfra.store.timeseries.sqlfiles import DEFAULT_SQL_DIR, load_migrations, load_query

log = logging.getLogger(__name__)

#: Raw tables, as ``row_counts()`` names them.
RAW_TABLES = ("samples", "instances", "costs", "quality_events")
_SAMPLE_TEXT_COLUMNS = (
    "tenant",
    "provider",
    "region",
    "instance",
    "deployment",
    "engine",
    "metric",
)

_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""


def quote_string(value: str) -> str:
    """A ClickHouse string literal: backslashes and quotes escaped."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_datetime(value: datetime) -> str:
    """A ``DateTime64(3, 'UTC')`` literal (naive datetimes are taken as UTC)."""
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return f"toDateTime64({quote_string(utc.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3])}, 3, 'UTC')"


def _insert_settings(token: str) -> dict[str, Any]:
    return {
        # Same batch again → dropped at insert, in the table and in its views.
        "insert_deduplication_token": token,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
        # Replacing merges happen later; merging inside each inserted block cost 2x.
        "optimize_on_insert": 0,
        # The views of one insert run in parallel (2 cores: 1.8 → 2.5 M rows/s).
        "parallel_view_processing": 1,
    }


class TimeSeriesStore:
    """Samples, inventory, costs and quality events, with rollups and a dashboard summary.

    Example::

        store = open_timeseries("chdb:///home/me/.optiinfra/metrics")
        store.ensure_schema()
        store.write_samples(Sample.to_frame(samples))
        store.refresh_summary()
        store.dashboard_summary(provider="aws")
    """

    def __init__(self, backend: Backend, *, sql_dir: Path = DEFAULT_SQL_DIR) -> None:
        self._backend = backend
        self._sql_dir = sql_dir
        self._schema_ready = False

    @property
    def display_url(self) -> str:
        return self._backend.display_url

    def __repr__(self) -> str:
        return f"TimeSeriesStore({self.display_url!r})"

    # -- sessions -------------------------------------------------------------------

    def hold(self) -> contextlib.AbstractContextManager[None]:
        """One session (embedded: one inter-process lock) for a block of calls."""
        return self._backend.hold()

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> TimeSeriesStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------------

    def schema_version(self) -> int:
        """The highest applied migration, 0 when the store has no schema yet."""
        with self.hold():
            if not self._table_exists("schema_migrations"):
                return 0
            frame = self._backend.query_df(
                "SELECT toUInt32(max(version)) AS version FROM schema_migrations"
            )
        return int(frame["version"].iloc[0]) if len(frame) else 0

    def ensure_schema(self) -> int:
        """Apply the migrations not applied yet, in order; return the schema version.

        Idempotent. A migration whose file changed after it was applied is an error
        naming the file: applied migrations are history, changes go in a new file.
        """
        migrations = load_migrations(self._sql_dir)
        with self.hold():
            self._backend.command(_MIGRATIONS_DDL)
            applied = self._backend.query_df(
                "SELECT version, name, checksum FROM schema_migrations FINAL ORDER BY version"
            )
            applied_sums = dict(
                zip(applied["version"].astype(int), applied["checksum"], strict=True)
            )
            for migration in migrations:
                recorded = applied_sums.get(migration.version)
                if recorded is not None:
                    if recorded != migration.checksum:
                        raise StoreError(
                            f"{migration.path}: migration {migration.version} was applied to "
                            f"{self.display_url} with checksum {recorded[:12]}…, but the file "
                            f"now hashes to {migration.checksum[:12]}…; never edit an applied "
                            "migration, add a new NNNN_*.sql file instead"
                        )
                    continue
                log.info("applying %s to %s", migration.path.name, self.display_url)
                for statement in migration.statements:
                    self._backend.command(statement)
                self._backend.command(
                    "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
                    f"SELECT {migration.version}, {quote_string(migration.name)}, "
                    f"{quote_string(migration.checksum)}, now64(3, 'UTC')"
                )
            version = max([m.version for m in migrations] + [int(v) for v in applied_sums])
        self._schema_ready = True
        return version

    def _ready(self) -> None:
        if not self._schema_ready:
            self.ensure_schema()

    def _table_exists(self, name: str) -> bool:
        frame = self._backend.query_df(
            "SELECT count() AS n FROM system.tables "
            f"WHERE database = currentDatabase() AND name = {quote_string(name)}"
        )
        return bool(int(frame["n"].iloc[0]))

    # -- writes ---------------------------------------------------------------------

    def write_samples(self, frame: pd.DataFrame) -> int:
        """Insert samples (``Sample.COLUMNS``) in one statement; return the rows sent.

        Rows whose value is NaN or infinite (Prometheus' "no data") are not stored.
        """
        frames.check_columns(frame, Sample.COLUMNS, table="samples")
        values = frames.float_column(frame["value"], column="samples.value", nullable=True)
        finite = np.isfinite(values.to_numpy())
        if not finite.all():
            frame, values = frame[finite], values[finite]
        if frame.empty:
            return 0
        prepared = pd.DataFrame(
            {
                "ts": frames.utc_times(frame["ts"], column="samples.ts"),
                **{name: frames.text_column(frame[name]) for name in _SAMPLE_TEXT_COLUMNS},
                "value": values,
                "labels": frames.labels_column(frame["labels"], table="samples"),
            }
        )
        return self._insert("samples", prepared)

    def write_instances(self, frame: pd.DataFrame) -> int:
        frames.check_columns(frame, Instance.COLUMNS, table="instances")
        if frame.empty:
            return 0
        texts = ("tenant", "provider", "instance", "region", "instance_type", "gpu_model")
        prepared = pd.DataFrame(
            {
                "ts": frames.utc_times(frame["ts"], column="instances.ts"),
                **{name: frames.text_column(frame[name]) for name in texts},
                "gpu_count": frames.float_column(
                    frame["gpu_count"].fillna(0), column="instances.gpu_count"
                ).astype("uint16"),
                "market": frames.text_column(frame["market"]),
                "price_usd_per_hour": frames.float_column(
                    frame["price_usd_per_hour"],
                    column="instances.price_usd_per_hour",
                    nullable=True,
                ),
                "state": frames.text_column(frame["state"]),
                "started_at": frames.utc_times(
                    frame["started_at"], column="instances.started_at", nullable=True
                ),
                "labels": frames.labels_column(frame["labels"], table="instances"),
            }
        )
        return self._insert("instances", prepared)

    def write_costs(self, frame: pd.DataFrame) -> int:
        frames.check_columns(frame, CostRecord.COLUMNS, table="costs")
        if frame.empty:
            return 0
        texts = ("tenant", "provider", "service", "resource", "currency", "source")
        prepared = pd.DataFrame(
            {
                "period_start": frames.utc_times(
                    frame["period_start"], column="costs.period_start"
                ),
                "period_end": frames.utc_times(frame["period_end"], column="costs.period_end"),
                **{name: frames.text_column(frame[name]) for name in texts},
                "amount": frames.float_column(frame["amount"], column="costs.amount"),
            }
        )
        return self._insert("costs", prepared)

    def write_quality_events(self, frame: pd.DataFrame) -> int:
        frames.check_columns(frame, QualityEvent.COLUMNS, table="quality_events")
        if frame.empty:
            return 0
        texts = ("tenant", "provider", "deployment", "config_id", "kind", "item_id")
        scores = ("exact_match", "f1", "judge_score", "latency_seconds")
        prepared = pd.DataFrame(
            {
                "ts": frames.utc_times(frame["ts"], column="quality_events.ts"),
                **{name: frames.text_column(frame[name]) for name in texts},
                **{
                    name: frames.float_column(
                        frame[name], column=f"quality_events.{name}", nullable=True
                    )
                    for name in scores
                },
            }
        )
        return self._insert("quality_events", prepared)

    def _insert(self, table: str, prepared: pd.DataFrame) -> int:
        token = frames.content_token(table, prepared)
        with self.hold():
            self._ready()
            self._backend.insert_df(table, prepared, settings=_insert_settings(token))
        return len(prepared)

    # -- rollups and summary --------------------------------------------------------

    def refresh_summary(self) -> None:
        """Rebuild the 30-day dashboard summary from the daily rollup and sketch."""
        statements = load_query("refresh_summary", self._sql_dir)
        with self.hold():
            self._ready()
            for statement in statements:
                self._backend.command(statement)

    def rebuild_rollups(self, start: date, end: date) -> None:
        """Recompute the rollups of UTC days ``[start, end)`` from deduplicated raw rows.

        Needed only after a batch that partially overlaps an earlier, different batch
        (the views counted the overlap twice; the raw table kept it once). Call
        :meth:`refresh_summary` afterwards.
        """
        if isinstance(start, datetime) or isinstance(end, datetime):
            raise StoreError("rebuild_rollups takes dates (whole UTC days), not datetimes")
        if end <= start:
            raise StoreError(f"rebuild_rollups: end {end} must be after start {start}")
        bounds = {
            "{start}": quote_string(start.isoformat()),
            "{end}": quote_string(end.isoformat()),
        }
        statements = load_query("rebuild_rollups", self._sql_dir)
        with self.hold():
            self._ready()
            for statement in statements:
                for placeholder, literal in bounds.items():
                    statement = statement.replace(placeholder, literal)
                settings = (
                    {"mutations_sync": 2}
                    if statement.startswith("ALTER")
                    else {"insert_deduplicate": 0, "parallel_view_processing": 1}
                )
                self._backend.command(statement, settings=settings)

    def dashboard_summary(
        self, *, tenant: str | None = None, provider: str | None = None
    ) -> pd.DataFrame:
        """The precomputed 30-day summary per (tenant, provider, instance, metric, labels).

        Columns: tenant, provider, instance, metric, labels (dict), n, avg, p95 (nearest
        rank, within 1%), min, max, first_ts, last_ts. As fresh as the last
        :meth:`refresh_summary`.
        """
        where = self._where(tenant=tenant, provider=provider)
        with self.hold():
            self._ready()
            frame = self._backend.query_df(
                "SELECT tenant, provider, instance, metric, labels, n, avg, p95, "
                "min_value AS `min`, max_value AS `max`, first_ts, last_ts "
                f"FROM samples_summary{where} "
                "ORDER BY tenant, provider, instance, metric, labels"
            )
        return _with_label_dicts(frame)

    def recent_samples(self, *, since: datetime, provider: str | None = None) -> pd.DataFrame:
        """Deduplicated raw samples with ``ts >= since`` (``Sample.COLUMNS``, labels as dicts)."""
        where = self._where(provider=provider)
        where += (" AND " if where else " WHERE ") + f"ts >= {quote_datetime(since)}"
        with self.hold():
            self._ready()
            frame = self._backend.query_df(
                f"SELECT {', '.join(Sample.COLUMNS)} FROM samples FINAL{where} "
                "ORDER BY tenant, provider, metric, instance, labels, ts"
            )
        if frame.empty:
            return pd.DataFrame(columns=list(Sample.COLUMNS))
        return _with_label_dicts(frame)

    def row_counts(self) -> dict[str, int]:
        """Logical rows per raw table: duplicates not yet merged away count once."""
        selects = ", ".join(f"(SELECT count() FROM {t} FINAL) AS {t}" for t in RAW_TABLES)
        with self.hold():
            self._ready()
            frame = self._backend.query_df(f"SELECT {selects}")
        return {table: int(frame[table].iloc[0]) for table in RAW_TABLES}

    def query_df(self, sql: str) -> pd.DataFrame:
        """Run a read-only SELECT of your own against the store."""
        with self.hold():
            return self._backend.query_df(sql)

    @staticmethod
    def _where(**equals: str | None) -> str:
        clauses = [f"{column} = {quote_string(value)}" for column, value in equals.items() if value]
        return (" WHERE " + " AND ".join(clauses)) if clauses else ""


def _with_label_dicts(frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical JSON labels → dicts, parsing each distinct text once."""
    if "labels" in frame.columns and len(frame):
        parsed = {text: json.loads(text or "{}") for text in frame["labels"].unique()}
        frame = frame.assign(labels=frame["labels"].map(lambda text: dict(parsed[text])))
    return frame
