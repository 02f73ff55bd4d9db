//! One metric's period values, computed when asked instead of kept by the rollup job.
//!
//! The rollup keeps, per installation and period, only which submission counts and which one
//! counted in the installation's previous period (`insights_periods`). A metric's values come
//! from `usage_data_metrics`, which is keyed by metric first: one index range per request,
//! then the time-frame rule (`domain::insights::period_value`) in memory. Keeping the values
//! per key, period and installation instead cost the job about twice the submission's own
//! metric rows in writes and bytes for every submission, and a series is rarely asked for more
//! than a handful of keys.

use std::collections::HashMap;

use chrono::NaiveDate;

use crate::db::models::insights::{
    find_period, list_key_values, Neighbour, PeriodRow, NO_PREVIOUS,
};
use crate::db::models::insights_catalogue::find_defined_time_frame;
use crate::db::models::insights_queries::list_periods;
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
) -> Result<Vec<(PeriodRow, Option<f64>)>, DbError> {
    let defined = find_defined_time_frame(conn, ask.key_path)?;
    let (frame, _) = effective(ask.key_path, defined.as_deref());
    let mut periods = list_periods(
        conn,
        ask.kind.as_str(),
        ask.from,
        ask.to,
        ask.include_excluded,
    )?;
    let baselines = frame.is_cumulative();
    if baselines {
        // Rows an earlier release's job wrote during a rolling upgrade do not know their
        // previous period: looked up one by one, which only such rows pay for.
        for p in periods
            .iter_mut()
            .filter(|p| p.previous_usage_data_id.is_none())
        {
            let previous = find_period(
                conn,
                ask.kind.as_str(),
                p.installation_id,
                p.period_start,
                Some(Neighbour::Previous),
            )?;
            p.previous_usage_data_id =
                Some(previous.map_or(NO_PREVIOUS, |previous| previous.usage_data_id));
        }
    }
    let previous_of = |p: &PeriodRow| {
        p.previous_usage_data_id
            .filter(|&id| baselines && id != NO_PREVIOUS)
    };
    let wanted = periods
        .iter()
        .flat_map(|p| std::iter::once(p.usage_data_id).chain(previous_of(p)));
    let (Some(low), Some(high)) = (wanted.clone().min(), wanted.max()) else {
        return Ok(Vec::new());
    };
    let values: HashMap<i64, f64> = list_key_values(conn, ask.key_id, low, high)?
        .into_iter()
        .collect();
    Ok(periods
        .into_iter()
        .filter_map(|period| {
            let current = *values.get(&period.usage_data_id)?;
            // Outer None: no previous period; inner None: the previous one lacks the key.
            let baseline = previous_of(&period).map(|id| values.get(&id).copied());
            match period_value(ask.key_path, frame, current, baseline) {
                PeriodValue::Value(v) => Some((period, Some(v))),
                PeriodValue::Special => Some((period, None)),
                PeriodValue::LeftOut => None,
            }
        })
        .collect())
}
