//! `GET /console/insights/versions`: adoption per minor line, penetration of a version,
//! versions behind, the vulnerable share, and both sources (Service Ping and version checks).

use actix_web::{web, HttpRequest, HttpResponse};
use std::collections::BTreeMap;

use super::filters::{
    period_label, range_of, range_query, read, series_fields, stacked, store_error,
};
use super::overview::{complete_text, percent};
use super::{query_of, render, Cell, Field, PageContent, Section};
use crate::console::auth::{ConsoleError, ConsoleUser, Role};
use crate::domain::version::Version;
use crate::insights::fleet::{self, BehindRow, DaysBehindRow, PenetrationRow, VersionSourcesRow};
use crate::insights::report::{self, Range};
use crate::insights::series;
use crate::routes::insights::params::Params;
use crate::routes::insights::penetration_version;
use crate::state::AppState;

/// Most minor lines drawn as their own series (the rest are "other").
const MAX_LINES: usize = 8;

/// The most common lines (by summed count), which get their own colour.
fn top_lines<'a>(counts: impl Iterator<Item = (&'a str, u64)>) -> Vec<String> {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for (line, n) in counts {
        *totals.entry(line).or_default() += n;
    }
    let mut ranked: Vec<(&str, u64)> = totals.into_iter().collect();
    ranked.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    ranked
        .iter()
        .take(MAX_LINES)
        .map(|(l, _)| (*l).to_owned())
        .collect()
}

/// `GET /console/insights/versions`: minor lines over time and the vulnerable share.
pub async fn versions(
    user: ConsoleUser,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::Analyst)?;
    let (mut errors, mut notices) = (Vec::new(), Vec::new());
    let params = read(
        &req,
        &["period", "from", "to", "include_internal", "version"],
        &mut errors,
    );
    let range = range_of(&params, &mut errors, &mut notices);
    let version = match penetration_version(&params, &state) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e.to_string());
            let defaults = Params::parse("", &["version"]).expect("empty query parses");
            penetration_version(&defaults, &state).ok()
        }
    };
    let table = state.releases.current();
    let x = version.clone();
    let cache = state.insights_cache.clone();
    let (rows, shares, reach, behind, sources, days) = state
        .read_db
        .run(move |conn| {
            // one read of the (period, version, day) counts serves five of the six views
            let counts = series::version_counts(conn, &cache, &range)?;
            Ok((
                report::versions(&counts, &range),
                report::vulnerable_share(&counts, &table, &range),
                x.as_ref().map(|x| fleet::penetration(&counts, &range, x)),
                fleet::behind(&counts, table.releases(), &range),
                series::version_sources(conn, &cache, &range)?,
                fleet::days_behind_rows(&counts, table.releases(), &range),
            ))
        })
        .await
        .map_err(store_error)?;
    let top = top_lines(
        rows.iter()
            .map(|r| (r.minor.as_str(), r.installations as u64)),
    );
    let points: Vec<(String, String, f64)> = rows
        .iter()
        .map(|r| {
            let line = if top.contains(&r.minor) {
                r.minor.clone()
            } else {
                "other".into()
            };
            (
                period_label(r.period, r.complete),
                line,
                r.installations as f64,
            )
        })
        .collect();
    let chart = stacked(
        "Installations per minor line",
        range.kind.as_str(),
        "installations",
        &points,
    );
    let query = range_query(&range, None);
    let mut adoption = Section::new(
        "versions",
        "Adoption: installations per minor line",
        &[
            ("period", false),
            ("minor", false),
            ("installations", true),
            ("complete", false),
        ],
    )
    .chart(&chart)
    .data("/api/v1/insights/versions", &query);
    adoption.rows = rows
        .iter()
        .map(|r| {
            vec![
                Cell::text(r.period.to_string()),
                Cell::text(r.minor.clone()),
                Cell::num(r.installations),
                Cell::text(if r.complete { "yes" } else { "no" }),
            ]
        })
        .collect();
    let share_points: Vec<(String, String, f64)> = shares
        .iter()
        .flat_map(|s| {
            let label = period_label(s.period, s.complete);
            [
                (label.clone(), "critical".to_string(), s.critical as f64),
                (
                    label.clone(),
                    "vulnerable, not critical".to_string(),
                    (s.danger - s.critical) as f64,
                ),
                (
                    label,
                    "not vulnerable".to_string(),
                    (s.installations - s.danger) as f64,
                ),
            ]
        })
        .collect();
    let share_chart = stacked(
        "Installations on vulnerable versions",
        range.kind.as_str(),
        "installations",
        &share_points,
    );
    let mut vulnerable = Section::new(
        "vulnerable_share",
        "Installations on a vulnerable version (check.json says danger) and a critically vulnerable one",
        &[("period", false), ("installations", true), ("vulnerable", true), ("critical", true), ("vulnerable share", true)],
    )
    .chart(&share_chart)
    .data("/api/v1/insights/versions/vulnerable_share", &query);
    vulnerable.rows = shares
        .iter()
        .map(|s| {
            let share = if s.installations > 0 {
                100.0 * s.danger as f64 / s.installations as f64
            } else {
                0.0
            };
            vec![
                Cell::text(s.period.to_string()),
                Cell::num(s.installations),
                Cell::num(s.danger),
                Cell::num(s.critical),
                Cell::num(format!("{share:.1}%")),
            ]
        })
        .collect();
    let mut sections = vec![adoption];
    if let (Some(x), Some(reach)) = (&version, &reach) {
        sections.push(penetration_section(&range, x, reach));
    }
    sections.push(behind_section(&range, &behind, &query));
    sections.push(days_behind_section(&days, &query));
    sections.push(vulnerable);
    sections.push(sources_section(&range, &sources, &query));
    let mut fields = series_fields(&params, &range, &[]);
    fields.insert(
        3,
        Field::text(
            "version",
            "Penetration: version X or newer",
            &version.map(|v| v.to_string()).unwrap_or_default(),
            "e.g. 18.8",
        ),
    );
    Ok(render(
        &user,
        PageContent {
            title: "Versions".into(),
            action: "/console/insights/versions",
            intro: vec![
                "Service Ping installations by the minor line of their period's last submission; vulnerability is today's verdict for that version.".into(),
                "Penetration: the share of installations on version X or newer (by default the first release of the newest minor line). Versions behind: minor lines released by the submission's day that are newer than its own. Days behind: days from the release of the exact version it runs to the submission's day (unknown when the release table does not list that version).".into(),
                "Both sources: hosts that asked the version check in the period but sent no Service Ping in it are added by their latest check's line (deduplicated by hostname).".into(),
            ],
            fields,
            errors,
            notices,
            sections,
        },
    ))
}

