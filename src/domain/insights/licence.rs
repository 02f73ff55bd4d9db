//! The licence rules behind the licences page (docs/insights.md, "Licences"), read from the
//! payload's `license_*` fields as the summary row keeps them.
//!
//! * **seats** = `license_user_count` when above 0 (0, missing or a special value: no seat
//!   count, so the installation is left out of utilisation);
//! * **active users** = `active_user_count` when 0 or more (special values are negative);
//! * **utilisation** of a group = its active users ÷ its seats, both summed over the
//!   installations that have both;
//! * **over seats**: active users above seats;
//! * **expiring within N days**: `license_expires_at` from today to today + N, both included
//!   (an already expired licence is not "expiring").

use chrono::{Duration, NaiveDate};

/// The seat count, when the licence states a usable one.
pub(crate) fn seats(license_user_count: Option<i64>) -> Option<i64> {
    license_user_count.filter(|n| *n > 0)
}

/// The active users, unless missing or special.
pub(crate) fn active_users(active_user_count: Option<i64>) -> Option<i64> {
    active_user_count.filter(|n| *n >= 0)
}

/// Active users above the seat count.
pub(crate) fn is_over_seats(active: Option<i64>, seats_: Option<i64>) -> bool {
    matches!((active_users(active), seats(seats_)), (Some(a), Some(s)) if a > s)
}

/// Expires from `today` to `today + days`, both included.
pub(crate) fn expires_within(expires: Option<NaiveDate>, today: NaiveDate, days: i64) -> bool {
    expires.is_some_and(|e| e >= today && e <= today + Duration::days(days))
}

/// Active users ÷ seats (0 without seats).
pub(crate) fn utilisation(active: i64, seats_: i64) -> f64 {
    if seats_ > 0 {
        active as f64 / seats_ as f64
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seats_and_expiry_follow_the_rules() {
        assert_eq!(seats(Some(0)), None);
        assert_eq!(seats(Some(-1)), None);
        assert_eq!(seats(Some(30)), Some(30));
        assert_eq!(active_users(Some(-1)), None);
        assert_eq!(active_users(Some(0)), Some(0));
        assert!(is_over_seats(Some(31), Some(30)));
        assert!(!is_over_seats(Some(30), Some(30)));
        assert!(!is_over_seats(Some(31), Some(0)));
        assert!(!is_over_seats(Some(-1), Some(30)));
        let today = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        assert!(expires_within(Some(today), today, 30));
        assert!(expires_within(Some(today + Duration::days(30)), today, 30));
        assert!(!expires_within(Some(today + Duration::days(31)), today, 30));
        assert!(!expires_within(Some(today - Duration::days(1)), today, 30));
        assert!(!expires_within(None, today, 30));
        assert_eq!(utilisation(15, 30), 0.5);
        assert_eq!(utilisation(15, 0), 0.0);
    }
}
