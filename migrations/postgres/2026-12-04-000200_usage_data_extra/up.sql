-- Summary fields of a submission that do not fit usage_data (Diesel's 32-column table limit,
-- which usage_data has reached): one row per submission that sent any of them, written in
-- the ingest transaction and deleted with the submission (retention, erasure).
CREATE TABLE usage_data_extra (
    usage_data_id BIGINT PRIMARY KEY NOT NULL,
    -- license_starts_at as sent (a date; a full timestamp is reduced to its UTC date)
    license_starts_at DATE
);
