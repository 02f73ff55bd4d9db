-- Service Ping ingest: one summary row per submission, the verbatim payload beside it, and
-- every numeric/boolean leaf as a narrow row keyed by metric first, so "one metric over time"
-- reads one contiguous index range.
CREATE TABLE usage_data (
    id BIGSERIAL PRIMARY KEY,
    uuid TEXT NOT NULL,
    unique_instance_id TEXT,
    hostname TEXT,
    version_raw TEXT,
    -- normalised text plus numeric parts: SQL must never sort version text
    version TEXT,
    version_major BIGINT,
    version_minor BIGINT,
    version_patch BIGINT,
    edition TEXT,
    installation_type TEXT,
    active_user_count BIGINT,
    historical_max_users BIGINT,
    license_md5 TEXT,
    license_sha256 TEXT,
    license_id BIGINT,
    license_plan TEXT,
    license_trial BOOLEAN,
    license_expires_at DATE,
    license_user_count BIGINT,
    licensee_name TEXT,
    recorded_at TIMESTAMP NOT NULL,
    -- Monday of recorded_at's ISO week: weekly series group on it portably
    recorded_week DATE NOT NULL,
    received_at TIMESTAMP NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('automatic', 'manual')),
    -- ISO country of the sender when GeoIP is configured; the IP itself is never stored
    country TEXT,
    metrics_count BIGINT NOT NULL,
    -- DevOps score inputs and answer, so a score can be reproduced and a retry gets it back
    score_inputs TEXT NOT NULL,
    instance_scores TEXT NOT NULL,
    score_previous_id BIGINT,
    formula_version BIGINT NOT NULL,
    conv_index TEXT NOT NULL,
    UNIQUE (uuid, recorded_at)
);
CREATE INDEX usage_data_recorded_at ON usage_data (recorded_at);
CREATE INDEX usage_data_hostname ON usage_data (hostname, recorded_at);

-- The payload exactly as the instance produced it (after gzip decoding, if it was sent
-- gzipped); removed after raw_payload_retention_days when that is set.
CREATE TABLE usage_data_raw (
    usage_data_id BIGINT PRIMARY KEY NOT NULL REFERENCES usage_data (id) ON DELETE CASCADE,
    payload BYTEA NOT NULL
);

-- Key path dictionary: ~4,200 paths in 18.9, so metric rows carry an integer, not the text.
CREATE TABLE metric_keys (
    id BIGSERIAL PRIMARY KEY,
    key_path TEXT NOT NULL UNIQUE
);

-- No foreign keys here on purpose: ~4,200 rows per submission, written by COPY in the same
-- transaction as their usage_data row.
CREATE TABLE usage_data_metrics (
    key_id BIGINT NOT NULL,
    usage_data_id BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (key_id, usage_data_id)
);

CREATE TABLE usage_ping_errors (
    id BIGSERIAL PRIMARY KEY,
    uuid TEXT,
    unique_instance_id TEXT,
    hostname TEXT,
    version TEXT,
    message TEXT,
    elapsed DOUBLE PRECISION,
    error_time TEXT,
    received_at TIMESTAMP NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX usage_ping_errors_uuid ON usage_ping_errors (uuid, received_at);

CREATE TABLE usage_ping_metadata (
    id BIGSERIAL PRIMARY KEY,
    uuid TEXT,
    unique_instance_id TEXT,
    received_at TIMESTAMP NOT NULL,
    metrics_count BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX usage_ping_metadata_uuid ON usage_ping_metadata (uuid, received_at);

CREATE TABLE usage_ping_metadata_metrics (
    metadata_id BIGINT NOT NULL REFERENCES usage_ping_metadata (id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    name TEXT NOT NULL,
    time_elapsed DOUBLE PRECISION,
    error TEXT,
    PRIMARY KEY (metadata_id, position)
);
