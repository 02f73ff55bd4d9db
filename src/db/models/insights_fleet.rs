//! Reads behind the fleet views of the insights pages (activity, sources, versions behind,
//! licences, raw payloads). Each is bounded by a period range, a window, or a given id set
//! (looked up in chunks), never by the store's whole history.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::dsl::min;
use diesel::prelude::*;

use super::insights_queries::{load_in_range, IN_RANGE};
use super::metric_values;
use crate::db::schema::{
    insights_installations, insights_periods, metric_keys, usage_data, usage_data_extra,
    version_checks,
};
use crate::db::{AnyConnection, DbError};
use crate::with_conn;

/// Ids per `IN (…)` list.
const IDS_PER_LOOKUP: usize = 5_000;

/// Each installation's first period with a submission: `(installation_id, period_start)`.
pub(crate) fn first_periods(
    conn: &mut AnyConnection,
    kind: &str,
    ids: &[i64],
) -> Result<Vec<(i64, NaiveDate)>, DbError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_LOOKUP) {
        let rows: Vec<(i64, Option<NaiveDate>)> = with_conn!(conn, |c| insights_periods::table
            .filter(insights_periods::period_kind.eq(kind))
            .filter(insights_periods::installation_id.eq_any(chunk))
            .group_by(insights_periods::installation_id)
            .select((
                insights_periods::installation_id,
                min(insights_periods::period_start),
            ))
            .load(c))?;
        out.extend(rows.into_iter().filter_map(|(id, p)| Some((id, p?))));
    }
    Ok(out)
}

/// The first period in which any installation of each hostname sent a submission.
pub(crate) fn first_periods_by_hostname(
    conn: &mut AnyConnection,
    kind: &str,
    hosts: &[String],
) -> Result<Vec<(String, NaiveDate)>, DbError> {
    let mut out = Vec::with_capacity(hosts.len());
    for chunk in hosts.chunks(IDS_PER_LOOKUP) {
        let rows: Vec<(String, Option<NaiveDate>)> = match conn {
            // PostgreSQL compares every installation with every element of a bound
            // `= ANY($1)` array (hostname has no index): ~450 ms per 5,000 hostnames at
            // 8,000 installations. Unnested into a semi-join the array is hashed once, and
            // each installation's first period is one probe of the (installation_id,
            // period_kind, period_start) index: ~10 ms.
            AnyConnection::Postgres(c) => {
                use diesel::sql_types::{Array, Text};
                let sql = "SELECT i.hostname, MIN((SELECT MIN(p.period_start) \
                                                 FROM insights_periods p \
                                                 WHERE p.installation_id = i.id \
                                                   AND p.period_kind = $1)) AS first_period \
                           FROM insights_installations i \
                           WHERE i.hostname IN (SELECT unnest($2::text[])) \
                           GROUP BY i.hostname";
                diesel::sql_query(sql)
                    .bind::<Text, _>(kind)
                    .bind::<Array<Text>, _>(chunk)
                    .load::<HostFirstPeriod>(&mut **c)?
                    .into_iter()
                    .map(|r| (r.hostname, r.first_period))
                    .collect()
            }
            // SQLite turns an `IN (?, …)` list into a temporary index: no such cost.
            AnyConnection::Sqlite(c) => insights_periods::table
                .inner_join(
                    insights_installations::table
                        .on(insights_installations::id.eq(insights_periods::installation_id)),
                )
                .filter(insights_periods::period_kind.eq(kind))
                .filter(insights_installations::hostname.eq_any(chunk))
                .group_by(insights_installations::hostname)
                .select((
                    insights_installations::hostname,
                    min(insights_periods::period_start),
                ))
                .load(&mut **c)?,
        };
        out.extend(rows.into_iter().filter_map(|(h, p)| Some((h, p?))));
    }
    Ok(out)
}

/// A hostname's first period (PostgreSQL's form of [`first_periods_by_hostname`]).
#[derive(QueryableByName)]
struct HostFirstPeriod {
    #[diesel(sql_type = diesel::sql_types::Text)]
    hostname: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Date>)]
    first_period: Option<NaiveDate>,
}

