ALTER TABLE erasures DROP COLUMN erased_by;
