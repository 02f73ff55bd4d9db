-- Service Ping values in two forms instead of one narrow row per leaf (issue 10).
--
-- usage_data_values: one row per submission written by ingest, in the same transaction as
-- its usage_data row. While `block_id` is NULL the submission is *staged*: `body` holds every
-- numeric/boolean leaf as one JSON object {"<metric_keys.id>": value, ...} (integers and 0/1
-- as JSON integers, floats as JSON floats, so values stay exact). The merge job later moves
-- staged submissions into a block and sets `block_id` (body NULL): the row then says which
-- block holds the submission's values.
--
-- metric_blocks: a group of merged submissions; `usage_data_ids` is their ids as a JSON
-- array in ascending order. metric_block_values: per metric key and block, the values as a
-- JSON array aligned with the block's ids (null where a submission lacks the key). Keyed by
-- metric first, so a metric's values over many submissions are a few rows.
--
-- usage_data_metrics is no longer written; rows stored before stay and are read
-- transparently (expand only: an earlier release's node may still write them during a
-- rolling upgrade). The metric_values view reads all three forms as narrow rows.
CREATE TABLE usage_data_values (
    usage_data_id BIGINT PRIMARY KEY NOT NULL,
    block_id BIGINT,
    body TEXT
);
CREATE INDEX usage_data_values_staged ON usage_data_values (usage_data_id)
    WHERE block_id IS NULL;

CREATE TABLE metric_blocks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    first_usage_data_id BIGINT NOT NULL,
    last_usage_data_id BIGINT NOT NULL,
    usage_data_ids TEXT NOT NULL,
    merged_at TIMESTAMP NOT NULL
);

CREATE TABLE metric_block_values (
    key_id BIGINT NOT NULL,
    block_id BIGINT NOT NULL,
    vals TEXT NOT NULL,
    PRIMARY KEY (key_id, block_id)
);
CREATE INDEX metric_block_values_block ON metric_block_values (block_id);

-- Every stored value as one narrow row, whichever form holds it (docs/analysts.md).
CREATE VIEW metric_values AS
SELECT key_id, usage_data_id, value, value_int FROM usage_data_metrics
UNION ALL
SELECT CAST(j.key AS INTEGER) AS key_id, s.usage_data_id,
       CAST(j.value AS REAL) AS value,
       CASE WHEN j.type = 'integer' THEN j.value END AS value_int
FROM usage_data_values s, json_each(s.body) j
WHERE s.block_id IS NULL AND s.body IS NOT NULL
UNION ALL
SELECT v.key_id, json_extract(b.usage_data_ids, '$[' || j.key || ']') AS usage_data_id,
       CAST(j.value AS REAL) AS value,
       CASE WHEN j.type = 'integer' THEN j.value END AS value_int
FROM metric_block_values v JOIN metric_blocks b ON b.id = v.block_id, json_each(v.vals) j
WHERE j.type <> 'null';
