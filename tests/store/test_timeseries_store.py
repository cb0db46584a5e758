"""The time-series store through its URL and public API, on a real engine on disk."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optiinfra.errors import StoreError
from optiinfra.models import CostRecord, Instance, QualityEvent, Sample
from optiinfra.store.timeseries import open_timeseries
from optiinfra.store.timeseries.sqlfiles import DEFAULT_SQL_DIR

MakeSamples = Callable[..., pd.DataFrame]


def canonical(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


def rollup_total(store, table: str) -> int:
    return int(store.query_df(f"SELECT sum(n) AS n FROM {table}")["n"].fillna(0).iloc[0])


def test_data_written_by_one_process_is_read_by_the_next(ts_url: str, run_python) -> None:
    writer = """
        import sys
        from datetime import UTC, datetime
        from optiinfra.models import Sample
        from optiinfra.store.timeseries import open_timeseries
        store = open_timeseries(sys.argv[1])
        store.ensure_schema()
        ts = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
        frame = Sample.to_frame([
            Sample(ts=ts, provider="aws", instance=f"i-{n}", metric="gpu_utilization_ratio",
                   value=n / 10, labels={"gpu": str(n)})
            for n in range(5)
        ])
        print(store.write_samples(frame))
    """
    reader = """
        import sys
        from datetime import UTC, datetime
        from optiinfra.store.timeseries import open_timeseries
        store = open_timeseries(sys.argv[1])
        frame = store.recent_samples(since=datetime(2026, 11, 20, tzinfo=UTC))
        print(store.schema_version(), store.row_counts()["samples"], sorted(frame["value"]),
              frame["labels"].iloc[0])
    """
    assert run_python(writer, ts_url).stdout.strip() == "5"
    out = run_python(reader, ts_url).stdout.strip()
    version, count, rest = out.split(" ", 2)
    assert int(version) >= 3
    assert count == "5"
    assert rest.startswith("[0.0, 0.1, 0.2, 0.3")
    assert "'gpu': '0'" in rest


def test_ensure_schema_is_idempotent_and_versioned(ts_url: str) -> None:
    store = open_timeseries(ts_url)
    assert store.schema_version() == 0
    files = sorted(DEFAULT_SQL_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    latest = int(files[-1].name[:4])
    assert store.ensure_schema() == latest
    tables_before = set(store.query_df("SHOW TABLES")["name"])
    assert store.ensure_schema() == latest
    assert set(store.query_df("SHOW TABLES")["name"]) == tables_before
    history = store.query_df("SELECT version, name, checksum FROM schema_migrations FINAL")
    assert sorted(history["version"].astype(int)) == [int(f.name[:4]) for f in files]
    assert {"samples", "instances", "costs", "quality_events"} <= tables_before
    assert store.schema_version() == latest


def test_a_new_migration_is_applied_once_and_an_edited_one_is_refused(
    ts_url: str, tmp_path: Path
) -> None:
    sql_dir = tmp_path / "sql"
    shutil.copytree(DEFAULT_SQL_DIR, sql_dir)
    store = open_timeseries(ts_url, sql_dir=sql_dir)
    first = store.ensure_schema()
    store.write_samples(
        pd.DataFrame(
            [
                Sample(
                    ts=datetime(2026, 11, 20, tzinfo=UTC),
                    provider="p",
                    instance="i",
                    metric="m",
                    value=1.0,
                ).model_dump()
            ]
        )
    )

    extra = sql_dir / f"{first + 1:04d}_notes.sql"
    extra.write_text("CREATE TABLE IF NOT EXISTS notes (id UInt32) ENGINE = MergeTree ORDER BY id;")
    store = open_timeseries(ts_url, sql_dir=sql_dir)
    assert store.ensure_schema() == first + 1
    assert store.ensure_schema() == first + 1
    assert "notes" in set(store.query_df("SHOW TABLES")["name"])

    edited = sorted(sql_dir.glob("0001_*.sql"))[0]
    edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")
    with pytest.raises(StoreError, match=edited.name):
        open_timeseries(ts_url, sql_dir=sql_dir).ensure_schema()
    assert open_timeseries(ts_url).row_counts()["samples"] == 1  # nothing lost


def test_same_batch_twice_is_stored_and_rolled_up_once(ts_url: str, make_samples) -> None:
    store = open_timeseries(ts_url)
    batch = make_samples(instances=2, minutes=30)
    assert store.write_samples(batch) == len(batch)
    assert store.write_samples(batch.copy()) == len(batch)  # a retried task re-sends it

    assert store.row_counts()["samples"] == len(batch)
    store.query_df("OPTIMIZE TABLE samples FINAL")  # let the engine merge, then count plainly
    assert int(store.query_df("SELECT count() AS n FROM samples")["n"].iloc[0]) == len(batch)
    for table in ("samples_daily", "samples_daily_sketch"):
        assert rollup_total(store, table) == len(batch), table
    store.refresh_summary()
    summary = store.dashboard_summary()
    assert int(summary["n"].sum()) == len(batch)
    assert set(summary["n"]) == {30}


def test_a_differently_ordered_overlap_is_deduplicated_raw_and_rebuild_fixes_rollups(
    ts_url: str, make_samples
) -> None:
    store = open_timeseries(ts_url)
    batch = make_samples(instances=1, minutes=60)
    store.write_samples(batch)
    overlap = batch.iloc[::-1].head(len(batch) // 2)  # different batch, same rows
    store.write_samples(overlap)
    assert store.row_counts()["samples"] == len(batch)
    assert rollup_total(store, "samples_daily") == len(batch) + len(overlap)  # documented limit

    days = pd.to_datetime(batch["ts"], utc=True).dt.date
    store.rebuild_rollups(days.min(), days.max() + timedelta(days=1))
    for table in ("samples_daily", "samples_daily_sketch"):
        assert rollup_total(store, table) == len(batch), table


def test_labels_are_part_of_the_sample_key(ts_url: str) -> None:
    store = open_timeseries(ts_url)
    ts = datetime(2026, 11, 20, 12, tzinfo=UTC)
    frame = Sample.to_frame(
        [
            Sample(
                ts=ts,
                provider="vllm",
                instance="a",
                metric="ttft_seconds",
                value=0.1,
                labels={"quantile": "0.5", "model": "llama"},
            ),
            Sample(
                ts=ts,
                provider="vllm",
                instance="a",
                metric="ttft_seconds",
                value=0.9,
                labels={"quantile": "0.95", "model": "llama"},
            ),
        ]
    )
    store.write_samples(frame)
    back = store.recent_samples(since=ts)
    assert sorted(back["value"]) == [0.1, 0.9]
    assert {"quantile": "0.95", "model": "llama"} in list(back["labels"])
    reordered = frame.assign(
        labels=[{"model": "llama", "quantile": "0.5"}, {"quantile": "0.95", "model": "llama"}]
    )
    store.write_samples(reordered.assign(value=[0.2, 0.8]))  # same keys: replaces, not adds
    assert store.row_counts()["samples"] == 2
    assert sorted(store.recent_samples(since=ts)["value"]) == [0.2, 0.8]


def test_summary_matches_pandas_on_the_same_data(ts_url: str, make_samples) -> None:
    store = open_timeseries(ts_url)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    batches = [
        make_samples(instances=3, minutes=240, start=now - timedelta(days=3), seed=1),
        make_samples(
            instances=2, minutes=180, start=now - timedelta(days=1, hours=5), seed=2, provider="gcp"
        ),
    ]
    signed = (
        batches[0]
        .head(50)
        .assign(metric="power_delta_watts", value=lambda f: np.linspace(-40.0, 35.0, len(f)))
    )  # negative, zero-crossing values
    with store.hold():
        for frame in [*batches, signed]:
            store.write_samples(frame)
        store.refresh_summary()
        summary = store.dashboard_summary()

    data = pd.concat([*batches, signed], ignore_index=True)
    data["labels"] = data["labels"].map(canonical)
    summary["labels"] = summary["labels"].map(canonical)
    keys = ["tenant", "provider", "instance", "metric", "labels"]
    merged = summary.merge(
        data.groupby(keys)
        .agg(
            exp_n=("value", "size"),
            exp_avg=("value", "mean"),
            exp_min=("value", "min"),
            exp_max=("value", "max"),
            exp_first=("ts", "min"),
            exp_last=("ts", "max"),
            exp_p95=("value", lambda v: np.quantile(v, 0.95, method="inverted_cdf")),
        )
        .reset_index(),
        on=keys,
        how="outer",
        indicator=True,
    )

    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"]
    assert (merged["n"] == merged["exp_n"]).all()
    np.testing.assert_allclose(merged["avg"], merged["exp_avg"], rtol=1e-9, atol=1e-12)
    assert (merged["max"] == merged["exp_max"]).all()
    assert (merged["min"] == merged["exp_min"]).all()
    # The sketch's stated bound: within 1% of the true nearest-rank p95.
    error = (merged["p95"] - merged["exp_p95"]).abs()
    assert (error <= 0.01 * merged["exp_p95"].abs() + 1e-9).all(), merged[["p95", "exp_p95"]]
    assert (pd.to_datetime(merged["first_ts"], utc=True) == merged["exp_first"]).all()
    assert (pd.to_datetime(merged["last_ts"], utc=True) == merged["exp_last"]).all()

    only_gcp = store.dashboard_summary(provider="gcp")
    assert set(only_gcp["provider"]) == {"gcp"} and len(only_gcp) == 2 * 3
    assert store.dashboard_summary(tenant="nobody").empty


def test_summary_excludes_days_outside_the_30_day_window(ts_url: str, make_samples) -> None:
    store = open_timeseries(ts_url)
    recent = make_samples(instances=1, minutes=10)
    old = make_samples(instances=1, minutes=10, start=datetime.now(UTC) - timedelta(days=45))
    store.write_samples(pd.concat([recent, old], ignore_index=True))
    store.refresh_summary()
    assert int(store.dashboard_summary()["n"].sum()) == len(recent)


def test_tables_declare_partitions_ordering_ttl_and_codecs(ts_url: str) -> None:
    store = open_timeseries(ts_url)
    store.ensure_schema()
    tables = store.query_df(
        "SELECT name, partition_key, sorting_key, create_table_query FROM system.tables "
        "WHERE database = currentDatabase()"
    ).set_index("name")
    samples = tables.loc["samples"]
    assert samples["partition_key"] == "toDate(ts)"
    assert samples["sorting_key"].startswith("tenant, provider, metric, instance")
    assert "TTL toDateTime(ts) + toIntervalDay(90)" in samples["create_table_query"]
    assert "ReplacingMergeTree" in samples["create_table_query"]
    assert "CODEC(DoubleDelta" in samples["create_table_query"]
    for rollup in ("samples_daily", "samples_daily_sketch"):
        assert tables.loc[rollup, "partition_key"].startswith("toYYYYMM(")
    views = store.query_df(
        "SELECT name FROM system.tables WHERE engine = 'MaterializedView' "
        "AND database = currentDatabase()"
    )
    assert {"samples_daily_stage_mv", "samples_daily_mv", "samples_daily_sketch_mv"} <= set(
        views["name"]
    )


def test_empty_frames_write_nothing(ts_url: str) -> None:
    store = open_timeseries(ts_url)
    for write, model in (
        (store.write_samples, Sample),
        (store.write_instances, Instance),
        (store.write_costs, CostRecord),
        (store.write_quality_events, QualityEvent),
    ):
        assert write(pd.DataFrame(columns=list(model.COLUMNS))) == 0
    assert store.row_counts() == {"samples": 0, "instances": 0, "costs": 0, "quality_events": 0}


def test_a_frame_with_wrong_columns_is_refused_naming_them(ts_url: str, make_samples) -> None:
    store = open_timeseries(ts_url)
    store.write_samples(make_samples(instances=1, minutes=5))
    bad = make_samples(instances=1, minutes=5).drop(columns=["metric", "labels"])
    with pytest.raises(StoreError, match=r"samples frame: missing columns metric, labels"):
        store.write_samples(bad)
    with pytest.raises(StoreError, match=r"unexpected columns colour"):
        store.write_samples(make_samples(instances=1, minutes=5).assign(colour="red"))
    with pytest.raises(StoreError, match=r"costs frame: missing columns amount"):
        store.write_costs(pd.DataFrame(columns=[c for c in CostRecord.COLUMNS if c != "amount"]))
    assert store.row_counts()["samples"] == 15  # the earlier batch is intact


def test_non_finite_values_are_not_stored(ts_url: str, make_samples) -> None:
    store = open_timeseries(ts_url)
    batch = make_samples(instances=1, minutes=4)
    batch.loc[[0, 5], "value"] = [float("nan"), float("inf")]
    assert store.write_samples(batch) == len(batch) - 2
    assert store.row_counts()["samples"] == len(batch) - 2


def test_inventory_costs_and_quality_round_trip_idempotently(ts_url: str) -> None:
    store = open_timeseries(ts_url)
    ts = datetime(2026, 11, 20, 8, tzinfo=UTC)
    instances = Instance.to_frame(
        [
            Instance(
                ts=ts,
                provider="aws",
                instance="i-1",
                instance_type="p4d.24xlarge",
                gpu_model="A100",
                gpu_count=8,
                price_usd_per_hour=32.77,
                labels={"team": "x"},
            ),
            Instance(ts=ts, provider="runpod", instance="pod-9", market="spot"),
        ]
    )
    costs = CostRecord.to_frame(
        [
            CostRecord(
                period_start=ts,
                period_end=ts + timedelta(days=1),
                provider="aws",
                service="EC2",
                resource="i-1",
                amount=786.48,
            ),
        ]
    )
    quality = QualityEvent.to_frame(
        [
            QualityEvent(ts=ts, deployment="llama", item_id="q1", exact_match=1.0, f1=0.8),
            QualityEvent(ts=ts, deployment="llama", item_id="q2", judge_score=0.5),
        ]
    )
    for _ in range(2):
        assert store.write_instances(instances) == 2
        assert store.write_costs(costs) == 1
        assert store.write_quality_events(quality) == 2
    assert store.row_counts() == {"samples": 0, "instances": 2, "costs": 1, "quality_events": 2}

    inventory = store.query_df(
        "SELECT instance, gpu_count, market, price_usd_per_hour, labels "
        "FROM instances FINAL ORDER BY instance"
    )
    assert list(inventory["gpu_count"]) == [8, 0]
    assert list(inventory["market"]) == ["on_demand", "spot"]
    assert inventory["price_usd_per_hour"].iloc[0] == pytest.approx(32.77)
    assert pd.isna(inventory["price_usd_per_hour"].iloc[1])
    assert json.loads(inventory["labels"].iloc[0]) == {"team": "x"}
    scores = store.query_df(
        "SELECT item_id, f1, judge_score FROM quality_events FINAL ORDER BY item_id"
    )
    assert scores["f1"].iloc[0] == pytest.approx(0.8) and pd.isna(scores["f1"].iloc[1])
    assert store.query_df("SELECT sum(amount) AS s FROM costs FINAL")["s"].iloc[0] == pytest.approx(
        786.48
    )


def test_calls_inside_hold_share_one_session(ts_url: str, make_samples) -> None:
    store = open_timeseries(ts_url)
    with store.hold():
        store.ensure_schema()
        store.write_samples(make_samples(instances=1, minutes=3))
        with store.hold():  # re-entrant
            assert store.row_counts()["samples"] == 9
        store.refresh_summary()
    assert len(store.dashboard_summary()) == 3


def test_quoting_keeps_hostile_filter_values_as_data(ts_url: str, make_samples) -> None:
    store = open_timeseries(ts_url)
    store.write_samples(make_samples(instances=1, minutes=3, provider="o'brien\\"))
    store.refresh_summary()
    assert len(store.dashboard_summary(provider="o'brien\\")) == 3
    assert store.dashboard_summary(provider="x' OR '1'='1").empty
    since = datetime.now(UTC) - timedelta(days=1)
    assert len(store.recent_samples(since=since, provider="o'brien\\")) == 9
