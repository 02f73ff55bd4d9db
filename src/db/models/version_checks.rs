//! The `version_checks`, `hosts` and `version_status` tables: what the recorder writes.
//!
//! Every write is additive or monotonic, so several app processes flushing into one store
//! add up instead of overwriting each other: counts are summed, `first_seen` only moves back,
//! `last_seen` (and with it `last_version`) only moves forward.

use chrono::{NaiveDate, NaiveDateTime, Utc};
use diesel::dsl::case_when;
use diesel::prelude::*;
use diesel::upsert::excluded;
use std::collections::BTreeMap;

use super::insights_generations::{self as generations, bump_generations};
use crate::db::schema::{hosts, version_checks, version_status};
use crate::db::{AnyConnection, DbError, WriteTransaction};
use crate::domain::insights::periods::PeriodKind;
use crate::domain::verdict::ReleaseTable;
use crate::domain::version::Version;
use crate::domain::version_status::{version_facts, VersionFacts};
use crate::with_conn;

/// One aggregated row, as the flush writes it. Text fields are `""` when absent, which is
/// how the store keeps them (they are part of the primary key, so they cannot be NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckCount {
    /// UTC day.
    pub day: NaiveDate,
    /// Referer hostname or `""`.
    pub host: String,
    /// Normalised version.
    pub version: String,
    /// Two-letter country code or `""`.
    pub country: String,
    /// Checks in this interval.
    pub count: u64,
    /// First check of the interval (UTC).
    pub first_seen: NaiveDateTime,
    /// Last check of the interval (UTC).
    pub last_seen: NaiveDateTime,
}

/// Rows per INSERT statement: keeps each statement well under SQLite's bound-parameter limit
/// (32766) while saving round trips to PostgreSQL.
const ROWS_PER_STATEMENT: usize = 500;

// Rows are inserted as tuples of `column.eq(value)` rather than derived `Insertable`s: only
// those contain no DEFAULT-able value, which is what lets SQLite take many rows (with
// ON CONFLICT) in one statement, as PostgreSQL does.

/// A daily-count row to add.
#[derive(Debug)]
struct NewCheckCount<'a> {
    day: NaiveDate,
    host: &'a str,
    version: &'a str,
    country: &'a str,
    count: i64,
    last_seen: NaiveDateTime,
}

/// A host row to merge.
#[derive(Debug)]
struct NewHost<'a> {
    hostname: &'a str,
    first_seen: NaiveDateTime,
    last_seen: NaiveDateTime,
    last_version: &'a str,
    country: Option<&'a str>,
}

impl NewCheckCount<'_> {
    #[expect(
        clippy::type_complexity,
        reason = "a diesel insertable tuple: its type is the column list"
    )]
    fn columns(
        &self,
    ) -> (
        diesel::dsl::Eq<version_checks::day, NaiveDate>,
        diesel::dsl::Eq<version_checks::host, &str>,
        diesel::dsl::Eq<version_checks::version, &str>,
        diesel::dsl::Eq<version_checks::country, &str>,
        diesel::dsl::Eq<version_checks::count, i64>,
        diesel::dsl::Eq<version_checks::last_seen, NaiveDateTime>,
    ) {
        (
            version_checks::day.eq(self.day),
            version_checks::host.eq(self.host),
            version_checks::version.eq(self.version),
            version_checks::country.eq(self.country),
            version_checks::count.eq(self.count),
            version_checks::last_seen.eq(self.last_seen),
        )
    }
}

impl NewHost<'_> {
    #[expect(
        clippy::type_complexity,
        reason = "a diesel insertable tuple: its type is the column list"
    )]
    fn columns(
        &self,
    ) -> (
        diesel::dsl::Eq<hosts::hostname, &str>,
        diesel::dsl::Eq<hosts::first_seen, NaiveDateTime>,
        diesel::dsl::Eq<hosts::last_seen, NaiveDateTime>,
        diesel::dsl::Eq<hosts::last_version, &str>,
        diesel::dsl::Eq<hosts::country, Option<&str>>,
    ) {
        (
            hosts::hostname.eq(self.hostname),
            hosts::first_seen.eq(self.first_seen),
            hosts::last_seen.eq(self.last_seen),
            hosts::last_version.eq(self.last_version),
            hosts::country.eq(self.country),
        )
    }
}

/// The verdict of one version, as materialised in `version_status`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = version_status)]
pub struct VersionStatus {
    /// Normalised version.
    pub version: String,
    /// Numeric major.
    pub major: i64,
    /// Numeric minor.
    pub minor: i64,
    /// Numeric patch.
    pub patch: i64,
    /// Pre-release tag or `''`.
    pub prerelease: String,
    /// `success`, `warning` or `danger`.
    pub severity: String,
    /// Exposed to a critical advisory.
    pub critical: bool,
    /// When computed (UTC).
    pub computed_at: NaiveDateTime,
}

