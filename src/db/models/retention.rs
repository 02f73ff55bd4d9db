//! Retention SQL: each function removes (or rolls up) at most one batch of rows in one
//! short transaction and returns how many it touched, so the caller loops until a batch
//! comes back short and checks and ingest never wait long behind it. On SQLite each batch
//! takes the write lock up front (`BEGIN IMMEDIATE`), so it queues behind other writers
//! instead of failing when one commits between its read and its write.

use chrono::{Datelike, NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use diesel::upsert::excluded;

use super::insights_generations::{self as g, bump_generations};
use crate::db::schema::{
    hosts, usage_data, usage_data_extra, usage_data_raw, usage_ping_errors, usage_ping_metadata,
    usage_ping_metadata_metrics, version_checks, version_checks_monthly,
};
use crate::db::{AnyConnection, DbError};
use crate::with_conn;

/// First day of `day`'s month: the key of `version_checks_monthly`.
pub fn month_of(day: NaiveDate) -> NaiveDate {
    day.with_day(1).expect("every month has a first day")
}

/// Sums up to `batch` daily check rows of days before `before` into their month and deletes
/// them, in one transaction; returns the daily rows folded.
pub fn roll_up_daily_checks(
    conn: &mut AnyConnection,
    before: NaiveDate,
    batch: i64,
) -> Result<usize, DbError> {
    type Row = (NaiveDate, String, String, String, i64, NaiveDateTime);
    conn.transaction(|conn| {
        with_conn!(conn, |c| {
            let rows: Vec<Row> = version_checks::table
                .filter(version_checks::day.lt(before))
                .order((
                    version_checks::day,
                    version_checks::host,
                    version_checks::version,
                    version_checks::country,
                ))
                .limit(batch)
                .select((
                    version_checks::day,
                    version_checks::host,
                    version_checks::version,
                    version_checks::country,
                    version_checks::count,
                    version_checks::last_seen,
                ))
                .load(c)?;
            for (day, host, version, country, count, last_seen) in &rows {
                diesel::insert_into(version_checks_monthly::table)
                    .values((
                        version_checks_monthly::month.eq(month_of(*day)),
                        version_checks_monthly::host.eq(host),
                        version_checks_monthly::version.eq(version),
                        version_checks_monthly::country.eq(country),
                        version_checks_monthly::count.eq(count),
                        version_checks_monthly::last_seen.eq(last_seen),
                    ))
                    .on_conflict((
                        version_checks_monthly::month,
                        version_checks_monthly::host,
                        version_checks_monthly::version,
                        version_checks_monthly::country,
                    ))
                    .do_update()
                    .set((
                        version_checks_monthly::count
                            .eq(version_checks_monthly::count
                                + excluded(version_checks_monthly::count)),
                        version_checks_monthly::last_seen.eq(diesel::dsl::case_when(
                            excluded(version_checks_monthly::last_seen)
                                .gt(version_checks_monthly::last_seen),
                            excluded(version_checks_monthly::last_seen),
                        )
                        .otherwise(version_checks_monthly::last_seen)),
                    ))
                    .execute(c)?;
                diesel::delete(
                    version_checks::table
                        .filter(version_checks::day.eq(day))
                        .filter(version_checks::host.eq(host))
                        .filter(version_checks::version.eq(version))
                        .filter(version_checks::country.eq(country)),
                )
                .execute(c)?;
            }
            if !rows.is_empty() {
                // Folded days leave the insights source views of their periods.
                bump_generations!(c, g::ALL, vec![g::all_key()])?;
            }
            Ok(rows.len())
        })
    })
}

/// Total of the monthly counts (what retention folded out of `version_checks`).
pub fn total_monthly_checks(conn: &mut AnyConnection) -> Result<i64, DbError> {
    let total =
        diesel::dsl::sql::<diesel::sql_types::BigInt>("CAST(COALESCE(SUM(count), 0) AS BIGINT)");
    Ok(with_conn!(conn, |c| version_checks_monthly::table
        .select(total)
        .first::<i64>(c))?)
}

/// Deletes up to `batch` hosts whose latest check is before `cutoff`.
pub fn delete_hosts_not_seen_since(
    conn: &mut AnyConnection,
    cutoff: NaiveDateTime,
    batch: i64,
) -> Result<usize, DbError> {
    conn.transaction(|conn| {
        with_conn!(conn, |c| {
            let names: Vec<String> = hosts::table
                .filter(hosts::last_seen.lt(cutoff))
                .order(hosts::hostname)
                .limit(batch)
                .select(hosts::hostname)
                .load(c)?;
            Ok(diesel::delete(hosts::table.filter(hosts::hostname.eq_any(&names))).execute(c)?)
        })
    })
}

/// Deletes up to `batch` failure reports received before `cutoff`.
pub fn delete_errors_received_before(
    conn: &mut AnyConnection,
    cutoff: NaiveDateTime,
    batch: i64,
) -> Result<usize, DbError> {
    conn.transaction(|conn| {
        with_conn!(conn, |c| {
            let ids: Vec<i64> = usage_ping_errors::table
                .filter(usage_ping_errors::received_at.lt(cutoff))
                .order(usage_ping_errors::id)
                .limit(batch)
                .select(usage_ping_errors::id)
                .load(c)?;
            Ok(
                diesel::delete(usage_ping_errors::table.filter(usage_ping_errors::id.eq_any(&ids)))
                    .execute(c)?,
            )
        })
    })
}

/// Deletes up to `batch` timing reports (and their per-metric rows) received before `cutoff`.
pub fn delete_metadata_received_before(
    conn: &mut AnyConnection,
    cutoff: NaiveDateTime,
    batch: i64,
) -> Result<usize, DbError> {
    conn.transaction(|conn| {
        with_conn!(conn, |c| {
            let ids: Vec<i64> = usage_ping_metadata::table
                .filter(usage_ping_metadata::received_at.lt(cutoff))
                .order(usage_ping_metadata::id)
                .limit(batch)
                .select(usage_ping_metadata::id)
                .load(c)?;
            diesel::delete(
                usage_ping_metadata_metrics::table
                    .filter(usage_ping_metadata_metrics::metadata_id.eq_any(&ids)),
            )
            .execute(c)?;
            Ok(diesel::delete(
                usage_ping_metadata::table.filter(usage_ping_metadata::id.eq_any(&ids)),
            )
            .execute(c)?)
        })
    })
}

/// Deletes up to `batch` verbatim payloads of submissions received before `cutoff`.
pub fn delete_raw_received_before(
    conn: &mut AnyConnection,
    cutoff: NaiveDateTime,
    batch: i64,
) -> Result<usize, DbError> {
    conn.transaction(|conn| {
        with_conn!(conn, |c| {
            let ids: Vec<i64> = usage_data_raw::table
                .inner_join(usage_data::table)
                .filter(usage_data::received_at.lt(cutoff))
                .order(usage_data_raw::usage_data_id)
                .limit(batch)
                .select(usage_data_raw::usage_data_id)
                .load(c)?;
            Ok(diesel::delete(
                usage_data_raw::table.filter(usage_data_raw::usage_data_id.eq_any(&ids)),
            )
            .execute(c)?)
        })
    })
}

/// Deletes up to `batch` submissions received before `cutoff`, with their payloads and
/// metric rows; returns the submissions removed.
pub fn delete_submissions_received_before(
    conn: &mut AnyConnection,
    cutoff: NaiveDateTime,
    batch: i64,
) -> Result<usize, DbError> {
    conn.transaction(|conn| {
        let ids: Vec<i64> = with_conn!(conn, |c| usage_data::table
            .filter(usage_data::received_at.lt(cutoff))
            .order(usage_data::id)
            .limit(batch)
            .select(usage_data::id)
            .load(c))?;
        super::metric_values::delete_values(conn, &ids)?;
        with_conn!(conn, |c| {
            diesel::delete(
                usage_data_raw::table.filter(usage_data_raw::usage_data_id.eq_any(&ids)),
            )
            .execute(c)?;
            diesel::delete(
                usage_data_extra::table.filter(usage_data_extra::usage_data_id.eq_any(&ids)),
            )
            .execute(c)?;
            if !ids.is_empty() {
                // The metric values and seat figures of the deleted submissions leave the
                // insights views of their periods.
                bump_generations!(c, g::ALL, vec![g::all_key()])?;
            }
            Ok(diesel::delete(usage_data::table.filter(usage_data::id.eq_any(&ids))).execute(c)?)
        })
    })
}

/// Deletes up to `batch` console sessions that ended before `ended_before` (absolute end or
/// last request before it); logins also clear ended sessions, the job catches the rest.
pub fn delete_console_sessions_ended_before(
    conn: &mut AnyConnection,
    ended_before: NaiveDateTime,
    batch: i64,
) -> Result<usize, DbError> {
    use crate::db::schema::console_sessions;
    conn.transaction(|conn| {
        with_conn!(conn, |c| {
            let ids: Vec<i64> = console_sessions::table
                .filter(
                    console_sessions::expires_at
                        .lt(ended_before)
                        .or(console_sessions::last_seen.lt(ended_before)),
                )
                .order(console_sessions::id)
                .limit(batch)
                .select(console_sessions::id)
                .load(c)?;
            Ok(
                diesel::delete(console_sessions::table.filter(console_sessions::id.eq_any(&ids)))
                    .execute(c)?,
            )
        })
    })
}
