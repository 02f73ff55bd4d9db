//! Reads over the insights rollups for the API and the pages. Every read is bounded by the
//! asked period range or window, never by the store's whole history.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::dsl::count_star;
use diesel::prelude::*;

use super::insights::SubmissionRow;
use crate::db::schema::{
    insights_installations, insights_periods, insights_submissions, version_checks,
};
use crate::db::{AnyConnection, DbError};
use crate::domain::insights::dimension::Dimension;
use crate::with_conn;

/// `(period_start, group, installations)` with a counted submission in each period of
/// `[from, to)`; `group` is `None` without a dimension (and for a missing value).
pub fn count_installations(
    conn: &mut AnyConnection,
    kind: &str,
    from: NaiveDate,
    to: NaiveDate,
    by: Option<Dimension>,
    include_excluded: bool,
) -> Result<Vec<(NaiveDate, Option<String>, i64)>, DbError> {
    macro_rules! grouped {
        ($c:expr, $col:expr) => {
            insights_periods::table
                .filter(insights_periods::period_kind.eq(kind))
                .filter(insights_periods::period_start.ge(from))
                .filter(insights_periods::period_start.lt(to))
                .filter(
                    insights_periods::excluded
                        .eq(false)
                        .or(insights_periods::excluded.eq(include_excluded)),
                )
                .group_by((insights_periods::period_start, $col))
                .select((
                    insights_periods::period_start,
                    $col.nullable(),
                    count_star(),
                ))
                .order((insights_periods::period_start, $col))
                .load::<(NaiveDate, Option<String>, i64)>($c)
        };
    }
    let rows = with_conn!(conn, |c| match by {
        None => insights_periods::table
            .filter(insights_periods::period_kind.eq(kind))
            .filter(insights_periods::period_start.ge(from))
            .filter(insights_periods::period_start.lt(to))
            .filter(
                insights_periods::excluded
                    .eq(false)
                    .or(insights_periods::excluded.eq(include_excluded)),
            )
            .group_by(insights_periods::period_start)
            .select((insights_periods::period_start, count_star()))
            .order(insights_periods::period_start)
            .load::<(NaiveDate, i64)>(c)
            .map(|rows| rows.into_iter().map(|(p, n)| (p, None, n)).collect()),
        Some(Dimension::Tier) => grouped!(c, insights_periods::tier),
        Some(Dimension::Edition) => grouped!(c, insights_periods::edition),
        Some(Dimension::InstallationType) => grouped!(c, insights_periods::installation_type),
        Some(Dimension::Country) => grouped!(c, insights_periods::country),
    })?;
    Ok(rows)
}

/// `(period_start, installation_id)` of every counted submission in `[from, to)`: who was
/// active when, and nothing else.
pub fn list_period_installations(
    conn: &mut AnyConnection,
    kind: &str,
    from: NaiveDate,
    to: NaiveDate,
    include_excluded: bool,
) -> Result<Vec<(NaiveDate, i64)>, DbError> {
    Ok(with_conn!(conn, |c| insights_periods::table
        .filter(insights_periods::period_kind.eq(kind))
        .filter(insights_periods::period_start.ge(from))
        .filter(insights_periods::period_start.lt(to))
        .filter(
            insights_periods::excluded
                .eq(false)
                .or(insights_periods::excluded.eq(include_excluded)),
        )
        .select((
            insights_periods::period_start,
            insights_periods::installation_id,
        ))
        .load(c))?)
}

/// The condition every raw read over the counted submissions `p` of `[from, to)` shares;
/// [`load_in_range`] binds `$1`-`$4` to it.
pub(crate) const IN_RANGE: &str = "p.period_kind = $1 AND p.period_start >= $2 \
     AND p.period_start < $3 AND (p.excluded = $4 OR p.excluded = FALSE)";

