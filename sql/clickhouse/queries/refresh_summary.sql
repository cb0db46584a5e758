-- Rebuild the 30-day summary (samples_summary) from the daily rollup and sketch.
-- The window is the 30 UTC calendar days ending today: day >= toDate(now('UTC')) - 29.
-- p95 is the nearest-rank 95th percentile (the value of rank ceil(0.95 * n)) read
-- from the merged histogram: the representative value 2 * gamma^i / (gamma + 1) of its
-- bucket is within 1% of that sample's value.

TRUNCATE TABLE IF EXISTS samples_summary_next;

INSERT INTO samples_summary_next
SELECT
    d.tenant, d.provider, d.metric, d.instance, d.labels,
    d.n, d.total / d.n AS avg, q.p95, d.min_value, d.max_value, d.first_ts, d.last_ts,
    toDate(now('UTC')) - 29 AS window_start,
    now('UTC') AS refreshed_at
FROM
(
    SELECT
        tenant, provider, metric, instance, labels,
        sum(n) AS n, sum(total) AS total,
        min(min_value) AS min_value, max(max_value) AS max_value,
        min(first_ts) AS first_ts, max(last_ts) AS last_ts
    FROM samples_daily
    WHERE day >= toDate(now('UTC')) - 29
    GROUP BY tenant, provider, metric, instance, labels
) AS d
LEFT JOIN
(
    -- sumMap merges the days' histograms of a series into one, keys sorted.
    SELECT
        tenant, provider, metric, instance, labels,
        sumMap([bucket], [n]) AS histogram,
        arrayCumSum(histogram.2) AS cumulative,
        histogram.1[arrayFirstIndex(x -> x >= ceil(0.95 * cumulative[-1]), cumulative)]
            AS p95_bucket,
        if(p95_bucket = 0, 0.,
           sign(p95_bucket) * 2 * pow(1.0202020202020203, abs(p95_bucket) - 1100)
           / (1.0202020202020203 + 1)) AS p95
    FROM samples_daily_sketch
    WHERE day >= toDate(now('UTC')) - 29
    GROUP BY tenant, provider, metric, instance, labels
) AS q
USING (tenant, provider, metric, instance, labels)
WHERE d.n > 0;

EXCHANGE TABLES samples_summary AND samples_summary_next;
