-- The precomputed 30-day summary dashboards and agents read: one row per series
-- (tenant, provider, metric, instance, labels). refresh_summary() rebuilds it from
-- samples_daily and samples_daily_sketch into samples_summary_next, then swaps the two
-- tables with EXCHANGE TABLES, so a reader sees the old or the new summary, never half.

CREATE TABLE IF NOT EXISTS samples_summary
(
    tenant LowCardinality(String),
    provider LowCardinality(String),
    metric LowCardinality(String),
    instance LowCardinality(String),
    labels LowCardinality(String),
    n UInt64,
    avg Float64,
    p95 Float64,
    min_value Float64,
    max_value Float64,
    first_ts DateTime64(3, 'UTC'),
    last_ts DateTime64(3, 'UTC'),
    window_start Date,
    refreshed_at DateTime('UTC')
)
ENGINE = MergeTree
ORDER BY (tenant, provider, metric, instance, labels);

CREATE TABLE IF NOT EXISTS samples_summary_next AS samples_summary;
