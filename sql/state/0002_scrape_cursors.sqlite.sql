-- 0002 scrape cursors, SQLite flavour (the PostgreSQL flavour is 0002_scrape_cursors.postgresql.sql).
-- One row per (provider, direct-scrape target): the cumulative counter and histogram
-- values read at scraped_at, so the next collection computes rates over (then, now]
-- without scraping twice. Written by providers/prometheus after a successful collection;
-- no foreign key, so a cursor never blocks removing a provider (stale rows are pruned).

CREATE TABLE scrape_cursors (
    provider TEXT NOT NULL,
    target TEXT NOT NULL,
    scraped_at TIMESTAMP NOT NULL,
    payload JSON NOT NULL DEFAULT '{}' CHECK (json_valid(payload)),
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (provider, target)
);
