//! A metric's value for one installation in one period, after the time-frame rule.
//!
//! * 28-day, 7-day and point-in-time metrics: the counted submission's value as it is.
//! * All-time counters: the difference from the installation's previous period that has a
//!   submission; a negative difference (a counter reset, a restored backup) becomes 0. In the
//!   installation's first period, or when the previous submission has no usable value for the
//!   key, there is no difference and the metric is left out of that period.
//! * A special value in the counted submission is excluded (and counted as excluded).

use super::special::is_special;
use super::time_frame::TimeFrame;

/// What one installation contributes to a metric's period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PeriodValue {
    /// A value to aggregate.
    Value(f64),
    /// A special value: excluded, counted in `excluded_special`.
    Special,
    /// Nothing (an all-time counter without a baseline).
    LeftOut,
}

/// Applies the rule. `previous` is `None` without an earlier period with a submission,
/// `Some(None)` when that submission does not carry the key.
pub fn period_value(
    key_path: &str,
    frame: TimeFrame,
    current: f64,
    previous: Option<Option<f64>>,
) -> PeriodValue {
    if is_special(key_path, current) {
        return PeriodValue::Special;
    }
    if !frame.is_cumulative() {
        return PeriodValue::Value(current);
    }
    match previous {
        Some(Some(before)) if !is_special(key_path, before) => {
            PeriodValue::Value((current - before).max(0.0))
        }
        _ => PeriodValue::LeftOut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PeriodValue::*;

    #[test]
    fn windowed_values_are_taken_as_they_are() {
        assert_eq!(
            period_value("counts_monthly.x", TimeFrame::Days28, 5.0, None),
            Value(5.0)
        );
        assert_eq!(
            period_value("a_weekly", TimeFrame::Days7, 0.0, Some(Some(9.0))),
            Value(0.0)
        );
        assert_eq!(
            period_value("settings.x", TimeFrame::None, 3.0, None),
            Value(3.0)
        );
    }

    #[test]
    fn all_time_counters_become_differences() {
        let f = TimeFrame::AllTime;
        assert_eq!(
            period_value("counts.issues", f, 10.0, None),
            LeftOut,
            "first period"
        );
        assert_eq!(period_value("counts.issues", f, 10.0, Some(None)), LeftOut);
        assert_eq!(
            period_value("counts.issues", f, 10.0, Some(Some(4.0))),
            Value(6.0)
        );
        assert_eq!(
            period_value("counts.issues", f, 3.0, Some(Some(4.0))),
            Value(0.0),
            "reset"
        );
        assert_eq!(
            period_value("counts.issues", f, 3.0, Some(Some(-1.0))),
            LeftOut
        );
    }

    #[test]
    fn special_values_are_excluded() {
        for v in [-1.0, -2.0, -3.0, -1000.0] {
            assert_eq!(
                period_value("counts.issues", TimeFrame::AllTime, v, Some(Some(1.0))),
                Special
            );
            assert_eq!(
                period_value("x_monthly", TimeFrame::Days28, v, None),
                Special
            );
        }
    }
}
