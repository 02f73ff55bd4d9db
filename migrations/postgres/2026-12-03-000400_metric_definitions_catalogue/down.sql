DROP TABLE insights_key_months;
DROP TABLE insights_metric_catalogue;
DROP TABLE metric_definitions;
