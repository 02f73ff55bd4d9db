DROP TABLE release_changes;
DROP FUNCTION release_changes_append_only();
