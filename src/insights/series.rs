//! The period series every insights endpoint and page shows, served through the
//! per-period cache ([`super::period_cache`]). Each function names what its rows depend on
//! besides the store's period rows; the computation itself is the view's own function, so
//! a cached period is exactly what a full computation gives.
//!
//! The five version views (versions, vulnerable share, penetration, versions behind, days
//! behind) share one cached read, the (period, version, day) counts: they apply the release
//! table to it in memory, so a release edit needs no invalidation.

use super::fleet::{self, ActivityRow, SourcesRow, VersionSourcesRow};
use super::licences::{self, UtilisationRow};
use super::metric_lists::{self, TopLists};
use super::period_cache::{period_row, PeriodCache, PeriodRow, Reads, View};
use super::report::{self, InstallationsRow, MetricError, MetricRow, Range};
use crate::db::models::insights_catalogue::find_defined_time_frame;
use crate::db::models::insights_queries::VersionDayCount;
use crate::db::{AnyConnection, DbError};
use crate::domain::insights::dimension::Dimension;
use crate::domain::insights::periods::PeriodKind;
use chrono::NaiveDate;

period_row!(
    InstallationsRow,
    MetricRow,
    ActivityRow,
    SourcesRow,
    VersionSourcesRow,
    UtilisationRow
);

impl PeriodRow for VersionDayCount {
    fn period(&self) -> NaiveDate {
        self.period_start
    }
    fn set_complete(&mut self, _: bool) {}
}

fn view(name: &'static str, params: String, reads: Reads) -> View {
    View {
        name,
        params,
        reads,
    }
}

/// Active installations per period and group ([`report::installations`]).
pub(crate) fn installations(
    conn: &mut AnyConnection,
    cache: &PeriodCache,
    range: &Range,
    by: Option<Dimension>,
) -> Result<Vec<InstallationsRow>, DbError> {
    let v = view("installations", format!("{by:?}"), Reads::Pings);
    cache.rows(conn, &v, range, |c, r| report::installations(c, r, by))
}

/// One metric's series ([`report::metric`]); its key id and defined time frame are part of
/// the key, so re-importing definitions changes which rows are used.
pub(crate) fn metric(
    conn: &mut AnyConnection,
    cache: &PeriodCache,
    key_path: &str,
    range: &Range,
    by: Option<Dimension>,
) -> Result<Vec<MetricRow>, MetricError> {
    let key_id = report::key_id_of(conn, key_path)?;
    let defined = find_defined_time_frame(conn, key_path)?;
    let v = view(
        "metric",
        format!("{key_id}|{by:?}|{defined:?}"),
        Reads::Pings,
    );
    cache.rows(conn, &v, range, |c, r| report::metric(c, key_path, r, by))
}

/// The (period, version, day) counts behind every version view ([`report::version_counts`]).
pub(crate) fn version_counts(
    conn: &mut AnyConnection,
    cache: &PeriodCache,
    range: &Range,
) -> Result<Vec<VersionDayCount>, DbError> {
    let v = view("version_counts", String::new(), Reads::Pings);
    cache.rows(conn, &v, range, report::version_counts)
}

/// New, returning, reactivated and churned installations ([`fleet::activity`]).
pub(crate) fn activity(
    conn: &mut AnyConnection,
    cache: &PeriodCache,
    range: &Range,
) -> Result<Vec<ActivityRow>, DbError> {
    let v = view("activity", String::new(), Reads::Pings);
    cache.rows(conn, &v, range, fleet::activity)
}

/// Service Ping installations versus version-check-only hosts ([`fleet::overview_sources`]).
pub(crate) fn overview_sources(
    conn: &mut AnyConnection,
    cache: &PeriodCache,
    range: &Range,
) -> Result<Vec<SourcesRow>, DbError> {
    let v = view("overview_sources", String::new(), Reads::PingsAndChecks);
    cache.rows(conn, &v, range, fleet::overview_sources)
}

/// Both sources per minor line ([`fleet::version_sources`]).
pub(crate) fn version_sources(
    conn: &mut AnyConnection,
    cache: &PeriodCache,
    range: &Range,
) -> Result<Vec<VersionSourcesRow>, DbError> {
    let v = view("version_sources", String::new(), Reads::PingsAndChecks);
    cache.rows(conn, &v, range, fleet::version_sources)
}

/// One period's top lists, as the cache keeps them.
#[derive(Debug, Clone)]
struct TopAt {
    period: NaiveDate,
    lists: TopLists,
}
impl PeriodRow for TopAt {
    fn period(&self) -> NaiveDate {
        self.period
    }
    fn set_complete(&mut self, _: bool) {}
    fn weight(&self) -> usize {
        self.lists.rows.len()
    }
}

/// A metric's top, growing and declining installations ([`metric_lists::top_lists_at`]) in
/// the period holding `at`, else the latest complete one ([`metric_lists::top_start`]); the
/// ranked period and the one before it are kept as one entry of the ranked period.
pub(crate) fn top_lists(
    conn: &mut AnyConnection,
    cache: &PeriodCache,
    key_path: &str,
    kind: PeriodKind,
    at: Option<NaiveDate>,
    include_internal: bool,
    today: NaiveDate,
) -> Result<TopLists, MetricError> {
    let key_id = report::key_id_of(conn, key_path)?;
    let defined = find_defined_time_frame(conn, key_path)?;
    let start = metric_lists::top_start(conn, kind, at, today)?;
    let v = view("top", format!("{key_id}|{defined:?}"), Reads::Pings);
    let range = Range {
        kind,
        from: start,
        to: kind.next_start(start),
        include_internal,
        today,
    };
    let mut kept = cache.rows(conn, &v, &range, |c, r| {
        let lists =
            metric_lists::top_lists_at(c, key_path, key_id, kind, r.from, include_internal)?;
        Ok::<_, MetricError>(vec![TopAt {
            period: r.from,
            lists,
        }])
    })?;
    match kept.pop() {
        Some(top) => Ok(top.lists),
        // The entry of one period holds exactly one row; computed afresh if it did not.
        None => metric_lists::top_lists_at(conn, key_path, key_id, kind, start, include_internal),
    }
}

/// Seat utilisation by tier ([`licences::utilisation`]).
pub(crate) fn utilisation(
    conn: &mut AnyConnection,
    cache: &PeriodCache,
    range: &Range,
) -> Result<Vec<UtilisationRow>, DbError> {
    let v = view("utilisation", String::new(), Reads::Pings);
    cache.rows(conn, &v, range, licences::utilisation)
}
