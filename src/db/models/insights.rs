//! The insights rollup tables (`insights_*`): what the refresh job reads from the Service Ping
//! tables and writes into its own. Metric values are read from the ingest tables ONLY here
//! ([`list_metric_values_of`], the job's fallback; [`list_key_values`], the on-demand series)
//! and from the stored payload (`crate::insights::values`), so a change in how ingest stores
//! them is two places to follow.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::insights_generations as generations;
use super::metric_values;
use crate::db::schema::{
    insights_installations, insights_metric_values, insights_periods, insights_state,
    insights_submissions, metric_keys, usage_data,
};
use crate::db::{AnyConnection, DbError};
use crate::with_conn;

/// A Service Ping submission as the rollups need it.
#[derive(Debug, Clone, Queryable)]
pub struct SourceSubmission {
    /// `usage_data.id`.
    pub id: i64,
    /// Instance UUID.
    pub uuid: String,
    /// Hostname as sent.
    pub hostname: Option<String>,
    /// Normalised version.
    pub version: Option<String>,
    /// Numeric major.
    pub version_major: Option<i64>,
    /// Numeric minor.
    pub version_minor: Option<i64>,
    /// Numeric patch.
    pub version_patch: Option<i64>,
    /// Edition.
    pub edition: Option<String>,
    /// Installation type.
    pub installation_type: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// `active_user_count`.
    pub active_user_count: Option<i64>,
    /// `license_expires_at`.
    pub license_expires_at: Option<NaiveDate>,
    /// `recorded_at` as sent.
    pub recorded_at: NaiveDateTime,
    /// When it was received.
    pub received_at: NaiveDateTime,
}

macro_rules! source_columns {
    () => {
        (
            usage_data::id,
            usage_data::uuid,
            usage_data::hostname,
            usage_data::version,
            usage_data::version_major,
            usage_data::version_minor,
            usage_data::version_patch,
            usage_data::edition,
            usage_data::installation_type,
            usage_data::country,
            usage_data::active_user_count,
            usage_data::license_expires_at,
            usage_data::recorded_at,
            usage_data::received_at,
        )
    };
}

/// Up to `limit` submissions with an id above `after_id`, by id.
pub fn list_submissions_after(
    conn: &mut AnyConnection,
    after_id: i64,
    limit: i64,
) -> Result<Vec<SourceSubmission>, DbError> {
    Ok(with_conn!(conn, |c| usage_data::table
        .filter(usage_data::id.gt(after_id))
        .order(usage_data::id)
        .limit(limit)
        .select(source_columns!())
        .load(c))?)
}

/// Submissions with an id in `(low, high]` that the rollups have not processed: rows that a
/// concurrent PostgreSQL writer committed after a higher id was already processed.
pub fn list_unprocessed_between(
    conn: &mut AnyConnection,
    low: i64,
    high: i64,
) -> Result<Vec<SourceSubmission>, DbError> {
    if high <= low {
        return Ok(Vec::new());
    }
    let present: Vec<i64> = with_conn!(conn, |c| usage_data::table
        .filter(usage_data::id.gt(low).and(usage_data::id.le(high)))
        .select(usage_data::id)
        .load(c))?;
    let done: Vec<i64> = with_conn!(conn, |c| insights_submissions::table
        .filter(insights_submissions::usage_data_id.gt(low))
        .filter(insights_submissions::usage_data_id.le(high))
        .select(insights_submissions::usage_data_id)
        .load(c))?;
    let done: std::collections::HashSet<i64> = done.into_iter().collect();
    let missing: Vec<i64> = present
        .into_iter()
        .filter(|id| !done.contains(id))
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    Ok(with_conn!(conn, |c| usage_data::table
        .filter(usage_data::id.eq_any(&missing))
        .order(usage_data::id)
        .select(source_columns!())
        .load(c))?)
}

