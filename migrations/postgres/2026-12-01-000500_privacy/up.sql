-- Version-check counts older than version_check_daily_retention_days, rolled up by month so
-- that totals stay right once the daily detail is gone (docs/privacy.md).
CREATE TABLE version_checks_monthly (
    -- first day of the UTC month
    month DATE NOT NULL,
    host TEXT NOT NULL,
    version TEXT NOT NULL,
    country TEXT NOT NULL,
    count BIGINT NOT NULL,
    last_seen TIMESTAMP NOT NULL,
    PRIMARY KEY (month, host, version, country)
);
CREATE INDEX version_checks_monthly_host ON version_checks_monthly (host, month);

-- One row per `version-app erase`: only keyed hashes of what was erased, never the identifier.
CREATE TABLE erasures (
    id BIGSERIAL PRIMARY KEY,
    erased_at TIMESTAMP NOT NULL,
    -- JSON: rows removed per table
    removed TEXT NOT NULL
);

-- HMAC-SHA256(erasure_key, kind:value) of every identifier an erasure removed.
CREATE TABLE erasure_subjects (
    erasure_id BIGINT NOT NULL REFERENCES erasures (id) ON DELETE CASCADE,
    subject_hash TEXT NOT NULL,
    PRIMARY KEY (subject_hash, erasure_id)
);
