-- Recorded version checks (protocol 1.5: version, Referer hostname, day, count, and the
-- country when GeoIP is configured; never the client's address) and what an operator reads.

-- Daily counts. Absent host/country are '' rather than NULL: they are part of the key, and
-- NULLs would never conflict, so additive upserts from several processes would not add up.
CREATE TABLE version_checks (
    day DATE NOT NULL,
    host TEXT NOT NULL DEFAULT '',
    version TEXT NOT NULL,
    country TEXT NOT NULL DEFAULT '',
    count BIGINT NOT NULL CHECK (count > 0),
    last_seen TIMESTAMP NOT NULL,
    PRIMARY KEY (day, host, version, country)
);
CREATE INDEX version_checks_version ON version_checks (version, day);
CREATE INDEX version_checks_host ON version_checks (host, day);

-- One row per instance hostname.
CREATE TABLE hosts (
    hostname TEXT PRIMARY KEY,
    first_seen TIMESTAMP NOT NULL,
    last_seen TIMESTAMP NOT NULL,
    last_version TEXT NOT NULL,
    country TEXT
);
CREATE INDEX hosts_last_version ON hosts (last_version);

-- The current verdict of every version seen, kept in step with the release table.
CREATE TABLE version_status (
    version TEXT PRIMARY KEY,
    -- numeric parts so SQL can sort versions as numbers, never as text
    major BIGINT NOT NULL,
    minor BIGINT NOT NULL,
    patch BIGINT NOT NULL,
    prerelease TEXT NOT NULL DEFAULT '',
    severity TEXT NOT NULL CHECK (severity IN ('success', 'warning', 'danger')),
    critical BOOLEAN NOT NULL,
    computed_at TIMESTAMP NOT NULL
);
CREATE INDEX version_status_severity ON version_status (severity);