/// Version checks with a Referer host on days in `[from, to)`: `(host, day, version, last_seen)`.
pub(crate) fn list_check_days(
    conn: &mut AnyConnection,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(String, NaiveDate, String, NaiveDateTime)>, DbError> {
    Ok(with_conn!(conn, |c| version_checks::table
        .filter(version_checks::day.ge(from))
        .filter(version_checks::day.lt(to))
        .filter(version_checks::host.ne(""))
        .select((
            version_checks::host,
            version_checks::day,
            version_checks::version,
            version_checks::last_seen,
        ))
        .load(c))?)
}

/// The licence fields of one submission, as the summary row keeps them.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub(crate) struct LicenceFields {
    /// `usage_data.id`.
    pub(crate) usage_data_id: i64,
    /// `edition` (decides the tier with the expiry).
    pub(crate) edition: Option<String>,
    /// `active_user_count`.
    pub(crate) active_user_count: Option<i64>,
    /// `historical_max_users`.
    pub(crate) historical_max_users: Option<i64>,
    /// `license_plan`.
    pub(crate) license_plan: Option<String>,
    /// `license_trial`.
    pub(crate) license_trial: Option<bool>,
    /// `license_expires_at`.
    pub(crate) license_expires_at: Option<NaiveDate>,
    /// `license_user_count` (seats).
    pub(crate) license_user_count: Option<i64>,
    /// `license_starts_at` (`usage_data_extra`).
    pub(crate) license_starts_at: Option<NaiveDate>,
}

/// The licence fields of the given submissions (any order; ids no longer stored are absent).
pub(crate) fn list_licence_fields(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> Result<Vec<LicenceFields>, DbError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_LOOKUP) {
        let rows: Vec<LicenceFields> = with_conn!(conn, |c| usage_data::table
            .left_join(usage_data_extra::table)
            .filter(usage_data::id.eq_any(chunk))
            .select((
                usage_data::id,
                usage_data::edition,
                usage_data::active_user_count,
                usage_data::historical_max_users,
                usage_data::license_plan,
                usage_data::license_trial,
                usage_data::license_expires_at,
                usage_data::license_user_count,
                usage_data_extra::license_starts_at.nullable(),
            ))
            .load(c))?;
        out.extend(rows);
    }
    Ok(out)
}

/// The `license_add_ons.*` leaves of the given submissions: `(usage_data_id, add-on, value)`.
pub(crate) fn list_add_ons(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> Result<Vec<(i64, String, f64)>, DbError> {
    let keys: Vec<(i64, String)> = with_conn!(conn, |c| metric_keys::table
        .filter(
            metric_keys::key_path
                .like("license\\_add\\_ons.%")
                .escape('\\')
        )
        .select((metric_keys::id, metric_keys::key_path))
        .load(c))?;
    if keys.is_empty() || ids.is_empty() {
        return Ok(Vec::new());
    }
    let key_ids: Vec<i64> = keys.iter().map(|(id, _)| *id).collect();
    let mut out = Vec::new();
    for (id, key, value) in metric_values::values_of(conn, ids, &key_ids)? {
        if let Some((_, path)) = keys.iter().find(|(k, _)| *k == key) {
            let name = path.strip_prefix("license_add_ons.").unwrap_or(path);
            out.push((id, name.to_owned(), value.value));
        }
    }
    out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Ok(out)
}

/// One counted submission's seat figures, for seat utilisation.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct SeatRow {
    /// Period start.
    #[diesel(sql_type = diesel::sql_types::Date)]
    pub(crate) period_start: NaiveDate,
    /// Tier of the counted submission.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) tier: String,
    /// `usage_data.active_user_count`.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) active_user_count: i64,
    /// `usage_data.license_user_count` (seats).
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) license_user_count: i64,
}

/// The counted submissions of `[from, to)` that report both active users and seats, with
/// those two figures: one join of the periods to their summary rows, so only four columns
/// per installation and period leave the store (loading whole period rows and then the
/// summary rows by id chunks cost ~10x more on SQLite at 2,000 installations).
pub(crate) fn list_seat_rows(
    conn: &mut AnyConnection,
    kind: &str,
    from: NaiveDate,
    to: NaiveDate,
    include_excluded: bool,
) -> Result<Vec<SeatRow>, DbError> {
    let sql = format!(
        "SELECT p.period_start, p.tier, u.active_user_count, u.license_user_count \
         FROM insights_periods p JOIN usage_data u ON u.id = p.usage_data_id \
         WHERE {IN_RANGE} \
           AND u.active_user_count IS NOT NULL AND u.license_user_count IS NOT NULL"
    );
    load_in_range(conn, &sql, kind, from, to, include_excluded, None)
}
