-- Compressed payloads cannot be decompressed in SQL: export them first (`version-app export`)
-- if they must survive a downgrade; here they are removed rather than left unreadable.
DELETE FROM usage_data_raw WHERE encoding <> 'identity';
ALTER TABLE usage_data_raw DROP COLUMN encoding;
ALTER TABLE usage_data_metrics DROP COLUMN value_int;