fn penetration_section(range: &Range, x: &Version, rows: &[PenetrationRow]) -> Section {
    let points: Vec<(String, String, f64)> = rows
        .iter()
        .flat_map(|r| {
            let label = period_label(r.period, r.complete);
            [
                (label.clone(), format!("{x} or newer"), r.at_or_above as f64),
                (
                    label,
                    format!("older than {x}"),
                    (r.installations - r.at_or_above) as f64,
                ),
            ]
        })
        .collect();
    let chart = stacked(
        &format!("Penetration of {x}"),
        range.kind.as_str(),
        "installations",
        &points,
    );
    let x_text = x.to_string();
    let (from, to) = (range.from.to_string(), range.to.to_string());
    let query = query_of(&[
        ("period", range.kind.as_str()),
        ("from", &from),
        ("to", &to),
        (
            "include_internal",
            if range.include_internal { "true" } else { "" },
        ),
        ("version", &x_text),
    ]);
    let mut s = Section::new(
        "penetration",
        format!("Penetration: installations on {x} or newer"),
        &[
            ("period", false),
            ("installations", true),
            ("on X or newer", true),
            ("share", true),
            ("complete", false),
        ],
    )
    .chart(&chart)
    .data("/api/v1/insights/versions/penetration", &query);
    s.rows = rows
        .iter()
        .map(|r| {
            vec![
                Cell::text(r.period.to_string()),
                Cell::num(r.installations),
                Cell::num(r.at_or_above),
                Cell::num(percent(r.share)),
                Cell::text(complete_text(r.complete)),
            ]
        })
        .collect();
    s
}

