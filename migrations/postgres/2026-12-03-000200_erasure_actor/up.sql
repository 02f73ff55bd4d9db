-- Who erased: a console account name or `cli:USER` (never an identifier of the installation).
-- NULL for erasures recorded before this column.
ALTER TABLE erasures ADD COLUMN erased_by TEXT;
