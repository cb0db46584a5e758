-- Recompute the sample rollups of whole UTC days [{start}, {end}) from deduplicated raw
-- rows (FINAL). Use it after writing a batch that partially overlaps an earlier,
-- different batch: raw rows are deduplicated, but the views counted both batches.
-- Inserts here skip block deduplication: a recomputed block may equal an old one.

ALTER TABLE samples_daily DELETE WHERE day >= {start} AND day < {end};

ALTER TABLE samples_daily_sketch DELETE WHERE day >= {start} AND day < {end};

-- The views of samples_daily_stage refill samples_daily_sketch and samples_daily.
INSERT INTO samples_daily_stage
SELECT
    tenant, provider, metric, instance, labels,
    toDate(toDateTime(ts, 'UTC')) AS day,
    if(abs(finite_value) < 1e-9, 0,
       toInt32(sign(finite_value))
       * (toInt32(ceil(log(greatest(abs(finite_value), 1e-9)) / 0.020000666706669)) + 1100)
    ) AS bucket,
    count() AS n,
    sum(value) AS total,
    min(value) AS min_value,
    max(value) AS max_value,
    min(ts) AS first_ts,
    max(ts) AS last_ts
FROM
(
    SELECT *, if(isFinite(value), value, 0) AS finite_value
    FROM samples FINAL
    WHERE ts >= toDateTime64({start}, 3, 'UTC') AND ts < toDateTime64({end}, 3, 'UTC')
)
GROUP BY tenant, provider, metric, instance, labels, day, bucket;
