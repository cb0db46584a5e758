-- Raw tables: one row per sample, instance sighting, cost line and quality event.
--
-- Every raw table is a ReplacingMergeTree on its natural key, so a row written twice
-- is kept once after merges (read with FINAL for exact answers before a merge). Each
-- table also keeps the hashes of its last 1,000 insert blocks
-- (non_replicated_deduplication_window): the store sends a content hash of every batch
-- as insert_deduplication_token, so a retried task that re-sends an identical batch is
-- dropped at insert time, before any rollup view sees it.
--
-- Migrations never drop or rewrite user data: every statement here is idempotent
-- (IF NOT EXISTS) and later changes go in new files.

CREATE TABLE IF NOT EXISTS samples
(
    ts DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    tenant LowCardinality(String),
    provider LowCardinality(String),
    region LowCardinality(String),
    instance LowCardinality(String),
    deployment LowCardinality(String),
    engine LowCardinality(String),
    metric LowCardinality(String),
    value Float64 CODEC(ZSTD(1)),
    -- Labels as canonical JSON text (keys sorted, no spaces; '{}' when none), written
    -- by the store. Part of the natural key, so that ttft_seconds{quantile="0.5"} and
    -- {quantile="0.95"} at one ts are two samples. Read a label with
    -- JSONExtractString(labels, 'quantile'). A Map column cost 3x the insert time.
    labels LowCardinality(String)
)
ENGINE = ReplacingMergeTree
-- One partition per UTC day: a merge never rewrites an earlier day's rows again, so
-- background merges stop competing with inserts once a day is written (30 days at
-- 1,000 instances: 2.24 M rows/s against 1.86 with monthly partitions). 90 partitions
-- at the TTL; a day holds 11.5 M rows at that size.
PARTITION BY toDate(ts)
ORDER BY (tenant, provider, metric, instance, labels, ts)
TTL toDateTime(ts) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS instances
(
    ts DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    tenant LowCardinality(String),
    provider LowCardinality(String),
    instance String,
    region LowCardinality(String),
    instance_type LowCardinality(String),
    gpu_model LowCardinality(String),
    gpu_count UInt16,
    market LowCardinality(String),
    price_usd_per_hour Nullable(Float64),
    state LowCardinality(String),
    started_at Nullable(DateTime64(3, 'UTC')),
    labels String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, provider, instance, ts)
TTL toDateTime(ts) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- Costs are money: kept without TTL. A re-billed line for the same period and
-- resource replaces the earlier one (the latest insert wins on merge).
CREATE TABLE IF NOT EXISTS costs
(
    period_start DateTime64(3, 'UTC'),
    period_end DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    provider LowCardinality(String),
    service LowCardinality(String),
    resource String,
    amount Float64,
    currency LowCardinality(String),
    source LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(period_start)
ORDER BY (tenant, provider, service, resource, source, period_start, period_end)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS quality_events
(
    ts DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    tenant LowCardinality(String),
    provider LowCardinality(String),
    deployment LowCardinality(String),
    config_id LowCardinality(String),
    kind LowCardinality(String),
    item_id String,
    exact_match Nullable(Float64),
    f1 Nullable(Float64),
    judge_score Nullable(Float64),
    latency_seconds Nullable(Float64)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, deployment, config_id, kind, item_id, ts)
TTL toDateTime(ts) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;
