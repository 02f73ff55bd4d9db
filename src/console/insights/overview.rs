//! `GET /console/insights`: active installations by a dimension; new, returning, reactivated
//! and churned installations; Service Ping installations versus version-check-only hosts.

use actix_web::{web, HttpRequest, HttpResponse};

use super::filters::{
    period_label, range_of, range_query, read, series_fields, stacked, store_error, SERIES,
};
use super::{render, Cell, PageContent, Section};
use crate::console::auth::{ConsoleError, ConsoleUser, Role};
use crate::domain::insights::dimension::Dimension;
use crate::error::ApiError;
use crate::insights::fleet::{ActivityRow, SourcesRow};
use crate::insights::report::Range;
use crate::insights::series;
use crate::state::AppState;

/// `GET /console/insights`: active installations per period, split by a dimension.
pub async fn overview(
    user: ConsoleUser,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::Analyst)?;
    let (mut errors, mut notices) = (Vec::new(), Vec::new());
    let params = read(&req, SERIES, &mut errors);
    let range = range_of(&params, &mut errors, &mut notices);
    let by = params
        .by(&[
            Dimension::Tier,
            Dimension::Edition,
            Dimension::InstallationType,
            Dimension::Country,
        ])
        .unwrap_or_else(|e: ApiError| {
            errors.push(e.to_string());
            None
        })
        .unwrap_or(Dimension::Tier);
    let cache = state.insights_cache.clone();
    let (rows, activity, sources) = state
        .read_db
        .run(move |conn| {
            Ok((
                series::installations(conn, &cache, &range, Some(by))?,
                series::activity(conn, &cache, &range)?,
                series::overview_sources(conn, &cache, &range)?,
            ))
        })
        .await
        .map_err(store_error)?;
    let points: Vec<(String, String, f64)> = rows
        .iter()
        .map(|r| {
            (
                period_label(r.period, r.complete),
                r.group.clone(),
                r.installations as f64,
            )
        })
        .collect();
    let chart = stacked(
        &format!("Active installations per {} by {}", range.kind, by.as_str()),
        range.kind.as_str(),
        "installations",
        &points,
    );
    let mut section = Section::new(
        "installations",
        format!(
            "Active installations per {}, by {}",
            range.kind,
            by.as_str().replace('_', " ")
        ),
        &[
            ("period", false),
            ("group", false),
            ("installations", true),
            ("complete", false),
        ],
    )
    .chart(&chart)
    .data(
        "/api/v1/insights/installations",
        &range_query(&range, Some(by)),
    );
    section.rows = rows
        .iter()
        .map(|r| {
            vec![
                Cell::text(r.period.to_string()),
                Cell::text(r.group.clone()),
                Cell::num(r.installations),
                Cell::text(if r.complete {
                    "yes"
                } else {
                    "no (current period)"
                }),
            ]
        })
        .collect();
    let query = range_query(&range, None);
    let sections = vec![
        section,
        activity_section(&range, &activity, &query),
        churned_section(&range, &activity, &query),
        sources_section(&range, &sources, &query),
    ];
    Ok(render(
        &user,
        PageContent {
            title: "Overview".into(),
            action: "/console/insights",
            intro: vec![
                "An installation is a (uuid, hostname) pair with a Service Ping placed in the period by its recorded_at; each counts once per period, with its last submission.".into(),
                "New: its first period with a submission. Returning: it also had one in the previous period. Reactivated: back after a gap. Churned: had one in the previous period but not in this one.".into(),
                "Version-check-only hosts: hostnames that asked the version check in the period but sent no Service Ping in it (deduplicated by hostname with Service Ping installations); never pinged: none ever came from them by the end of the period.".into(),
            ],
            fields: series_fields(
                &params,
                &range,
                &[("tier", "tier"), ("edition", "edition"), ("installation_type", "installation type"), ("country", "country")],
            ),
            errors,
            notices,
            sections,
        },
    ))
}

/// "yes" / "no (current period)".
pub(super) fn complete_text(complete: bool) -> &'static str {
    if complete {
        "yes"
    } else {
        "no (current period)"
    }
}