/// Runs a raw read whose `WHERE` holds [`IN_RANGE`], with the range bound to `$1`-`$4` and,
/// when given, a metric key to `$5`. `$5` must come after [`IN_RANGE`] in the text: SQLite
/// numbers `$N` parameters in the order they first appear, not by `N`.
pub(crate) fn load_in_range<R>(
    conn: &mut AnyConnection,
    sql: &str,
    kind: &str,
    from: NaiveDate,
    to: NaiveDate,
    include_excluded: bool,
    key_id: Option<i64>,
) -> Result<Vec<R>, DbError>
where
    R: QueryableByName<diesel::sqlite::Sqlite> + QueryableByName<diesel::pg::Pg> + 'static,
{
    use diesel::sql_types::{BigInt, Bool, Date, Text};
    Ok(with_conn!(conn, |c| {
        let query = diesel::sql_query(sql)
            .bind::<Text, _>(kind)
            .bind::<Date, _>(from)
            .bind::<Date, _>(to)
            .bind::<Bool, _>(include_excluded);
        match key_id {
            Some(key) => query.bind::<BigInt, _>(key).load(c),
            None => query.load(c),
        }
    })?)
}

/// A counted submission's period, installation hostname and minor line.
#[derive(Debug, Clone, QueryableByName)]
pub struct PeriodHost {
    /// Period start.
    #[diesel(sql_type = diesel::sql_types::Date)]
    pub period_start: NaiveDate,
    /// The installation's hostname (`""` when it has none).
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub hostname: String,
    /// Numeric major.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    pub version_major: Option<i64>,
    /// Numeric minor.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    pub version_minor: Option<i64>,
}

/// Every counted submission of `[from, to)` with its installation's hostname and its line:
/// one join, four columns (the source views need no more).
pub fn list_period_hosts(
    conn: &mut AnyConnection,
    kind: &str,
    from: NaiveDate,
    to: NaiveDate,
    include_excluded: bool,
) -> Result<Vec<PeriodHost>, DbError> {
    let sql = format!(
        "SELECT p.period_start, COALESCE(i.hostname, '') AS hostname, \
                p.version_major, p.version_minor \
         FROM insights_periods p \
         LEFT JOIN insights_installations i ON i.id = p.installation_id \
         WHERE {IN_RANGE}"
    );
    load_in_range(conn, &sql, kind, from, to, include_excluded, None)
}

/// Counted submissions of one period sharing a version and a day.
#[derive(Debug, Clone, QueryableByName)]
pub struct VersionDayCount {
    /// Period start.
    #[diesel(sql_type = diesel::sql_types::Date)]
    pub period_start: NaiveDate,
    /// Normalised version.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub version: Option<String>,
    /// Numeric major.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    pub version_major: Option<i64>,
    /// Numeric minor.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    pub version_minor: Option<i64>,
    /// UTC day of the effective `recorded_at`.
    #[diesel(sql_type = diesel::sql_types::Date)]
    pub day: NaiveDate,
    /// Installations.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub installations: i64,
}

/// Counted submissions of `[from, to)` per period, version and day: the store does the
/// counting, so the version views read at most one row per version and day of a period
/// instead of one per installation (the rules that need the version and the day, such as
/// verdicts and versions behind, then run once per row).
pub fn count_period_versions(
    conn: &mut AnyConnection,
    kind: &str,
    from: NaiveDate,
    to: NaiveDate,
    include_excluded: bool,
) -> Result<Vec<VersionDayCount>, DbError> {
    // SQLite keeps timestamps as `YYYY-MM-DD HH:MM:SS` text: date() takes its day.
    let day = match conn {
        AnyConnection::Sqlite(_) => "date(p.recorded_at)",
        AnyConnection::Postgres(_) => "CAST(p.recorded_at AS DATE)",
    };
    let sql = format!(
        "SELECT p.period_start, p.version, p.version_major, p.version_minor, {day} AS day, \
                COUNT(*) AS installations \
         FROM insights_periods p \
         WHERE {IN_RANGE} \
         GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 5"
    );
    load_in_range(conn, &sql, kind, from, to, include_excluded, None)
}

