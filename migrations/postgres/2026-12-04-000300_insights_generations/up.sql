-- Change counters behind the insights views' per-period cache (src/insights/period_cache.rs).
-- Every write that changes what a period's view shows adds 1 to its row, in the same
-- transaction: the rollup's period rows (source 'pings'), a version-check flush
-- (source 'checks', the week and month of each day it wrote), and, as kind 'all', writes
-- that may touch any period (rebuild, retention, erasure). A cached period is valid while
-- the sum of the counters of its kind up to and including it, plus 'all', is unchanged: a
-- sum only grows, so a change committed by any process is seen whatever the commit order.
-- Not instance data: period starts and counts only.
CREATE TABLE insights_generations (
    source TEXT NOT NULL,
    period_kind TEXT NOT NULL,
    period_start DATE NOT NULL,
    generation BIGINT NOT NULL,
    PRIMARY KEY (source, period_kind, period_start)
);