impl VersionStatus {
    /// The row for `facts`, computed at `computed_at`.
    pub fn stamped(facts: VersionFacts, computed_at: NaiveDateTime) -> VersionStatus {
        VersionStatus {
            version: facts.version,
            major: facts.major,
            minor: facts.minor,
            patch: facts.patch,
            prerelease: facts.prerelease,
            severity: facts.severity.as_str().to_owned(),
            critical: facts.critical,
            computed_at,
        }
    }

    #[expect(
        clippy::type_complexity,
        reason = "a diesel insertable tuple: its type is the column list"
    )]
    fn columns(
        &self,
    ) -> (
        diesel::dsl::Eq<version_status::version, &str>,
        diesel::dsl::Eq<version_status::major, i64>,
        diesel::dsl::Eq<version_status::minor, i64>,
        diesel::dsl::Eq<version_status::patch, i64>,
        diesel::dsl::Eq<version_status::prerelease, &str>,
        diesel::dsl::Eq<version_status::severity, &str>,
        diesel::dsl::Eq<version_status::critical, bool>,
        diesel::dsl::Eq<version_status::computed_at, NaiveDateTime>,
    ) {
        (
            version_status::version.eq(self.version.as_str()),
            version_status::major.eq(self.major),
            version_status::minor.eq(self.minor),
            version_status::patch.eq(self.patch),
            version_status::prerelease.eq(self.prerelease.as_str()),
            version_status::severity.eq(self.severity.as_str()),
            version_status::critical.eq(self.critical),
            version_status::computed_at.eq(self.computed_at),
        )
    }

    fn same_verdict(&self, other: &VersionStatus) -> bool {
        self.severity == other.severity && self.critical == other.critical
    }
}

/// Host rows of a batch: per hostname, the earliest first and the latest last sighting, and
/// the version and country of that latest one.
fn hosts_of(rows: &[CheckCount]) -> Vec<NewHost<'_>> {
    let mut by_host: BTreeMap<&str, NewHost<'_>> = BTreeMap::new();
    for row in rows.iter().filter(|r| !r.host.is_empty()) {
        let country = (!row.country.is_empty()).then_some(row.country.as_str());
        by_host
            .entry(&row.host)
            .and_modify(|h| {
                h.first_seen = h.first_seen.min(row.first_seen);
                if row.last_seen > h.last_seen {
                    h.last_seen = row.last_seen;
                    h.last_version = &row.version;
                    h.country = country;
                }
            })
            .or_insert(NewHost {
                hostname: &row.host,
                first_seen: row.first_seen,
                last_seen: row.last_seen,
                last_version: &row.version,
                country,
            });
    }
    // BTreeMap order: every process locks host rows in the same order.
    by_host.into_values().collect()
}

/// Inserts verdicts of versions not known yet, on a concrete connection `$c` (so it can run
/// inside a caller's transaction). Existing verdicts are kept: they are refreshed as a whole
/// when releases change (see `refresh_statuses`), by whichever process notices first.
macro_rules! insert_statuses {
    ($c:expr, $statuses:expr) => {
        for chunk in $statuses.chunks(ROWS_PER_STATEMENT) {
            diesel::insert_into(version_status::table)
                .values(chunk.iter().map(VersionStatus::columns).collect::<Vec<_>>())
                .on_conflict(version_status::version)
                .do_nothing()
                .execute($c)?;
        }
    };
}