/// Every metric key: `(id, key_path)`.
pub fn list_metric_keys(conn: &mut AnyConnection) -> Result<Vec<(i64, String)>, DbError> {
    Ok(with_conn!(conn, |c| metric_keys::table
        .select((metric_keys::id, metric_keys::key_path))
        .load(c))?)
}

/// The id of one key path.
pub fn find_metric_key(conn: &mut AnyConnection, key_path: &str) -> Result<Option<i64>, DbError> {
    Ok(with_conn!(conn, |c| metric_keys::table
        .filter(metric_keys::key_path.eq(key_path))
        .select(metric_keys::id)
        .first(c)
        .optional())?)
}

/// `(key_id, value)` of the given metrics of one submission, ordered by key: the staged row
/// or the block row of each key (`metric_values`), so the work does not grow with the number
/// of stored submissions.
pub fn list_metric_values_of(
    conn: &mut AnyConnection,
    usage_data_id: i64,
    key_ids: &[i64],
) -> Result<Vec<(i64, f64)>, DbError> {
    Ok(metric_values::values_of(conn, &[usage_data_id], key_ids)?
        .into_iter()
        .map(|(_, key, v)| (key, v.value))
        .collect())
}

/// How many metric rows ingest stored with submission `usage_data_id`
/// (`usage_data.metrics_count`), or `None` when the submission is gone.
pub fn find_metrics_count(
    conn: &mut AnyConnection,
    usage_data_id: i64,
) -> Result<Option<i64>, DbError> {
    Ok(with_conn!(conn, |c| usage_data::table
        .find(usage_data_id)
        .select(usage_data::metrics_count)
        .first(c)
        .optional())?)
}

/// A stored watermark or counter.
pub fn get_state(conn: &mut AnyConnection, name: &str) -> Result<Option<i64>, DbError> {
    Ok(with_conn!(conn, |c| insights_state::table
        .filter(insights_state::name.eq(name))
        .select(insights_state::value)
        .first(c)
        .optional())?)
}

/// Sets a watermark or counter.
pub fn set_state(conn: &mut AnyConnection, name: &str, value: i64) -> Result<(), DbError> {
    with_conn!(conn, |c| diesel::insert_into(insights_state::table)
        .values((
            insights_state::name.eq(name),
            insights_state::value.eq(value)
        ))
        .on_conflict(insights_state::name)
        .do_update()
        .set(insights_state::value.eq(value))
        .execute(c))?;
    Ok(())
}

/// The id of an installation, created when new.
pub fn upsert_installation(
    conn: &mut AnyConnection,
    uuid: &str,
    hostname: &str,
    excluded: bool,
) -> Result<i64, DbError> {
    Ok(with_conn!(conn, |c| {
        diesel::insert_into(insights_installations::table)
            .values((
                insights_installations::uuid.eq(uuid),
                insights_installations::hostname.eq(hostname),
                insights_installations::excluded.eq(excluded),
            ))
            .on_conflict_do_nothing()
            .execute(c)?;
        insights_installations::table
            .filter(insights_installations::uuid.eq(uuid))
            .filter(insights_installations::hostname.eq(hostname))
            .select(insights_installations::id)
            .first(c)
    })?)
}

/// A processed submission.
#[derive(Debug, Clone, Queryable, Insertable)]
#[diesel(table_name = insights_submissions)]
pub struct SubmissionRow {
    /// `usage_data.id`.
    pub usage_data_id: i64,
    /// Installation.
    pub installation_id: i64,
    /// Effective recorded_at.
    pub recorded_at: NaiveDateTime,
    /// Normalised version.
    pub version: Option<String>,
    /// Major.
    pub version_major: Option<i64>,
    /// Minor.
    pub version_minor: Option<i64>,
    /// Patch.
    pub version_patch: Option<i64>,
    /// Edition.
    pub edition: Option<String>,
    /// Tier.
    pub tier: String,
    /// Installation type.
    pub installation_type: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// Active users.
    pub active_user_count: Option<i64>,
}

