DROP TABLE usage_data_extra;
