//! One metric's period values, computed when asked instead of kept by the rollup job.
//!
//! The rollup keeps, per installation and period, only which submission counts and which one
//! counted in the installation's previous period (`insights_periods`). A metric's values come
//! from the stored values, keyed by metric first (`metric_values::key_values_between` over the
//! id range the counted submissions span), each counted submission joined in memory to its
//! value and its previous period's value, then the time-frame
//! rule (`domain::insights::period_value`) runs in memory. Keeping the values
//! per key, period and installation instead cost the job about twice the submission's own
//! metric rows in writes and bytes for every submission, and a series is rarely asked for more
//! than a handful of keys.

use chrono::NaiveDate;

use crate::db::models::insights::{find_period, list_key_values, Neighbour, NO_PREVIOUS};
use crate::db::models::insights_catalogue::find_defined_time_frame;
use crate::db::models::insights_queries::{list_metric_period_rows, MetricPeriodRow};
use crate::db::{AnyConnection, DbError};
use crate::domain::insights::period_value::{period_value, PeriodValue};
use crate::domain::insights::periods::PeriodKind;
use crate::domain::insights::time_frame::effective;

/// What a metric's period values are asked for.
pub(crate) struct Ask<'a> {
    /// The metric.
    pub(crate) key_id: i64,
    /// Its key path (the time frame and the special values depend on it).
    pub(crate) key_path: &'a str,
    /// Month or week.
    pub(crate) kind: PeriodKind,
    /// First period start (inclusive).
    pub(crate) from: NaiveDate,
    /// Last bound (exclusive).
    pub(crate) to: NaiveDate,
    /// Count internal and staging hosts too.
    pub(crate) include_excluded: bool,
}

/// Every counted submission of `[from, to)` that carries the metric, with its period value:
/// `Some(value)`, or `None` when the value is special (excluded from aggregates, counted).
/// An all-time counter in an installation's first period has no difference and is left out,
/// as are submissions without the key. Ordered by period, then installation.
pub(crate) fn period_values(
    conn: &mut AnyConnection,
    ask: &Ask<'_>,
) -> Result<Vec<(MetricPeriodRow, Option<f64>)>, DbError> {
    let defined = find_defined_time_frame(conn, ask.key_path)?;
    let (frame, _) = effective(ask.key_path, defined.as_deref());
    let rows = list_metric_period_rows(
        conn,
        ask.kind.as_str(),
        ask.key_id,
        ask.from,
        ask.to,
        ask.include_excluded,
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for mut row in rows {
        if frame.is_cumulative() && row.previous_usage_data_id.is_none() {
            // A row an earlier release's job wrote during a rolling upgrade does not know its
            // previous period: looked up here, which only such rows pay for.
            let previous = find_period(
                conn,
                ask.kind.as_str(),
                row.installation_id,
                row.period_start,
                Some(Neighbour::Previous),
            )?;
            row.previous_usage_data_id =
                Some(previous.as_ref().map_or(NO_PREVIOUS, |p| p.usage_data_id));
            if let Some(p) = previous {
                row.previous_value =
                    list_key_values(conn, ask.key_id, p.usage_data_id, p.usage_data_id)?
                        .first()
                        .map(|(_, v)| *v);
            }
        }
        // Outer None: no previous period; inner None: the previous one lacks the key.
        let baseline = match row.previous_usage_data_id {
            Some(id) if id != NO_PREVIOUS => Some(row.previous_value),
            _ => None,
        };
        match period_value(ask.key_path, frame, row.value, baseline) {
            PeriodValue::Value(v) => out.push((row, Some(v))),
            PeriodValue::Special => out.push((row, None)),
            PeriodValue::LeftOut => {}
        }
    }
    Ok(out)
}