/// Records a processed submission (a second time is a no-op).
pub fn insert_submission(conn: &mut AnyConnection, row: &SubmissionRow) -> Result<(), DbError> {
    with_conn!(conn, |c| diesel::insert_into(insights_submissions::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(())
}

/// The counted submission of one installation in one period.
#[derive(Debug, Clone, PartialEq, Queryable, Insertable)]
#[diesel(table_name = insights_periods)]
pub struct PeriodRow {
    /// `month` / `week`.
    pub period_kind: String,
    /// Period start.
    pub period_start: NaiveDate,
    /// Installation.
    pub installation_id: i64,
    /// The counted submission.
    pub usage_data_id: i64,
    /// Its effective recorded_at.
    pub recorded_at: NaiveDateTime,
    /// Version.
    pub version: Option<String>,
    /// Major.
    pub version_major: Option<i64>,
    /// Minor.
    pub version_minor: Option<i64>,
    /// Edition.
    pub edition: Option<String>,
    /// Tier.
    pub tier: String,
    /// Installation type.
    pub installation_type: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// Internal / staging host.
    pub excluded: bool,
    /// The counted submission of the installation's previous period of this kind:
    /// [`NO_PREVIOUS`] when there is none, `None` when not known (a row written by an earlier
    /// release during a rolling upgrade).
    pub previous_usage_data_id: Option<i64>,
}

/// Every column of a [`PeriodRow`], in its field order.
macro_rules! period_columns {
    () => {
        (
            insights_periods::period_kind,
            insights_periods::period_start,
            insights_periods::installation_id,
            insights_periods::usage_data_id,
            insights_periods::recorded_at,
            insights_periods::version,
            insights_periods::version_major,
            insights_periods::version_minor,
            insights_periods::edition,
            insights_periods::tier,
            insights_periods::installation_type,
            insights_periods::country,
            insights_periods::excluded,
            insights_periods::previous_usage_data_id,
        )
    };
}

/// `previous_usage_data_id` of an installation's first period (submission ids start at 1).
pub const NO_PREVIOUS: i64 = 0;

/// Which neighbour of a period to find.
#[derive(Debug, Clone, Copy)]
pub enum Neighbour {
    /// The latest period before.
    Previous,
    /// The earliest period after.
    Next,
}

/// The counted submission of `installation_id` in the period starting `start`, or in its
/// previous / next period that has one.
pub fn find_period(
    conn: &mut AnyConnection,
    kind: &str,
    installation_id: i64,
    start: NaiveDate,
    neighbour: Option<Neighbour>,
) -> Result<Option<PeriodRow>, DbError> {
    let base = insights_periods::table
        .filter(insights_periods::installation_id.eq(installation_id))
        .filter(insights_periods::period_kind.eq(kind))
        .select(period_columns!());
    Ok(with_conn!(conn, |c| match neighbour {
        None => base
            .filter(insights_periods::period_start.eq(start))
            .first(c)
            .optional(),
        Some(Neighbour::Previous) => base
            .filter(insights_periods::period_start.lt(start))
            .order(insights_periods::period_start.desc())
            .first(c)
            .optional(),
        Some(Neighbour::Next) => base
            .filter(insights_periods::period_start.gt(start))
            .order(insights_periods::period_start)
            .first(c)
            .optional(),
    })?)
}

/// Inserts or replaces the counted submission of a period.
pub fn upsert_period(conn: &mut AnyConnection, row: &PeriodRow) -> Result<(), DbError> {
    use diesel::upsert::excluded;
    with_conn!(conn, |c| diesel::insert_into(insights_periods::table)
        .values(row)
        .on_conflict((
            insights_periods::period_kind,
            insights_periods::period_start,
            insights_periods::installation_id,
        ))
        .do_update()
        .set((
            insights_periods::usage_data_id.eq(excluded(insights_periods::usage_data_id)),
            insights_periods::recorded_at.eq(excluded(insights_periods::recorded_at)),
            insights_periods::version.eq(excluded(insights_periods::version)),
            insights_periods::version_major.eq(excluded(insights_periods::version_major)),
            insights_periods::version_minor.eq(excluded(insights_periods::version_minor)),
            insights_periods::edition.eq(excluded(insights_periods::edition)),
            insights_periods::tier.eq(excluded(insights_periods::tier)),
            insights_periods::installation_type.eq(excluded(insights_periods::installation_type)),
            insights_periods::country.eq(excluded(insights_periods::country)),
            insights_periods::excluded.eq(excluded(insights_periods::excluded)),
            insights_periods::previous_usage_data_id
                .eq(excluded(insights_periods::previous_usage_data_id)),
        ))
        .execute(c))?;
    generations::bump(
        conn,
        generations::PINGS,
        vec![(row.period_kind.as_str(), row.period_start)],
    )
}

/// Points a period at the counted submission of the installation's period before it.
pub fn set_previous(
    conn: &mut AnyConnection,
    kind: &str,
    installation_id: i64,
    start: NaiveDate,
    previous_usage_data_id: Option<i64>,
) -> Result<(), DbError> {
    with_conn!(conn, |c| diesel::update(
        insights_periods::table
            .filter(insights_periods::period_kind.eq(kind))
            .filter(insights_periods::period_start.eq(start))
            .filter(insights_periods::installation_id.eq(installation_id))
    )
    .set(insights_periods::previous_usage_data_id.eq(previous_usage_data_id))
    .execute(c))?;
    generations::bump(conn, generations::PINGS, vec![(kind, start)])
}

/// `(usage_data_id, value)` of one metric in the submissions whose id lies in
/// `[low, high]`, ordered by id. Every form is keyed by metric first (`metric_values`), so
/// this reads a range whatever else the store holds; the caller keeps the submissions it
/// asked for.
pub fn list_key_values(
    conn: &mut AnyConnection,
    key_id: i64,
    low: i64,
    high: i64,
) -> Result<Vec<(i64, f64)>, DbError> {
    Ok(metric_values::key_values_between(conn, key_id, low, high)?
        .into_iter()
        .map(|(id, v)| (id, v.value))
        .collect())
}

/// Empties every rollup table (for `insights rebuild`), in one transaction with `then`.
pub fn reset_all(conn: &mut AnyConnection) -> Result<(), DbError> {
    with_conn!(conn, |c| {
        // No longer written; emptied so that a rebuild frees what earlier releases kept.
        diesel::delete(insights_metric_values::table).execute(c)?;
        diesel::delete(insights_periods::table).execute(c)?;
        diesel::delete(insights_submissions::table).execute(c)?;
        diesel::delete(insights_installations::table).execute(c)?;
        diesel::delete(insights_state::table).execute(c)
    })?;
    generations::bump_all(conn)
}

/// Runs `f` in one transaction on either store. SQLite takes the write lock up front
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes beside the ingest
/// writer could fail with "database is locked" instead of waiting its turn.
pub fn transaction<T>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, DbError>,
) -> Result<T, DbError> {
    use diesel::connection::SimpleConnection;
    // The closure needs the AnyConnection back, so the transaction is driven by hand; nothing
    // inside opens a nested one.
    let begin = match conn {
        AnyConnection::Sqlite(_) => "BEGIN IMMEDIATE",
        AnyConnection::Postgres(_) => "BEGIN",
    };
    with_conn!(conn, |c| c.batch_execute(begin))?;
    match f(conn) {
        Ok(value) => {
            with_conn!(conn, |c| c.batch_execute("COMMIT"))?;
            Ok(value)
        }
        Err(err) => {
            let _ = with_conn!(conn, |c| c.batch_execute("ROLLBACK"));
            Err(err)
        }
    }
}
