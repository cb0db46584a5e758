"""Benchmark of the embedded time-series store against DuckDB and PostgreSQL.

Loads N instances × 8 metrics × 1-minute samples × D days (default 1,000 × 30 =
345.6 M rows) into the embedded chDB store through ``TimeSeriesStore.write_samples``
(with every rollup view attached), one day per batch, then prints:

* insert rows/s (store API end to end: frame checks, content hash, insert, views);
* bytes on disk per raw row: raw + rollups + summary, active parts, as loaded;
* the 30-day per instance × metric summary (n, avg, p95, max) as dashboards read it
  from the precomputed summary (median of 5), and the cost of ``refresh_summary()``;
* the same summary computed from raw rows in chDB, in DuckDB on the same data, and in
  PostgreSQL on a tenth of it (the first 10% of instances, loaded with COPY).

Values are realistic rather than constant: a per-instance diurnal load with a random
walk drives GPU utilisation, KV-cache use, running/waiting requests, TTFT p95,
generation throughput, power and memory, rounded as exporters report them.

Example (a quick scaled-down run)::

    .venv/bin/python benchmarks/store_bench.py --instances 100 --days 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import reproduce_command
from optiinfra.store.timeseries import open_timeseries

MINUTES_PER_DAY = 1440
BLOCK = 100  # instances per random stream: a tenth of the fleet is a whole number of blocks
METRICS = (
    "gpu_utilization_ratio",
    "kv_cache_usage_ratio",
    "requests_running",
    "requests_waiting",
    "ttft_seconds",
    "generation_tokens_per_second",
    "gpu_power_watts",
    "gpu_memory_used_bytes",
)
PROVIDERS = ("aws", "gcp", "runpod", "vultr")
REGIONS = ("us-east-1", "europe-west4", "eu-ro-1", "ams")
TTFT_LABELS = '{"quantile":"0.95"}'
RAW_SUMMARY_CH = """
SELECT tenant, provider, instance, metric, labels,
       count() AS n, avg(value) AS avg, {quantile}(0.95)(value) AS p95, max(value) AS max
FROM samples
WHERE ts >= toStartOfDay(now('UTC')) - INTERVAL 29 DAY {extra}
GROUP BY tenant, provider, instance, metric, labels
"""
RAW_SUMMARY_DUCKDB = """
SELECT tenant, provider, instance, metric, labels,
       count(*) AS n, avg(value) AS avg, quantile_disc(value, 0.95) AS p95, max(value) AS max
FROM samples
WHERE ts >= date_trunc('day', now()) - INTERVAL 29 DAY
GROUP BY ALL
"""
RAW_SUMMARY_PG = """
SELECT tenant, provider, instance, metric, labels,
       count(*) AS n, avg(value) AS avg,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY value) AS p95, max(value) AS max
