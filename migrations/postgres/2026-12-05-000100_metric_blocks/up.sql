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
    id BIGSERIAL PRIMARY KEY,
    first_usage_data_id BIGINT NOT NULL,
    last_usage_data_id BIGINT NOT NULL,
    usage_data_ids TEXT NOT NULL,
    merged_at TIMESTAMP NOT NULL
);

-- toast_tuple_target: compress a row's JSON from 128 bytes on, not only past ~2 KB, so
-- the values of small blocks are stored compressed too.
CREATE TABLE metric_block_values (
    key_id BIGINT NOT NULL,
    block_id BIGINT NOT NULL,
    vals TEXT NOT NULL,
    PRIMARY KEY (key_id, block_id)
) WITH (toast_tuple_target = 128);
CREATE INDEX metric_block_values_block ON metric_block_values (block_id);

-- Every stored value as one narrow row, whichever form holds it (docs/analysts.md). The
-- value_int of a JSON number is set when its text is a whole number (no point, no exponent):
-- `json`, not `jsonb`, keeps the text as stored (jsonb would write 1e20 out in full).
CREATE VIEW metric_values AS
SELECT key_id, usage_data_id, value, value_int FROM usage_data_metrics
UNION ALL
SELECT j.key::BIGINT AS key_id, s.usage_data_id,
       (j.value #>> '{}')::DOUBLE PRECISION AS value,
       CASE WHEN (j.value #>> '{}') ~ '^-?[0-9]+$' THEN (j.value #>> '{}')::BIGINT END AS value_int
FROM usage_data_values s, json_each(s.body::json) j
WHERE s.block_id IS NULL AND s.body IS NOT NULL
UNION ALL
SELECT v.key_id, e.id::BIGINT AS usage_data_id,
       e.val::DOUBLE PRECISION AS value,
       CASE WHEN e.val ~ '^-?[0-9]+$' THEN e.val::BIGINT END AS value_int
FROM metric_block_values v JOIN metric_blocks b ON b.id = v.block_id,
     ROWS FROM (json_array_elements_text(v.vals::json),
                json_array_elements_text(b.usage_data_ids::json)) AS e(val, id)
WHERE e.val IS NOT NULL;
