//! Which submission counts for a period, and where a submission is placed.
//!
//! * A submission is placed by its `recorded_at` (UTC), not by when it arrived, so an offline
//!   instance uploading several weeks at once still gets one submission per week.
//! * A `recorded_at` more than one day after the receive time (a clock in the future), or
//!   before 2011 (before Service Ping existed: a reset clock), is not believed: the receive
//!   time is used instead. See [`effective_recorded_at`].
//! * Per installation and period, the submission that counts is the last one by the effective
//!   `recorded_at`, ties broken by the later submission id ([`is_later`]).
//! * Months are calendar months; weeks are ISO weeks starting on Monday.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// The granularity of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeriodKind {
    /// Calendar month; the period is named by its first day.
    Month,
    /// ISO week; the period is named by its Monday.
    Week,
}

impl PeriodKind {
    /// Both kinds, in the order the rollups maintain them.
    pub const ALL: [PeriodKind; 2] = [PeriodKind::Month, PeriodKind::Week];

    /// The stored / query-string name.
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Month => "month",
            PeriodKind::Week => "week",
        }
    }

    /// First day of the period `day` falls in.
    pub fn start_of(self, day: NaiveDate) -> NaiveDate {
        match self {
            PeriodKind::Month => day.with_day(1).expect("day 1 exists"),
            PeriodKind::Week => {
                day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
            }
        }
    }

    /// First day of the period after the one starting at `start`.
    pub fn next_start(self, start: NaiveDate) -> NaiveDate {
        match self {
            PeriodKind::Month => {
                let (y, m) = if start.month() == 12 {
                    (start.year() + 1, 1)
                } else {
                    (start.year(), start.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, 1).expect("valid month")
            }
            PeriodKind::Week => start + Duration::days(7),
        }
    }

    /// True when the period starting at `start` has ended by `today` (it is complete).
    pub fn is_complete(self, start: NaiveDate, today: NaiveDate) -> bool {
        self.next_start(start) <= today
    }

    /// Every period start in `[from, to)`, from the period containing `from`.
    pub fn starts_between(self, from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
        let mut out = Vec::new();
        let mut at = self.start_of(from);
        while at < to {
            out.push(at);
            at = self.next_start(at);
        }
        out
    }
}

impl fmt::Display for PeriodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PeriodKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "month" => Ok(PeriodKind::Month),
            "week" => Ok(PeriodKind::Week),
            other => Err(format!("`period` must be month or week, got `{other}`")),
        }
    }
}

/// The earliest believable `recorded_at`: Service Ping did not exist before 2011.
pub fn earliest_believable() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2011, 1, 1)
        .expect("valid date")
        .and_hms_opt(0, 0, 0)
        .expect("valid time")
}

/// The time a submission is placed at: its `recorded_at`, unless that is more than one day
/// after `received_at` or before 2011, in which case `received_at`.
pub fn effective_recorded_at(
    recorded_at: NaiveDateTime,
    received_at: NaiveDateTime,
) -> NaiveDateTime {
    if recorded_at > received_at + Duration::days(1) || recorded_at < earliest_believable() {
        received_at
    } else {
        recorded_at
    }
}

/// True when submission `a` (effective recorded_at, id) beats `b` as the one that counts for
/// a period: later recorded_at, or the same recorded_at and a later id.
pub fn is_later(a: (NaiveDateTime, i64), b: (NaiveDateTime, i64)) -> bool {
    a > b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }
    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn months_and_iso_weeks() {
        assert_eq!(
            PeriodKind::Month.start_of(day("2026-03-31")),
            day("2026-03-01")
        );
        // 2026-01-01 is a Thursday: its ISO week starts on Monday 2025-12-29.
        assert_eq!(
            PeriodKind::Week.start_of(day("2026-01-01")),
            day("2025-12-29")
        );
        assert_eq!(
            PeriodKind::Week.start_of(day("2026-01-05")),
            day("2026-01-05")
        );
        assert_eq!(
            PeriodKind::Week.start_of(day("2026-01-11")),
            day("2026-01-05")
        );
        assert_eq!(
            PeriodKind::Month.next_start(day("2026-12-01")),
            day("2027-01-01")
        );
        assert_eq!(
            PeriodKind::Week.next_start(day("2026-12-28")),
            day("2027-01-04")
        );
        assert!(PeriodKind::Month.is_complete(day("2026-02-01"), day("2026-03-01")));
        assert!(!PeriodKind::Month.is_complete(day("2026-03-01"), day("2026-03-31")));
        assert_eq!(
            PeriodKind::Month.starts_between(day("2026-01-15"), day("2026-03-01")),
            vec![day("2026-01-01"), day("2026-02-01")]
        );
        assert_eq!("week".parse::<PeriodKind>(), Ok(PeriodKind::Week));
        assert!("day".parse::<PeriodKind>().unwrap_err().contains("period"));
    }

    #[test]
    fn recorded_at_fallback() {
        let received = at("2026-03-10 12:00:00");
        // an offline upload weeks later keeps its own time
        assert_eq!(
            effective_recorded_at(at("2026-02-01 00:00:00"), received),
            at("2026-02-01 00:00:00")
        );
        // up to one day ahead is clock skew, kept
        assert_eq!(
            effective_recorded_at(at("2026-03-11 12:00:00"), received),
            at("2026-03-11 12:00:00")
        );
        // more than a day ahead: the receive time
        assert_eq!(
            effective_recorded_at(at("2026-03-11 12:00:01"), received),
            received
        );
        // before 2011: the receive time
        assert_eq!(
            effective_recorded_at(at("2010-12-31 23:59:59"), received),
            received
        );
        assert_eq!(
            effective_recorded_at(at("2011-01-01 00:00:00"), received),
            at("2011-01-01 00:00:00")
        );
    }

    #[test]
    fn last_submission_wins_ties_by_id() {
        let t = at("2026-03-10 12:00:00");
        assert!(is_later((t + Duration::seconds(1), 1), (t, 9)));
        assert!(is_later((t, 10), (t, 9)));
        assert!(!is_later((t, 9), (t, 10)));
    }
}
