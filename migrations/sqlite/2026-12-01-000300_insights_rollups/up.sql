-- Insights rollups (issue 13): derived from usage_data by the insights refresh job, never
-- written by ingest, and rebuilt from scratch by `version-app insights rebuild`.

-- Job bookkeeping, e.g. the highest usage_data.id processed (the watermark).
CREATE TABLE insights_state (
    name TEXT PRIMARY KEY NOT NULL,
    value BIGINT NOT NULL
);

-- One row per installation: the (uuid, hostname) pair analysts count.
CREATE TABLE insights_installations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL,
    hostname TEXT NOT NULL,
    -- internal (gitlab.com, *.gitlab.com) or staging (staging.*): left out by default
    excluded BOOLEAN NOT NULL,
    UNIQUE (uuid, hostname)
);

-- One row per processed submission, placed by its effective recorded_at.
CREATE TABLE insights_submissions (
    usage_data_id BIGINT PRIMARY KEY NOT NULL,
    installation_id BIGINT NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    version TEXT,
    version_major BIGINT,
    version_minor BIGINT,
    version_patch BIGINT,
    edition TEXT,
    tier TEXT NOT NULL,
    installation_type TEXT,
    country TEXT,
    active_user_count BIGINT
);
CREATE INDEX insights_submissions_installation ON insights_submissions (installation_id, recorded_at);
CREATE INDEX insights_submissions_recorded_at ON insights_submissions (recorded_at);

-- The submission that counts per installation and period (month / ISO week).
CREATE TABLE insights_periods (
    period_kind TEXT NOT NULL CHECK (period_kind IN ('month', 'week')),
    period_start DATE NOT NULL,
    installation_id BIGINT NOT NULL,
    usage_data_id BIGINT NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    version TEXT,
    version_major BIGINT,
    version_minor BIGINT,
    edition TEXT,
    tier TEXT NOT NULL,
    installation_type TEXT,
    country TEXT,
    excluded BOOLEAN NOT NULL,
    PRIMARY KEY (period_kind, period_start, installation_id)
);
CREATE INDEX insights_periods_installation ON insights_periods (installation_id, period_kind, period_start);

-- Each metric's period value per installation after the time-frame rule (NULL = special).
CREATE TABLE insights_metric_values (
    period_kind TEXT NOT NULL,
    key_id BIGINT NOT NULL,
    period_start DATE NOT NULL,
    installation_id BIGINT NOT NULL,
    value DOUBLE,
    special BOOLEAN NOT NULL,
    PRIMARY KEY (period_kind, key_id, period_start, installation_id)
) WITHOUT ROWID;
CREATE INDEX insights_metric_values_installation ON insights_metric_values (installation_id, period_kind, period_start);
