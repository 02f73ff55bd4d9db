DROP TABLE insights_metric_values;
DROP TABLE insights_periods;
DROP TABLE insights_submissions;
DROP TABLE insights_installations;
DROP TABLE insights_state;
