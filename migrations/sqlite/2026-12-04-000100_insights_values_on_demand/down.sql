ALTER TABLE insights_periods DROP COLUMN previous_usage_data_id;
-- insights_metric_values was not written by this release: `version-app insights rebuild`
-- with the earlier binary fills it again.
