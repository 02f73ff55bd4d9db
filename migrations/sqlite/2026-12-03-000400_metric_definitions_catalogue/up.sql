-- Metric definitions (issue 13): GitLab's metric definitions export, as imported by
-- `version-app metrics import FILE.yml`; an import replaces every row in one transaction.
CREATE TABLE metric_definitions (
    key_path TEXT PRIMARY KEY NOT NULL,
    description TEXT,
    product_group TEXT,
    value_type TEXT,
    status TEXT,
    -- 7d, 28d, all or none: decides the time-frame rule for this key path
    time_frame TEXT NOT NULL,
    data_source TEXT,
    -- the definition's tiers, comma-separated (free, premium, ultimate)
    tier TEXT
);

-- The metric catalogue rollup: per key, the lowest and highest GitLab version that sent it.
-- `*_sort` orders versions (major * 10^9 + minor * 10^6 + patch).
CREATE TABLE insights_metric_catalogue (
    key_id BIGINT PRIMARY KEY NOT NULL,
    first_version TEXT NOT NULL,
    first_sort BIGINT NOT NULL,
    last_version TEXT NOT NULL,
    last_sort BIGINT NOT NULL
);

-- Per key and calendar month: the installations (internal and staging hosts left out) whose
-- counted submission of the month carries the key.
CREATE TABLE insights_key_months (
    key_id BIGINT NOT NULL,
    period_start DATE NOT NULL,
    installations BIGINT NOT NULL,
    PRIMARY KEY (period_start, key_id)
);
