-- Exact integers: value (DOUBLE) stays for every leaf, so existing queries keep working;
-- value_int holds the exact i64 of integer and boolean (0/1) leaves, NULL for floats and for
-- rows stored before this migration.
ALTER TABLE usage_data_metrics ADD COLUMN value_int BIGINT;
-- Raw payloads are stored zstd-compressed from now on; rows stored before stay as they are
-- and are read transparently. 'identity' = the bytes as received, 'zstd' = a plain zstd
-- frame, 'zstd-d1' = a zstd frame made with dictionary 1 (assets/zstd/service-ping.dict).
ALTER TABLE usage_data_raw ADD COLUMN encoding TEXT NOT NULL DEFAULT 'identity'
    CHECK (encoding IN ('identity', 'zstd', 'zstd-d1'));