FROM bench_samples
WHERE ts >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - INTERVAL '29 days'
GROUP BY 1, 2, 3, 4, 5
"""


# -- data ---------------------------------------------------------------------------


def day_block_values(seed: int, day: int, block: int, count: int, day_start: pd.Timestamp):
    """Values of ``count`` instances × 8 metrics × 1,440 minutes: shape (8, count, 1440)."""
    rng = np.random.default_rng([seed, day, block])
    minute = np.arange(MINUTES_PER_DAY)
    hour_of_day = (day_start.hour * 60 + minute) / 60.0
    diurnal = 0.5 + 0.35 * np.sin(2 * np.pi * (hour_of_day - 8) / 24)
    walk = np.cumsum(rng.normal(0, 0.01, (count, MINUTES_PER_DAY)), axis=1)
    load = np.clip(diurnal * rng.uniform(0.6, 1.2, (count, 1)) + walk, 0, 1)
    noise = lambda scale: rng.normal(0, scale, (count, MINUTES_PER_DAY))  # noqa: E731
    return np.stack(
        [
            np.round(np.clip(load + noise(0.03), 0, 1), 3),
            np.round(np.clip(load * 0.9 + noise(0.02), 0, 1), 3),
            np.clip(np.round(load * 64 + noise(2)), 0, None),
            np.maximum(0, np.round((load - 0.7) * 100 + noise(3))),
            np.round(0.08 + 0.5 * load**3 + rng.exponential(0.02, (count, MINUTES_PER_DAY)), 4),
            np.clip(np.round(load * 2500 + noise(40), 1), 0, None),
            np.round(90 + load * 560 + noise(8), 1),
            np.round(70_000 + load * 8_000 + noise(50)) * 2**20,
        ]
    )


def day_frame(seed: int, day: int, instances: int, day_start: pd.Timestamp) -> pd.DataFrame:
    """One day of the fleet as a ``Sample.COLUMNS`` frame (categorical text columns)."""
    blocks = [
        day_block_values(seed, day, b, min(BLOCK, instances - b * BLOCK), day_start)
        for b in range((instances + BLOCK - 1) // BLOCK)
    ]
    values = np.concatenate(blocks, axis=1)  # (metric, instance, minute)
    n_metrics, n_instances, n_minutes = values.shape
    rows = values.size
    metric_codes = np.repeat(np.arange(n_metrics, dtype=np.int16), n_instances * n_minutes)
    instance_codes = np.tile(np.repeat(np.arange(n_instances), n_minutes), n_metrics)
    minute_offsets = np.tile(np.arange(n_minutes, dtype=np.int64), n_metrics * n_instances)
    ts_ms = day_start.value // 1_000_000 + minute_offsets * 60_000
    provider_codes = instance_codes % len(PROVIDERS)

    def categorical(codes: np.ndarray, names: list[str] | tuple[str, ...]) -> pd.Categorical:
        return pd.Categorical.from_codes(codes, categories=list(names))

    return pd.DataFrame(
        {
            "ts": pd.to_datetime(ts_ms, unit="ms", utc=True),
            "tenant": categorical(np.zeros(rows, dtype=np.int8), ["acme"]),
            "provider": categorical(provider_codes, PROVIDERS),
            "region": categorical(provider_codes, REGIONS),
            "instance": categorical(instance_codes, [f"i-{k:05d}" for k in range(n_instances)]),
            "deployment": categorical(instance_codes % 10, [f"llama-{d}" for d in range(10)]),
            "engine": categorical(np.zeros(rows, dtype=np.int8), ["vllm"]),
            "metric": categorical(metric_codes, METRICS),
            "value": values.reshape(-1),
            "labels": categorical(
                (metric_codes == METRICS.index("ttft_seconds")).astype(np.int8), ["{}", TTFT_LABELS]
            ),
        }
    )


def days_of_data(args: argparse.Namespace) -> Iterator[tuple[int, pd.Timestamp]]:
    """The last ``--days`` UTC days, today included (so all fall in the 30-day window)."""
    today = pd.Timestamp.now(tz="UTC").normalize()
    for day in range(args.days):
        yield day, today - pd.Timedelta(days=args.days - 1 - day)


# -- measuring ----------------------------------------------------------------------


def median_seconds(run: Callable[[], Any], runs: int) -> tuple[float, list[float], Any]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def load_chdb(args: argparse.Namespace, url: str, results: dict[str, Any]) -> None:
    store = open_timeseries(url, lock_timeout=600)
    store.ensure_schema()
    generate_s = insert_s = 0.0
    rows = 0
    with store.hold():  # one session for the bulk load
        for day, day_start in days_of_data(args):
            start = time.perf_counter()
            frame = day_frame(args.seed, day, args.instances, day_start)
            generate_s += time.perf_counter() - start
            start = time.perf_counter()
            rows += store.write_samples(frame)
            insert_s += time.perf_counter() - start
            print(
                f"  day {day + 1}/{args.days}: {rows:,} rows, {rows / insert_s / 1e6:.2f} M rows/s"
            )
    results["rows"] = rows
    results["generate_s"] = round(generate_s, 2)
    results["insert_s"] = round(insert_s, 2)
    results["insert_rows_per_s"] = round(rows / insert_s)

    results["merges_settle_s"] = wait_for_merges(store, args.settle_timeout)
    parts = store.query_df(
        "SELECT table, sum(rows) AS rows, sum(bytes_on_disk) AS bytes FROM system.parts "
        "WHERE active AND database = currentDatabase() GROUP BY table ORDER BY table"
    )
    by_table = {r.table: {"rows": int(r.rows), "bytes": int(r.bytes)} for r in parts.itertuples()}
    counted = ["samples", "samples_daily", "samples_daily_sketch"]
    results["disk"] = by_table

    refresh_s, refresh_all, _ = median_seconds(store.refresh_summary, args.runs)
    results["refresh_summary_s"] = {"median": round(refresh_s, 3), "runs": _round(refresh_all)}
    parts = store.query_df(
        "SELECT sum(bytes_on_disk) AS bytes FROM system.parts WHERE active "
        "AND database = currentDatabase() AND table = 'samples_summary'"
    )
    summary_bytes = int(parts["bytes"].fillna(0).iloc[0])
    total = sum(by_table.get(t, {}).get("bytes", 0) for t in counted) + summary_bytes
    results["bytes_per_row"] = {
        "raw": round(by_table["samples"]["bytes"] / rows, 3),
        "raw_rollups_summary": round(total / rows, 3),
    }

    with store.hold():
        read_s, read_all, summary = median_seconds(store.dashboard_summary, args.runs)
    results["dashboard_summary_in_open_session_s"] = {
        "median": round(read_s, 4),
        "runs": _round(read_all),
        "series": len(summary),
    }
    cold_s, cold_all, _ = median_seconds(store.dashboard_summary, args.runs)
    results["dashboard_summary_with_session_open_s"] = {
        "median": round(cold_s, 4),
        "runs": _round(cold_all),
    }
    with store.hold():
        for name, quantile, extra in (
            ("chdb_raw_exact", "quantileExact", ""),
            ("chdb_raw_approx", "quantile", ""),
            ("chdb_raw_exact_tenth", "quantileExact", _tenth_filter(args)),
        ):
            sql = RAW_SUMMARY_CH.format(quantile=quantile, extra=extra)
            seconds, runs, frame = median_seconds(lambda sql=sql: store.query_df(sql), args.runs)
            results[name + "_s"] = {
                "median": round(seconds, 3),
                "runs": _round(runs),
                "series": len(frame),
            }
            print(f"  {name}: {seconds:.3f} s ({len(frame)} series)")


def wait_for_merges(store: Any, timeout: float) -> float:
    """Let background merges of the bulk load finish (bounded), so that sizes and read
    timings describe a settled store rather than one still merging on both cores."""
    start = time.perf_counter()
    with store.hold():
        while time.perf_counter() - start < timeout:
            if int(store.query_df("SELECT count() AS n FROM system.merges")["n"].iloc[0]) == 0:
                break
            time.sleep(2)
    waited = time.perf_counter() - start
    print(f"  background merges settled after {waited:.0f} s (limit {timeout:.0f} s)")
    return round(waited, 1)


def _tenth_filter(args: argparse.Namespace) -> str:
    names = ", ".join(f"'i-{k:05d}'" for k in range(max(1, args.instances // 10)))
    return f"AND instance IN ({names})"


def run_duckdb(args: argparse.Namespace, workdir: Path, results: dict[str, Any]) -> None:
    import duckdb

    con = duckdb.connect(str(workdir / "bench.duckdb"))
    con.execute(
        "CREATE TABLE samples (ts TIMESTAMPTZ, tenant VARCHAR, provider VARCHAR, region VARCHAR, "
        "instance VARCHAR, deployment VARCHAR, engine VARCHAR, metric VARCHAR, value DOUBLE, "
        "labels VARCHAR)"
    )
    start = time.perf_counter()
    for day, day_start in days_of_data(args):
        frame = day_frame(args.seed, day, args.instances, day_start)
        con.execute("INSERT INTO samples SELECT * FROM frame")
    results["duckdb_load_s"] = round(time.perf_counter() - start, 2)
    con.execute("CHECKPOINT")
    seconds, runs, frame = median_seconds(lambda: con.execute(RAW_SUMMARY_DUCKDB).df(), args.runs)
    results["duckdb_raw_exact_s"] = {
        "median": round(seconds, 3),
        "runs": _round(runs),
        "series": len(frame),
    }
    results["duckdb_bytes_per_row"] = round(
        (workdir / "bench.duckdb").stat().st_size / results["rows"], 3
    )
    print(f"  duckdb raw: {seconds:.3f} s ({len(frame)} series)")
    con.close()


def run_postgres(args: argparse.Namespace, results: dict[str, Any]) -> None:
    import io

    import psycopg

    instances = max(1, args.instances // 10)
    with psycopg.connect(args.pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_samples")
        conn.execute(
            "CREATE UNLOGGED TABLE bench_samples (ts timestamptz, tenant text, provider text, "
            "region text, instance text, deployment text, engine text, metric text, "
            "value double precision, labels text)"
        )
        try:
            rows = 0
            start = time.perf_counter()
            for day, day_start in days_of_data(args):
                frame = day_frame(args.seed, day, instances, day_start)
                buffer = io.StringIO()
                frame.to_csv(buffer, index=False, header=False, date_format="%Y-%m-%d %H:%M:%S+00")
                with (
                    conn.cursor() as cur,
                    cur.copy("COPY bench_samples FROM STDIN (FORMAT csv)") as copy,
                ):
                    copy.write(buffer.getvalue())
                rows += len(frame)
            results["pg_rows"] = rows
            results["pg_load_s"] = round(time.perf_counter() - start, 2)
            conn.execute("VACUUM ANALYZE bench_samples")
            conn.execute(f"SET work_mem = '{args.pg_work_mem}'")
            seconds, runs, cursor_rows = median_seconds(
                lambda: conn.execute(RAW_SUMMARY_PG).fetchall(), args.pg_runs
            )
            results["pg_raw_exact_tenth_s"] = {
                "median": round(seconds, 3),
                "runs": _round(runs),
                "series": len(cursor_rows),
                "work_mem": args.pg_work_mem,
            }
            print(f"  postgres raw (tenth): {seconds:.3f} s ({len(cursor_rows)} series)")
        finally:
            conn.execute("DROP TABLE IF EXISTS bench_samples")


def _round(values: list[float]) -> list[float]:
    return [round(v, 4) for v in values]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30, help="at most 30 (the summary window)")
    parser.add_argument("--runs", type=int, default=5, help="runs per timed query (median)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir")
    parser.add_argument("--keep", action="store_true", help="keep the stores afterwards")
    parser.add_argument("--skip-duckdb", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--pg-runs", type=int, default=5)
    parser.add_argument("--pg-work-mem", default="256MB")
    parser.add_argument(
        "--settle-timeout", type=float, default=300, help="max wait for merges after the load"
    )
    parser.add_argument("--json", type=Path, default=None, help="write results here (JSON)")
    args = parser.parse_args(argv)
    if not 1 <= args.days <= 30:
        parser.error("--days must be between 1 and 30 (the summary covers 30 days)")

    command = reproduce_command("store_bench.py")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="optiinfra-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": command,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "instances": args.instances,
        "days": args.days,
        "metrics": len(METRICS),
    }
    print(f"Reproduce with: {command}")
    print(
        f"{args.instances} instances × {len(METRICS)} metrics × 1-minute samples × {args.days} days"
    )
    try:
        load_chdb(args, f"chdb://{workdir / 'metrics'}", results)
        if not args.skip_duckdb:
            run_duckdb(args, workdir, results)
        if not args.skip_postgres:
            run_postgres(args, results)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        print(f"results written to {args.json}")
    return 0


def report(r: dict[str, Any]) -> None:
    print()
    print(f"rows loaded (chDB, all rollup views attached): {r['rows']:,}")
    print(
        f"insert: {r['insert_rows_per_s'] / 1e6:.2f} M rows/s  (store API end to end; "
        f"generation {r['generate_s']} s not counted)"
    )
    b = r["bytes_per_row"]
    print(
        f"bytes on disk per raw row: {b['raw']} raw only; {b['raw_rollups_summary']} "
        "raw + daily rollup + daily sketch + summary (active parts, after merges settled)"
    )
    print(f"refresh_summary(): median {r['refresh_summary_s']['median']} s")
    print(
        f"dashboard summary (precomputed), in an open session: median "
        f"{r['dashboard_summary_in_open_session_s']['median'] * 1000:.1f} ms "
        f"({r['dashboard_summary_in_open_session_s']['series']} series); including the "
        "embedded session open/close: "
        f"{r['dashboard_summary_with_session_open_s']['median'] * 1000:.1f} ms"
    )
    for key, label in (
        ("chdb_raw_exact_s", "same summary from raw rows, chDB, exact p95"),
        ("chdb_raw_approx_s", "same summary from raw rows, chDB, approximate p95"),
        ("duckdb_raw_exact_s", "same summary from raw rows, DuckDB, exact p95"),
        ("chdb_raw_exact_tenth_s", "raw summary, chDB, exact p95, first 10% of instances"),
        ("pg_raw_exact_tenth_s", "raw summary, PostgreSQL, exact p95, same 10% of instances"),
    ):
        if key in r:
            print(f"{label}: median {r[key]['median']} s")
    if "pg_raw_exact_tenth_s" in r:
        ratio = r["pg_raw_exact_tenth_s"]["median"] / r["chdb_raw_exact_tenth_s"]["median"]
        print(f"PostgreSQL / chDB on the same tenth (raw, exact): {ratio:.1f}x")


if __name__ == "__main__":
    raise SystemExit(main())
