-- The audit trail of the release table: one row per changed field, append-only.
CREATE TABLE release_changes (
    id BIGSERIAL PRIMARY KEY,
    -- one id per operation (a batch form, an import, a sync run, a revert)
    batch TEXT NOT NULL,
    at TIMESTAMP NOT NULL,
    -- account name, token:NAME, the OS user for the CLI, or sync:URL
    actor TEXT NOT NULL,
    via TEXT NOT NULL CHECK (via IN ('web', 'api', 'cli', 'import', 'sync')),
    version TEXT NOT NULL,
    field TEXT NOT NULL CHECK (field IN ('version', 'released_on', 'security', 'advisory', 'details')),
    old TEXT,
    new TEXT,
    -- e.g. "revert of change 12"
    note TEXT
);
CREATE INDEX release_changes_version ON release_changes (version, id);
CREATE INDEX release_changes_batch ON release_changes (batch);
-- Audit entries cannot be edited through any interface, SQL included.
CREATE FUNCTION release_changes_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit entries are append-only';
END;
$$;
CREATE TRIGGER release_changes_append_only BEFORE UPDATE OR DELETE ON release_changes
    FOR EACH ROW EXECUTE FUNCTION release_changes_append_only();
