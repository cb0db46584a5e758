-- 0002 scrape cursors, PostgreSQL flavour (the SQLite flavour is 0002_scrape_cursors.sqlite.sql).
-- One row per (provider, direct-scrape target): the cumulative counter and histogram
-- values read at scraped_at, so the next collection computes rates over (then, now]
-- without scraping twice. Written by providers/prometheus after a successful collection;
-- no foreign key, so a cursor never blocks removing a provider (stale rows are pruned).

CREATE TABLE scrape_cursors (
    provider TEXT NOT NULL,
    target TEXT NOT NULL,
    scraped_at TIMESTAMPTZ NOT NULL,
    payload JSONB NOT NULL DEFAULT '{}',
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (provider, target)
);
