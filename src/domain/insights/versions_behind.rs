//! How far behind a submission's version is, against the release table as it was then.
//!
//! * **minor releases behind**: the number of release lines (`major.minor`) released by the
//!   submission's day that are newer than its own line. 17.11 behind 18.1 is 2 (18.0, 18.1).
//! * **days behind**: the days from the release of the version it runs to the submission's
//!   day (how old its version is); 0 for a version released that day, none for a version
//!   the table does not list.

use chrono::NaiveDate;

use crate::domain::release::Release;
use crate::domain::version::Version;

/// Release lines newer than `version`'s line among the releases published on or before `at`;
/// `None` when no release was known then.
pub fn minors_behind(releases: &[Release], version: &Version, at: NaiveDate) -> Option<u32> {
    let mut lines: Vec<(u64, u64)> = releases
        .iter()
        .filter(|r| r.released_on <= at)
        .map(|r| r.version.line())
        .collect();
    if lines.is_empty() {
        return None;
    }
    lines.sort_unstable();
    lines.dedup();
    let own = version.line();
    Some(lines.iter().filter(|line| **line > own).count() as u32)
}

/// The newest release line among the releases published on or before `at` (the default
/// "version X" of the penetration chart).
pub(crate) fn latest_line(releases: &[Release], at: NaiveDate) -> Option<(u64, u64)> {
    releases
        .iter()
        .filter(|r| r.released_on <= at)
        .map(|r| r.version.line())
        .max()
}

/// Days from the release of exactly `version` to `at` (never negative).
pub fn days_behind(releases: &[Release], version: &Version, at: NaiveDate) -> Option<i64> {
    let own = releases.iter().find(|r| r.version == *version)?;
    Some((at - own.released_on).num_days().max(0))
}

/// The buckets of the days-behind distribution, in order: lower bound in days and label.
pub const DAYS_BUCKETS: [(i64, &str); 5] = [
    (0, "0-29 days"),
    (30, "30-89 days"),
    (90, "90-179 days"),
    (180, "180-364 days"),
    (365, "365+ days"),
];

/// The label of the days-behind bucket `days` falls in (negative days count as 0).
pub fn days_bucket(days: i64) -> &'static str {
    DAYS_BUCKETS
        .iter()
        .rev()
        .find(|(low, _)| days >= *low)
        .map_or(DAYS_BUCKETS[0].1, |(_, label)| label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_fall_in_their_bucket() {
        assert_eq!(days_bucket(-3), "0-29 days");
        assert_eq!(days_bucket(29), "0-29 days");
        assert_eq!(days_bucket(30), "30-89 days");
        assert_eq!(days_bucket(179), "90-179 days");
        assert_eq!(days_bucket(364), "180-364 days");
        assert_eq!(days_bucket(365), "365+ days");
    }
    use crate::domain::release::SecurityLevel;

    fn release(v: &str, on: &str) -> Release {
        Release {
            version: Version::parse(v).unwrap(),
            released_on: NaiveDate::parse_from_str(on, "%Y-%m-%d").unwrap(),
            security: SecurityLevel::None,
            advisory: None,
            details: String::new(),
        }
    }

    #[test]
    fn behind_counts_lines_known_at_the_time() {
        let table = vec![
            release("17.10.0", "2025-03-20"),
            release("17.11.0", "2025-04-17"),
            release("17.11.1", "2025-04-23"),
            release("18.0.0", "2025-05-15"),
            release("18.1.0", "2025-06-19"),
        ];
        let v = Version::parse("17.11.0").unwrap();
        let day = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(minors_behind(&table, &v, day("2025-04-30")), Some(0));
        assert_eq!(minors_behind(&table, &v, day("2025-05-15")), Some(1));
        assert_eq!(minors_behind(&table, &v, day("2025-07-01")), Some(2));
        assert_eq!(
            minors_behind(
                &table,
                &Version::parse("17.10.0").unwrap(),
                day("2025-07-01")
            ),
            Some(3)
        );
        assert_eq!(
            minors_behind(&table, &v, day("2020-01-01")),
            None,
            "nothing known yet"
        );
        assert_eq!(
            minors_behind(
                &table,
                &Version::parse("18.2.0").unwrap(),
                day("2025-07-01")
            ),
            Some(0)
        );
        assert_eq!(latest_line(&table, day("2025-06-01")), Some((18, 0)));
        assert_eq!(latest_line(&table, day("2020-06-01")), None);
        assert_eq!(days_behind(&table, &v, day("2025-04-27")), Some(10));
        assert_eq!(days_behind(&table, &v, day("2025-04-01")), Some(0));
        assert_eq!(
            days_behind(
                &table,
                &Version::parse("17.11.9").unwrap(),
                day("2025-05-01")
            ),
            None
        );
    }
}
