//! The metrics page's lists, shared by the API and the page: the catalogue of every key path
//! (searched and paged) and one metric's top 50 installations, growing and declining.

use chrono::{Duration, Months, NaiveDate};
use serde::Serialize;
use std::collections::HashMap;

use crate::db::models::insights_catalogue as q;
use crate::db::{AnyConnection, DbError};
use crate::domain::insights::periods::PeriodKind;
use crate::domain::insights::time_frame::{effective, FrameSource, TimeFrame};
use crate::insights::report::MetricError;

/// Installations per top list.
pub const TOP_N: usize = 50;
/// Most catalogue rows per page.
pub const MAX_PER_PAGE: usize = 5_000;

/// One key path of the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogueEntry {
    /// The key path.
    pub key_path: String,
    /// `7d`, `28d`, `all` or `none`.
    pub time_frame: &'static str,
    /// `definition` or `key_path`: where the time frame came from.
    pub time_frame_source: &'static str,
    /// Lowest GitLab version that sent it.
    pub first_version: Option<String>,
    /// Highest GitLab version that sent it.
    pub last_version: Option<String>,
    /// Installations whose counted submission of `month` carries it (internal and staging
    /// hosts left out).
    pub installations_last_month: i64,
    /// Definition: description.
    pub description: Option<String>,
    /// Definition: product group.
    pub product_group: Option<String>,
    /// Definition: status.
    pub status: Option<String>,
    /// Definition: tiers.
    pub tier: Option<String>,
}

/// A catalogue search.
#[derive(Debug, Clone, Default)]
pub struct CatalogueQuery {
    /// Case-insensitive text in the key path or the description.
    pub q: String,
    /// Only this time frame.
    pub time_frame: Option<TimeFrame>,
    /// Only this time-frame source (`definition` / `key_path`).
    pub source: Option<&'static str>,
    /// 1-based page.
    pub page: usize,
    /// Rows per page.
    pub per_page: usize,
}

/// One page of the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CataloguePage {
    /// The rows of the page, by key path.
    pub rows: Vec<CatalogueEntry>,
    /// Rows matching the search over all pages.
    pub total: usize,
    /// The month `installations_last_month` counts (the last complete one).
    pub month: NaiveDate,
}

/// The catalogue page asked for; `today` decides the last complete month.
pub fn catalogue(
    conn: &mut AnyConnection,
    query: &CatalogueQuery,
    today: NaiveDate,
) -> Result<CataloguePage, DbError> {
    let month = PeriodKind::Month.start_of(today) - Months::new(1);
    let keys = q::list_keys_with_definitions(conn)?;
    let versions: HashMap<i64, q::CatalogueRow> =
        q::list_catalogue_of(conn, &keys.iter().map(|(id, _, _)| *id).collect::<Vec<_>>())?
            .into_iter()
            .map(|row| (row.0, row))
            .collect();
    let counts: HashMap<i64, i64> = q::list_key_month(conn, month)?.into_iter().collect();
    let definitions: HashMap<String, q::DefinitionRow> = q::list_definitions(conn)?
        .into_iter()
        .map(|d| (d.0.clone(), d))
        .collect();
    let needle = query.q.trim().to_lowercase();
    let mut rows: Vec<CatalogueEntry> = keys
        .into_iter()
        .filter_map(|(id, key_path, defined)| {
            let (frame, source) = effective(&key_path, defined.as_deref());
            let definition = definitions.get(&key_path);
            let description = definition.and_then(|d| d.1.clone());
            let matches = needle.is_empty()
                || key_path.to_lowercase().contains(&needle)
                || description
                    .as_deref()
                    .is_some_and(|d| d.to_lowercase().contains(&needle));
            if !matches
                || query.time_frame.is_some_and(|f| f != frame)
                || query.source.is_some_and(|s| s != source.as_str())
            {
                return None;
            }
            let range = versions.get(&id);
            Some(CatalogueEntry {
                time_frame: frame.as_str(),
                time_frame_source: source.as_str(),
                first_version: range.map(|r| r.1.clone()),
                last_version: range.map(|r| r.3.clone()),
                installations_last_month: counts.get(&id).copied().unwrap_or(0).max(0),
                description,
                product_group: definition.and_then(|d| d.2.clone()),
                status: definition.and_then(|d| d.4.clone()),
                tier: definition.and_then(|d| d.7.clone()),
                key_path,
            })
        })
        .collect();
    rows.sort_by(|a, b| a.key_path.cmp(&b.key_path));
    let total = rows.len();
    let per_page = query.per_page.clamp(1, MAX_PER_PAGE);
    let skip = query.page.max(1).saturating_sub(1).saturating_mul(per_page);
    let rows = rows.into_iter().skip(skip).take(per_page).collect();
    Ok(CataloguePage { rows, total, month })
}

/// `(installation_id, uuid, hostname, value)` of one installation in one period.
type PeriodValueRow = (i64, String, String, f64);

