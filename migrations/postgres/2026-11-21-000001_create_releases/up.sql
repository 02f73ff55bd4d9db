-- The release table and the API tokens that may change it.
CREATE TABLE releases (
    id BIGSERIAL PRIMARY KEY,
    version TEXT NOT NULL UNIQUE,
    -- numeric parts so SQL can sort and filter versions as numbers, never as text
    major BIGINT NOT NULL,
    minor BIGINT NOT NULL,
    patch BIGINT NOT NULL,
    released_on DATE NOT NULL,
    security TEXT NOT NULL DEFAULT 'none' CHECK (security IN ('none', 'non_critical', 'critical')),
    advisory TEXT,
    details TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX releases_line ON releases (major, minor, patch);

CREATE TABLE api_tokens (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    -- SHA-256 of the token: the token itself is shown once and never stored
    token_hash TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP
);
