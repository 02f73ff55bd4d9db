-- Metric period values are computed when asked, from usage_data_metrics (keyed by metric
-- first) and the counted submissions in insights_periods, instead of being kept per key,
-- period and installation: that table cost about twice the submission's own metric rows in
-- writes and bytes. What the on-demand read needs from the rollup is, per counted
-- submission, the counted submission of the installation's previous period of the same kind
-- (the baseline of an all-time counter's difference): 0 when there is none, NULL when not
-- known (a row written by an earlier release's job during a rolling upgrade; the reader then
-- looks the previous period up itself).
--
-- insights_metric_values is no longer written or read. It stays for one release (expand
-- only: an earlier release's node may still run the job during a rolling upgrade), is still
-- emptied by `insights rebuild` and by erasure, and is dropped by the next release.
ALTER TABLE insights_periods ADD COLUMN previous_usage_data_id BIGINT;
UPDATE insights_periods SET previous_usage_data_id = COALESCE((
    SELECT p.usage_data_id FROM insights_periods p
    WHERE p.period_kind = insights_periods.period_kind
      AND p.installation_id = insights_periods.installation_id
      AND p.period_start < insights_periods.period_start
    ORDER BY p.period_start DESC
    LIMIT 1
), 0);