/// One counted submission's value of a metric, with the value of the installation's
/// previous counted submission (the baseline of all-time counters).
#[derive(Debug, Clone, QueryableByName)]
pub struct MetricPeriodRow {
    /// Period start.
    #[diesel(sql_type = diesel::sql_types::Date)]
    pub period_start: NaiveDate,
    /// Installation.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub installation_id: i64,
    /// Tier of the counted submission.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub tier: String,
    /// Its edition.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub edition: Option<String>,
    /// Its value of the metric.
    #[diesel(sql_type = diesel::sql_types::Double)]
    pub value: f64,
    /// `insights_periods.previous_usage_data_id` (0: none; NULL: not known).
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    pub previous_usage_data_id: Option<i64>,
    /// The previous counted submission's value of the metric, when it has one.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    pub previous_value: Option<f64>,
}

/// A counted submission of a period, before its metric value is looked up.
#[derive(Debug, Clone, QueryableByName)]
struct CountedRow {
    #[diesel(sql_type = diesel::sql_types::Date)]
    period_start: NaiveDate,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    installation_id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    tier: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    edition: Option<String>,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    usage_data_id: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    previous_usage_data_id: Option<i64>,
}

/// The counted submissions of `[from, to)` that carry metric `key_id`, with their value and
/// their previous period's value, ordered by period and installation. The counted
/// submissions come from one pass over the periods; the metric's values from one read of the
/// id range they span (`metric_values::key_values_between`: every form of the values is
/// keyed by metric first), so only the one metric leaves the store.
pub fn list_metric_period_rows(
    conn: &mut AnyConnection,
    kind: &str,
    key_id: i64,
    from: NaiveDate,
    to: NaiveDate,
    include_excluded: bool,
) -> Result<Vec<MetricPeriodRow>, DbError> {
    let sql = format!(
        "SELECT p.period_start, p.installation_id, p.tier, p.edition, p.usage_data_id, \
                p.previous_usage_data_id \
         FROM insights_periods p \
         WHERE {IN_RANGE} \
         ORDER BY p.period_start, p.installation_id"
    );
    let counted: Vec<CountedRow> =
        load_in_range(conn, &sql, kind, from, to, include_excluded, None)?;
    let ids = counted.iter().flat_map(|row| {
        [Some(row.usage_data_id), row.previous_usage_data_id]
            .into_iter()
            .flatten()
            .filter(|id| *id > 0)
    });
    let (Some(low), Some(high)) = (ids.clone().min(), ids.max()) else {
        return Ok(Vec::new());
    };
    let values: std::collections::HashMap<i64, f64> =
        super::metric_values::key_values_between(conn, key_id, low, high)?
            .into_iter()
            .map(|(id, v)| (id, v.value))
            .collect();
    Ok(counted
        .into_iter()
        .filter_map(|row| {
            let value = *values.get(&row.usage_data_id)?;
            let previous_value = row
                .previous_usage_data_id
                .and_then(|id| values.get(&id).copied());
            Some(MetricPeriodRow {
                period_start: row.period_start,
                installation_id: row.installation_id,
                tier: row.tier,
                edition: row.edition,
                value,
                previous_usage_data_id: row.previous_usage_data_id,
                previous_value,
            })
        })
        .collect())
}

/// An upper bound above every stored date that both stores compare as a date (chrono's own
/// maximum is out of PostgreSQL's range, and sorts first as SQLite text).
fn far_future() -> NaiveDate {
    NaiveDate::from_ymd_opt(9999, 12, 31).expect("a valid date")
}

/// One processed submission in a window, with what the window lists need of its installation.
#[derive(Debug, Clone, Queryable)]
pub struct WindowSubmission {
    /// Installation.
    pub installation_id: i64,
    /// Its hostname (`""` when the payload had none).
    pub hostname: String,
    /// Effective recorded_at.
    pub recorded_at: NaiveDateTime,
    /// The submission.
    pub usage_data_id: i64,
    /// Its version.
    pub version: Option<String>,
    /// The installation's uuid.
    pub uuid: String,
    /// An internal or staging host.
    pub excluded: bool,
}

