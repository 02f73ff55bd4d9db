//! How an installation stands in a period compared with the period before (docs/insights.md,
//! "Activity"). Active in a period = a Service Ping placed in it.
//!
//! * **new**: active, and this is its first period with a submission ever;
//! * **returning**: active, and active in the previous period too;
//! * **reactivated**: active, not new, and not active in the previous period;
//! * **churned**: active in the previous period and not in this one.
//!
//! So active = new + returning + reactivated, and churned counts who went missing.

use chrono::{Duration, NaiveDate};

use super::periods::PeriodKind;

/// What an active installation is in a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activity {
    /// Its first period with a submission.
    New,
    /// Active in the previous period too.
    Returning,
    /// Back after at least one period without a submission.
    Reactivated,
}

/// Classifies an installation active in the period starting at `period`.
pub(crate) fn classify(
    first_period: NaiveDate,
    period: NaiveDate,
    active_before: bool,
) -> Activity {
    if first_period >= period {
        Activity::New
    } else if active_before {
        Activity::Returning
    } else {
        Activity::Reactivated
    }
}

/// The start of the period before the one starting at `start`.
pub(crate) fn previous_start(kind: PeriodKind, start: NaiveDate) -> NaiveDate {
    kind.start_of(start - Duration::days(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn periods_are_new_returning_or_reactivated() {
        let jan = day("2026-01-01");
        assert_eq!(classify(jan, jan, false), Activity::New);
        assert_eq!(classify(jan, day("2026-02-01"), true), Activity::Returning);
        assert_eq!(
            classify(jan, day("2026-03-01"), false),
            Activity::Reactivated
        );
        assert_eq!(previous_start(PeriodKind::Month, jan), day("2025-12-01"));
        assert_eq!(
            previous_start(PeriodKind::Week, day("2026-01-05")),
            day("2025-12-29")
        );
    }
}