/// A share as a percentage with one decimal.
pub(super) fn percent(share: f64) -> String {
    format!("{:.1}%", 100.0 * share)
}

fn activity_section(range: &Range, rows: &[ActivityRow], query: &str) -> Section {
    let points: Vec<(String, String, f64)> = rows
        .iter()
        .flat_map(|r| {
            let label = period_label(r.period, r.complete);
            [
                (label.clone(), "new".to_string(), r.new as f64),
                (label.clone(), "returning".to_string(), r.returning as f64),
                (label, "reactivated".to_string(), r.reactivated as f64),
            ]
        })
        .collect();
    let chart = stacked(
        &format!(
            "Active installations per {}: new, returning, reactivated",
            range.kind
        ),
        range.kind.as_str(),
        "installations",
        &points,
    );
    let mut s = Section::new(
        "activity",
        format!(
            "New, returning, reactivated and churned installations per {}",
            range.kind
        ),
        &[
            ("period", false),
            ("active", true),
            ("new", true),
            ("returning", true),
            ("reactivated", true),
            ("churned", true),
            ("complete", false),
        ],
    )
    .chart(&chart)
    .data("/api/v1/insights/overview/activity", query);
    s.rows = rows
        .iter()
        .map(|r| {
            vec![
                Cell::text(r.period.to_string()),
                Cell::num(r.active),
                Cell::num(r.new),
                Cell::num(r.returning),
                Cell::num(r.reactivated),
                Cell::num(r.churned),
                Cell::text(complete_text(r.complete)),
            ]
        })
        .collect();
    s
}

fn churned_section(range: &Range, rows: &[ActivityRow], query: &str) -> Section {
    let points: Vec<(String, String, f64)> = rows
        .iter()
        .map(|r| {
            (
                period_label(r.period, r.complete),
                "churned".to_string(),
                r.churned as f64,
            )
        })
        .collect();
    let chart = stacked(
        &format!("Churned installations per {}", range.kind),
        range.kind.as_str(),
        "installations",
        &points,
    );
    let mut s = Section::new(
        "churned",
        format!(
            "Churned installations per {} (a submission in the previous {}, none in this one)",
            range.kind, range.kind
        ),
        &[("period", false), ("churned", true)],
    )
    .chart(&chart)
    .data("/api/v1/insights/overview/activity", query);
    s.rows = rows
        .iter()
        .map(|r| vec![Cell::text(r.period.to_string()), Cell::num(r.churned)])
        .collect();
    s
}

fn sources_section(range: &Range, rows: &[SourcesRow], query: &str) -> Section {
    let points: Vec<(String, String, f64)> = rows
        .iter()
        .flat_map(|r| {
            let label = period_label(r.period, r.complete);
            [
                (
                    label.clone(),
                    "Service Ping".to_string(),
                    r.service_ping as f64,
                ),
                (
                    label.clone(),
                    "checks only, pinged before".to_string(),
                    (r.version_check_only - r.never_pinged) as f64,
                ),
                (
                    label,
                    "checks only, never pinged".to_string(),
                    r.never_pinged as f64,
                ),
            ]
        })
        .collect();
    let chart = stacked(
        &format!(
            "Installations with Service Ping and version-check-only hosts per {}",
            range.kind
        ),
        range.kind.as_str(),
        "installations and hosts",
        &points,
    );
    let mut s = Section::new(
        "sources",
        format!(
            "Service Ping installations versus hosts seen only through version checks, per {}",
            range.kind
        ),
        &[
            ("period", false),
            ("Service Ping", true),
            ("version checks only", true),
            ("never pinged", true),
            ("total", true),
            ("Service Ping share", true),
            ("complete", false),
        ],
    )
    .chart(&chart)
    .data("/api/v1/insights/overview/sources", query);
    s.rows = rows
        .iter()
        .map(|r| {
            vec![
                Cell::text(r.period.to_string()),
                Cell::num(r.service_ping),
                Cell::num(r.version_check_only),
                Cell::num(r.never_pinged),
                Cell::num(r.total),
                Cell::num(percent(r.service_ping_share)),
                Cell::text(complete_text(r.complete)),
            ]
        })
        .collect();
    s
}