/// The processed submissions with an effective recorded_at in `[from, before)` (no upper
/// bound without `before`), of every installation, excluded or not.
pub fn list_window_submissions(
    conn: &mut AnyConnection,
    from: NaiveDateTime,
    before: Option<NaiveDateTime>,
) -> Result<Vec<WindowSubmission>, DbError> {
    let upper = before.unwrap_or_else(|| far_future().and_time(chrono::NaiveTime::MIN));
    Ok(with_conn!(conn, |c| insights_submissions::table
        .inner_join(
            insights_installations::table
                .on(insights_installations::id.eq(insights_submissions::installation_id)),
        )
        .filter(insights_submissions::recorded_at.ge(from))
        .filter(insights_submissions::recorded_at.lt(upper))
        .select((
            insights_submissions::installation_id,
            insights_installations::hostname,
            insights_submissions::recorded_at,
            insights_submissions::usage_data_id,
            insights_submissions::version,
            insights_installations::uuid,
            insights_installations::excluded,
        ))
        .load(c))?)
}

/// Version checks with a Referer host on days in `[from, before)` (no upper bound without
/// `before`): `(host, day, version, last_seen)`.
pub fn list_window_checks(
    conn: &mut AnyConnection,
    from: NaiveDate,
    before: Option<NaiveDate>,
) -> Result<Vec<(String, NaiveDate, String, NaiveDateTime)>, DbError> {
    let upper = before.unwrap_or_else(far_future);
    Ok(with_conn!(conn, |c| version_checks::table
        .filter(version_checks::day.ge(from))
        .filter(version_checks::day.lt(upper))
        .filter(version_checks::host.ne(""))
        .select((
            version_checks::host,
            version_checks::day,
            version_checks::version,
            version_checks::last_seen,
        ))
        .load(c))?)
}

/// An installation's id and excluded flag.
pub fn find_installation(
    conn: &mut AnyConnection,
    uuid: &str,
    hostname: &str,
) -> Result<Option<(i64, bool)>, DbError> {
    Ok(with_conn!(conn, |c| insights_installations::table
        .filter(insights_installations::uuid.eq(uuid))
        .filter(insights_installations::hostname.eq(hostname))
        .select((insights_installations::id, insights_installations::excluded))
        .first(c)
        .optional())?)
}

/// Every processed submission of an installation, oldest first.
pub fn list_installation_submissions(
    conn: &mut AnyConnection,
    installation_id: i64,
) -> Result<Vec<SubmissionRow>, DbError> {
    Ok(with_conn!(conn, |c| insights_submissions::table
        .filter(insights_submissions::installation_id.eq(installation_id))
        .order((
            insights_submissions::recorded_at,
            insights_submissions::usage_data_id,
        ))
        .select((
            insights_submissions::usage_data_id,
            insights_submissions::installation_id,
            insights_submissions::recorded_at,
            insights_submissions::version,
            insights_submissions::version_major,
            insights_submissions::version_minor,
            insights_submissions::version_patch,
            insights_submissions::edition,
            insights_submissions::tier,
            insights_submissions::installation_type,
            insights_submissions::country,
            insights_submissions::active_user_count,
        ))
        .load(c))?)
}

/// A host's version checks per day: `(day, version, count)`, oldest first.
pub fn list_host_checks(
    conn: &mut AnyConnection,
    host: &str,
) -> Result<Vec<(NaiveDate, String, i64)>, DbError> {
    let rows: Vec<(NaiveDate, String, i64)> = with_conn!(conn, |c| version_checks::table
        .filter(version_checks::host.eq(host))
        .order((version_checks::day, version_checks::version))
        .select((
            version_checks::day,
            version_checks::version,
            version_checks::count,
        ))
        .load(c))?;
    // Several countries per (day, version) are one line for an analyst.
    let mut merged: Vec<(NaiveDate, String, i64)> = Vec::with_capacity(rows.len());
    for (day, version, count) in rows {
        match merged.last_mut() {
            Some(last) if last.0 == day && last.1 == version => last.2 += count,
            _ => merged.push((day, version, count)),
        }
    }
    Ok(merged)
}