/// One installation in a top list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopRow {
    /// `top`, `growing` or `declining`.
    pub list: &'static str,
    /// 1-based rank in its list.
    pub rank: usize,
    /// Installation uuid.
    pub uuid: String,
    /// Installation hostname.
    pub hostname: String,
    /// Its period value (after the time-frame rule).
    pub value: f64,
    /// Its value in the period before (growing and declining lists only).
    pub previous_value: Option<f64>,
    /// `value - previous_value` (growing and declining lists only).
    pub change: Option<f64>,
}

/// The three lists of one metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopLists {
    /// The period ranked.
    pub period_start: NaiveDate,
    /// The period compared with.
    pub previous_start: NaiveDate,
    /// `top`, then `growing`, then `declining`.
    pub rows: Vec<TopRow>,
}

/// The period before `start`.
fn previous_of(kind: PeriodKind, start: NaiveDate) -> NaiveDate {
    match kind {
        PeriodKind::Month => start - Months::new(1),
        PeriodKind::Week => start - Duration::weeks(1),
    }
}

/// The period the top lists rank: the one holding `at`, else the latest complete one with
/// data (the current one when there is none).
pub(crate) fn top_start(
    conn: &mut AnyConnection,
    kind: PeriodKind,
    at: Option<NaiveDate>,
    today: NaiveDate,
) -> Result<NaiveDate, DbError> {
    Ok(match at {
        Some(day) => kind.start_of(day),
        None => q::latest_period_before(conn, kind.as_str(), kind.start_of(today))?
            .unwrap_or_else(|| kind.start_of(today)),
    })
}

/// Top 50 installations by the metric's value in the period starting at `start`, and the 50
/// growing and 50 declining most from the period before. Special values are left out;
/// installations need a value in both periods to grow or decline. Served through
/// `insights::series::top_lists`, which keeps them per period.
pub(crate) fn top_lists_at(
    conn: &mut AnyConnection,
    key_path: &str,
    key_id: i64,
    kind: PeriodKind,
    start: NaiveDate,
    include_internal: bool,
) -> Result<TopLists, MetricError> {
    let previous_start = previous_of(kind, start);
    // Both periods in one read; special values have no place in a ranking.
    let values = super::period_values::period_values(
        conn,
        &super::period_values::Ask {
            key_id,
            key_path,
            kind,
            from: previous_start,
            to: kind.next_start(start),
            include_excluded: include_internal,
        },
    )?;
    let ids: Vec<i64> = values
        .iter()
        .filter(|(p, _)| p.period_start == start)
        .map(|(p, _)| p.installation_id)
        .collect();
    let names = q::list_installation_names(conn, &ids)?;
    let mut now: Vec<PeriodValueRow> = Vec::new();
    let mut before: HashMap<i64, f64> = HashMap::new();
    for (period, value) in values {
        let Some(value) = value else { continue };
        if period.period_start == start {
            if let Some((uuid, hostname)) = names.get(&period.installation_id) {
                now.push((
                    period.installation_id,
                    uuid.clone(),
                    hostname.clone(),
                    value,
                ));
            }
        } else if period.period_start == previous_start {
            before.insert(period.installation_id, value);
        }
    }
    let by_name = |a: &PeriodValueRow, b: &PeriodValueRow| (&a.2, &a.1).cmp(&(&b.2, &b.1));
    let mut top = now.clone();
    top.sort_by(|a, b| b.3.total_cmp(&a.3).then_with(|| by_name(a, b)));
    let mut rows: Vec<TopRow> = top
        .iter()
        .take(TOP_N)
        .enumerate()
        .map(|(i, (_, uuid, hostname, value))| TopRow {
            list: "top",
            rank: i + 1,
            uuid: uuid.clone(),
            hostname: hostname.clone(),
            value: *value,
            previous_value: None,
            change: None,
        })
        .collect();
    let mut changes: Vec<(f64, &PeriodValueRow, f64)> = now
        .iter()
        .filter_map(|row| before.get(&row.0).map(|p| (row.3 - p, row, *p)))
        .collect();
    for (list, growing) in [("growing", true), ("declining", false)] {
        changes.sort_by(|a, b| {
            let order = if growing {
                b.0.total_cmp(&a.0)
            } else {
                a.0.total_cmp(&b.0)
            };
            order.then_with(|| by_name(a.1, b.1))
        });
        rows.extend(
            changes
                .iter()
                .filter(|(change, _, _)| {
                    if growing {
                        *change > 0.0
                    } else {
                        *change < 0.0
                    }
                })
                .take(TOP_N)
                .enumerate()
                .map(
                    |(i, (change, (_, uuid, hostname, value), previous))| TopRow {
                        list,
                        rank: i + 1,
                        uuid: uuid.clone(),
                        hostname: hostname.clone(),
                        value: *value,
                        previous_value: Some(*previous),
                        change: Some(*change),
                    },
                ),
        );
    }
    Ok(TopLists {
        period_start: start,
        previous_start,
        rows,
    })
}

/// The time frame that applies to a key path, and where it came from.
pub fn time_frame_of(
    conn: &mut AnyConnection,
    key_path: &str,
) -> Result<(TimeFrame, FrameSource), DbError> {
    let defined = q::find_defined_time_frame(conn, key_path)?;
    Ok(effective(key_path, defined.as_deref()))
}
