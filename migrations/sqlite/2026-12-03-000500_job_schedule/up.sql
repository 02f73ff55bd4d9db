-- When each once-across-processes background job last started, by the store's clock, so that
-- several app processes on one store run it once per interval, not once each (docs/scaling.md).
CREATE TABLE job_schedule (
    job TEXT PRIMARY KEY,
    -- milliseconds since the Unix epoch, from the store's clock (one clock for every node)
    last_started_ms BIGINT NOT NULL,
    -- runs started since the row was created (all processes together)
    runs BIGINT NOT NULL
);
