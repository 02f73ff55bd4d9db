//! The metric catalogue's rollups, kept by the refresh job beside the period tables: per key
//! the lowest and highest GitLab version that sent it, and per key and month how many
//! installations' counted submission of the month carries it. Work per new submission: its
//! own keys (one look-up each way, a write only when something changed), whatever the
//! store's size; a rebuild folds every submission again and gets the same rows, because both
//! are order-independent (a minimum and maximum; a count over the counted submissions).

use std::collections::BTreeSet;

use chrono::NaiveDate;

use super::keys::Keys;
use super::values::ValueCache;
use crate::db::models::insights::{PeriodRow, SourceSubmission};
use crate::db::models::insights_catalogue as q;
use crate::db::{AnyConnection, DbError};

/// A version's sort key: `major · 10⁹ + minor · 10⁶ + patch`.
pub(crate) fn version_sort(major: i64, minor: i64, patch: i64) -> i64 {
    major
        .saturating_mul(1_000_000_000)
        .saturating_add(minor.clamp(0, 999).saturating_mul(1_000_000))
        .saturating_add(patch.clamp(0, 999_999))
}

/// Widens the version range of every key the submission carries.
pub(super) fn note_versions(
    conn: &mut AnyConnection,
    keys: &Keys,
    cache: &mut ValueCache,
    s: &SourceSubmission,
) -> Result<(), DbError> {
    let (Some(version), Some(major), Some(minor), Some(patch)) = (
        s.version.as_ref(),
        s.version_major,
        s.version_minor,
        s.version_patch,
    ) else {
        return Ok(());
    };
    let sort = version_sort(major, minor, patch);
    let carried: Vec<i64> = cache
        .values_of(conn, keys, s.id)?
        .iter()
        .map(|(k, _)| *k)
        .collect();
    let known: std::collections::HashMap<i64, q::CatalogueRow> =
        q::list_catalogue_of(conn, &carried)?
            .into_iter()
            .map(|row| (row.0, row))
            .collect();
    let mut changed = Vec::new();
    for key_id in carried {
        match known.get(&key_id) {
            None => changed.push((key_id, version.clone(), sort, version.clone(), sort)),
            Some(row) if sort < row.2 || sort > row.4 => {
                let mut row = row.clone();
                if sort < row.2 {
                    (row.1, row.2) = (version.clone(), sort);
                }
                if sort > row.4 {
                    (row.3, row.4) = (version.clone(), sort);
                }
                changed.push(row);
            }
            Some(_) => {}
        }
    }
    q::upsert_catalogue(conn, &changed)
}

/// The month's counted submission of an installation changes from `previous` to
/// `submission_id`: keys only the old one carried leave the month's counts, keys only the new
/// one carries join them (keys both carry keep their count, so nothing is written for them).
pub(super) fn count_month(
    conn: &mut AnyConnection,
    keys: &Keys,
    cache: &mut ValueCache,
    month: NaiveDate,
    previous: Option<&PeriodRow>,
    submission_id: i64,
) -> Result<(), DbError> {
    let carried = cache.values_of(conn, keys, submission_id)?;
    let carried: BTreeSet<i64> = carried.iter().map(|(k, _)| *k).collect();
    let before: BTreeSet<i64> = match previous {
        Some(previous) => cache
            .values_of(conn, keys, previous.usage_data_id)?
            .iter()
            .map(|(k, _)| *k)
            .collect(),
        None => BTreeSet::new(),
    };
    let gone: Vec<i64> = before.difference(&carried).copied().collect();
    let joined: Vec<i64> = carried.difference(&before).copied().collect();
    q::add_key_months(conn, month, &gone, -1)?;
    q::add_key_months(conn, month, &joined, 1)
}

#[cfg(test)]
mod tests {
    use super::version_sort;

    #[test]
    fn versions_sort_numerically() {
        assert!(version_sort(17, 11, 2) < version_sort(18, 0, 0));
        assert!(version_sort(18, 9, 0) < version_sort(18, 10, 0));
        assert!(version_sort(18, 10, 3) < version_sort(18, 10, 12));
    }
}