/// The chart series of a versions-behind bucket: 0–3 each, 4 and more together.
fn behind_series(n: Option<u32>) -> String {
    match n {
        Some(n) if n >= 4 => "4+ behind".into(),
        Some(n) => format!("{n} behind"),
        None => "unknown".into(),
    }
}

fn behind_section(range: &Range, rows: &[BehindRow], query: &str) -> Section {
    let points: Vec<(String, String, f64)> = rows
        .iter()
        .map(|r| {
            (
                period_label(r.period, r.complete),
                behind_series(r.minors_behind),
                r.installations as f64,
            )
        })
        .collect();
    let mut chart = stacked(
        "Installations by minor releases behind",
        range.kind.as_str(),
        "installations",
        &points,
    );
    // legend and colours in bucket order, whatever order the periods bring them in
    let order = |name: &str| {
        ["0 behind", "1 behind", "2 behind", "3 behind", "4+ behind"]
            .iter()
            .position(|b| *b == name)
            .unwrap_or(usize::MAX)
    };
    chart.series.sort_by_key(|(name, _)| order(name));
    let mut s = Section::new(
        "behind",
        "Versions behind: minor releases behind the latest release known on the submission's day",
        &[
            ("period", false),
            ("minors behind", true),
            ("installations", true),
            ("complete", false),
        ],
    )
    .chart(&chart)
    .data("/api/v1/insights/versions/behind", query);
    s.rows = rows
        .iter()
        .map(|r| {
            vec![
                Cell::text(r.period.to_string()),
                Cell::num(
                    r.minors_behind
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "unknown".into()),
                ),
                Cell::num(r.installations),
                Cell::text(complete_text(r.complete)),
            ]
        })
        .collect();
    s
}

/// Days behind as a table with its CSV and JSON links. No chart: the page's browser test pins
/// the versions page at five charts (adding one is the lead's call, see the report).
fn days_behind_section(rows: &[DaysBehindRow], query: &str) -> Section {
    let mut s = Section::new(
        "days-behind",
        "Days behind: days from the release of the version a submission runs to the submission's day",
        &[
            ("period", false),
            ("days behind", false),
            ("installations", true),
            ("complete", false),
        ],
    )
    .data("/api/v1/insights/versions/days_behind", query);
    s.rows = rows
        .iter()
        .map(|r| {
            vec![
                Cell::text(r.period.to_string()),
                Cell::text(r.days_behind.unwrap_or("unknown")),
                Cell::num(r.installations),
                Cell::text(complete_text(r.complete)),
            ]
        })
        .collect();
    s
}

fn sources_section(range: &Range, rows: &[VersionSourcesRow], query: &str) -> Section {
    let top = top_lines(rows.iter().map(|r| (r.minor.as_str(), r.total)));
    let points: Vec<(String, String, f64)> = rows
        .iter()
        .map(|r| {
            let line = if top.contains(&r.minor) {
                r.minor.clone()
            } else {
                "other".into()
            };
            (period_label(r.period, r.complete), line, r.total as f64)
        })
        .collect();
    let mut chart = stacked(
        "Installations and version-check-only hosts per minor line",
        range.kind.as_str(),
        "installations and hosts",
        &points,
    );
    // the legend in version order, newest first ("other" and "unknown" last)
    chart.series.sort_by_key(|(name, _)| {
        let mut parts = name.split('.').map(|p| p.parse::<i64>().unwrap_or(-1));
        std::cmp::Reverse((parts.next().unwrap_or(-1), parts.next().unwrap_or(-1)))
    });
    let mut s = Section::new(
        "version_sources",
        "Both sources: Service Ping installations and version-check-only hosts per minor line",
        &[
            ("period", false),
            ("minor", false),
            ("Service Ping", true),
            ("version checks only", true),
            ("total", true),
            ("complete", false),
        ],
    )
    .chart(&chart)
    .data("/api/v1/insights/versions/sources", query);
    s.rows = rows
        .iter()
        .map(|r| {
            vec![
                Cell::text(r.period.to_string()),
                Cell::text(r.minor.clone()),
                Cell::num(r.service_ping),
                Cell::num(r.version_check_only),
                Cell::num(r.total),
                Cell::text(complete_text(r.complete)),
            ]
        })
        .collect();
    s
}
