DROP TABLE usage_ping_metadata_metrics;
DROP TABLE usage_ping_metadata;
DROP TABLE usage_ping_errors;
DROP TABLE usage_data_metrics;
DROP TABLE metric_keys;
DROP TABLE usage_data_raw;
DROP TABLE usage_data;
