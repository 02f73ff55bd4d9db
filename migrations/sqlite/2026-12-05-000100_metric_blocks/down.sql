DROP VIEW metric_values;
DROP TABLE metric_block_values;
DROP TABLE metric_blocks;
DROP TABLE usage_data_values;
