DROP TRIGGER release_changes_no_delete;
DROP TRIGGER release_changes_no_update;
DROP TABLE release_changes;