/// Writes one flush in a single transaction: adds `rows` (sorted by key, one row per key) to
/// the daily counts, merges the hosts, and inserts the verdicts of versions not yet known.
pub fn record_batch(
    conn: &mut AnyConnection,
    rows: &[CheckCount],
    new_statuses: &[VersionStatus],
) -> Result<(), DbError> {
    let counts: Vec<NewCheckCount<'_>> = rows
        .iter()
        .map(|r| NewCheckCount {
            day: r.day,
            host: &r.host,
            version: &r.version,
            country: &r.country,
            count: i64::try_from(r.count).unwrap_or(i64::MAX),
            last_seen: r.last_seen,
        })
        .collect();
    let hosts = hosts_of(rows);
    // The weeks and months of the days written: their insights source views change.
    let periods: Vec<(&str, NaiveDate)> = rows
        .iter()
        .map(|r| r.day)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .flat_map(|day| PeriodKind::ALL.map(|kind| (kind.as_str(), kind.start_of(day))))
        .collect();
    with_conn!(conn, |c| c.write_transaction(|c| {
        for chunk in counts.chunks(ROWS_PER_STATEMENT) {
            diesel::insert_into(version_checks::table)
                .values(chunk.iter().map(NewCheckCount::columns).collect::<Vec<_>>())
                .on_conflict((
                    version_checks::day,
                    version_checks::host,
                    version_checks::version,
                    version_checks::country,
                ))
                .do_update()
                .set((
                    version_checks::count
                        .eq(version_checks::count + excluded(version_checks::count)),
                    version_checks::last_seen.eq(case_when(
                        excluded(version_checks::last_seen).gt(version_checks::last_seen),
                        excluded(version_checks::last_seen),
                    )
                    .otherwise(version_checks::last_seen)),
                ))
                .execute(c)?;
        }
        for chunk in hosts.chunks(ROWS_PER_STATEMENT) {
            // Every right-hand side reads the row as it was before this statement (in both
            // stores), so all comparisons against `hosts.last_seen` see the old value.
            let newer = || excluded(hosts::last_seen).ge(hosts::last_seen);
            diesel::insert_into(hosts::table)
                .values(chunk.iter().map(NewHost::columns).collect::<Vec<_>>())
                .on_conflict(hosts::hostname)
                .do_update()
                .set((
                    hosts::first_seen.eq(case_when(
                        excluded(hosts::first_seen).lt(hosts::first_seen),
                        excluded(hosts::first_seen),
                    )
                    .otherwise(hosts::first_seen)),
                    hosts::last_seen
                        .eq(case_when(newer(), excluded(hosts::last_seen))
                            .otherwise(hosts::last_seen)),
                    hosts::last_version.eq(case_when(newer(), excluded(hosts::last_version))
                        .otherwise(hosts::last_version)),
                    // A check without a country (GeoIP off or unknown) keeps the last known one.
                    hosts::country.eq(case_when(
                        newer().and(excluded(hosts::country).is_not_null()),
                        excluded(hosts::country),
                    )
                    .otherwise(hosts::country)),
                ))
                .execute(c)?;
        }
        insert_statuses!(c, new_statuses);
        // Last, so that the counter rows every process's flush updates are held only until
        // the commit that follows.
        bump_generations!(c, generations::CHECKS, periods.clone())?;
        diesel::QueryResult::Ok(())
    }))?;
    Ok(())
}

/// Adds the verdicts of versions not materialised yet (e.g. reported by a Service Ping);
/// existing ones are left to [`refresh_statuses`].
pub fn insert_missing_statuses(
    conn: &mut AnyConnection,
    statuses: &[VersionStatus],
) -> Result<(), DbError> {
    if statuses.is_empty() {
        return Ok(());
    }
    with_conn!(conn, |c| {
        insert_statuses!(c, statuses);
        diesel::QueryResult::Ok(())
    })?;
    Ok(())
}

/// Recomputes every stored verdict against `table` and rewrites those that changed, in one
/// transaction. Returns how many changed.
pub fn refresh_statuses(conn: &mut AnyConnection, table: &ReleaseTable) -> Result<usize, DbError> {
    with_conn!(conn, |c| c.write_transaction(|c| {
        // Ordered only so that concurrent refreshes lock rows in the same order.
        let stored: Vec<VersionStatus> = version_status::table
            .select(VersionStatus::as_select())
            .order(version_status::version)
            .load(c)?;
        let mut changed = 0;
        for old in &stored {
            // A stored version that no longer parses (written by some future release with
            // other rules) is left alone rather than guessed at.
            let Ok(version) = Version::parse(&old.version) else {
                continue;
            };
            let new =
                VersionStatus::stamped(version_facts(table, &version), Utc::now().naive_utc());
            if new.same_verdict(old) {
                continue;
            }
            diesel::update(version_status::table.find(&old.version))
                .set((
                    version_status::severity.eq(&new.severity),
                    version_status::critical.eq(new.critical),
                    version_status::computed_at.eq(new.computed_at),
                ))
                .execute(c)?;
            changed += 1;
        }
        diesel::QueryResult::Ok(changed)
    }))
    .map_err(DbError::from)
}

/// Every stored verdict, by version text.
pub fn list_statuses(conn: &mut AnyConnection) -> Result<Vec<VersionStatus>, DbError> {
    Ok(with_conn!(conn, |c| version_status::table
        .select(VersionStatus::as_select())
        .order(version_status::version)
        .load(c))?)
}

/// Total checks stored (all days, hosts, versions and countries).
pub fn total_checks(conn: &mut AnyConnection) -> Result<i64, DbError> {
    // SUM(BIGINT) is NUMERIC on PostgreSQL and INTEGER on SQLite: cast to read one type.
    let total =
        diesel::dsl::sql::<diesel::sql_types::BigInt>("CAST(COALESCE(SUM(count), 0) AS BIGINT)");
    Ok(with_conn!(conn, |c| version_checks::table
        .select(total)
        .first::<i64>(c))?)
}
