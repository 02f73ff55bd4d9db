//! The handlers of the insights pages. Numbers come from [`crate::insights::report`], the
//! very functions behind `/api/v1/insights/…`, so page and API cannot disagree.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;

use super::filters::{include_internal_field, read, stacked, store_error};
use super::{installation_href, query_of, render, Cell, Field, PageContent, Section};
use crate::console::auth::{ConsoleError, ConsoleUser, Role};
use crate::insights::lists;
use crate::routes::insights::params::Params;
use crate::routes::insights::{
    backport_params, vulnerable_params, BACKPORT_PARAMS, VULNERABLE_PARAMS,
};
use crate::state::AppState;

/// `GET /console/insights/backport`: per minor line, who is active, and the what-if.
pub async fn backport(
    user: ConsoleUser,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::Analyst)?;
    let mut errors = Vec::new();
    let allowed: Vec<&str> = BACKPORT_PARAMS
        .iter()
        .copied()
        .filter(|p| *p != "format")
        .collect();
    let mut params = read(&req, &allowed, &mut errors);
    let (days, include_internal, what_if) = match backport_params(&params) {
        Ok(v) => v,
        Err(e) => {
            errors.push(e.to_string());
            params = Params::parse("", &allowed).expect("empty query parses");
            backport_params(&params).expect("defaults are valid")
        }
    };
    let table = state.releases.current();
    let w = what_if.clone();
    let cache = state.insights_cache.clone();
    let rows = state
        .read_db
        .run(move |conn| {
            lists::backport(
                conn,
                &cache,
                &table,
                Utc::now().naive_utc(),
                (days, include_internal),
                w.as_ref(),
            )
        })
        .await
        .map_err(store_error)?;
    let points: Vec<(String, String, f64)> = rows
        .iter()
        .take(20)
        .map(|r| (r.minor.clone(), "active hosts".to_string(), r.active as f64))
        .collect();
    let chart = stacked(
        "Active hosts per minor line",
        "minor line",
        "hosts",
        &points,
    );
    let days_text = days.to_string();
    let from_text = what_if
        .as_ref()
        .map(|w| w.from.to_string())
        .unwrap_or_default();
    let to_text = what_if
        .as_ref()
        .map(|w| w.to.to_string())
        .unwrap_or_default();
    let query = query_of(&[
        ("days", &days_text),
        (
            "include_internal",
            if include_internal { "true" } else { "" },
        ),
        ("affected_from", &from_text),
        ("affected_to", &to_text),
    ]);
    let mut headers = vec![
        ("minor", false),
        ("Service Ping installations", true),
        ("version-check hosts", true),
        ("active (both, deduplicated)", true),
        ("verdict", false),
        ("latest patch", false),
        ("on latest patch", true),
    ];
    if what_if.is_some() {
        headers.push(("in affected range", true));
    }
    let mut section = Section::new(
        "backport",
        format!("Minor lines active in the last {days} days"),
        &headers,
    )
    .chart(&chart)
    .data("/api/v1/insights/backport", &query);
    section.rows = rows
        .iter()
        .map(|r| {
            let mut cells = vec![
                Cell::text(r.minor.clone()),
                Cell::num(r.installations),
                Cell::num(r.hosts),
                Cell::num(r.active),
                Cell::text(r.severity),
                Cell::text(
                    r.latest_patch
                        .clone()
                        .unwrap_or_else(|| "none released".into()),
                ),
                Cell::num(r.on_latest_patch),
            ];
            if let Some(n) = r.affected {
                cells.push(Cell::num(n));
            }
            cells
        })
        .collect();
    Ok(render(
        &user,
        PageContent {
            title: "Backport report".into(),
            action: "/console/insights/backport",
            intro: vec![
                "To which lines must a fix go? Each hostname counts once, on the line of its most recent report from either source (Service Ping or version check).".into(),
                "What-if: give an affected version range to see how many active hosts fall in it, per line.".into(),
            ],
            fields: vec![
                Field::text("days", "Window (days)", &days_text, "28"),
                Field::text("affected_from", "Affected from (version)", &from_text, "e.g. 18.6.0"),
                Field::text("affected_to", "Affected up to (version)", &to_text, "e.g. 18.8.3"),
                include_internal_field(include_internal),
            ],
            errors,
            notices: Vec::new(),
            sections: vec![section],
        },
    ))
}

/// `GET /console/insights/vulnerable`: active hosts on a vulnerable version.
pub async fn vulnerable(
    user: ConsoleUser,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::Analyst)?;
    let mut errors = Vec::new();
    let allowed: Vec<&str> = VULNERABLE_PARAMS
        .iter()
        .copied()
        .filter(|p| *p != "format")
        .collect();
    let params = read(&req, &allowed, &mut errors);
    let (days, include_internal, critical) = vulnerable_params(&params).unwrap_or_else(|e| {
        errors.push(e.to_string());
        (28, false, false)
    });
    let table = state.releases.current();
    let cache = state.insights_cache.clone();
    let rows = state
        .read_db
        .run(move |conn| {
            lists::vulnerable(
                conn,
                &cache,
                &table,
                Utc::now().naive_utc(),
                (days, include_internal),
                critical,
            )
        })
        .await
        .map_err(store_error)?;
    let days_text = days.to_string();
    let query = query_of(&[
        ("days", &days_text),
        (
            "include_internal",
            if include_internal { "true" } else { "" },
        ),
        ("critical", if critical { "true" } else { "" }),
    ]);
    let mut section = Section::new(
        "vulnerable",
        format!("Hosts active in the last {days} days on a vulnerable version"),
        &[
            ("hostname", false),
            ("version", false),
            ("critical", false),
            ("latest report", false),
            ("seen", false),
        ],
    )
    .data("/api/v1/insights/vulnerable", &query);
    section.empty = "No active host runs a vulnerable version in this window.";
    let section = section.first_rows(&rows, |r| {
        let name = if r.hostname.is_empty() {
            "(no hostname)".to_string()
        } else {
            r.hostname.clone()
        };
        vec![
            Cell::link(
                name,
                installation_href(r.uuid.as_deref().unwrap_or_default(), &r.hostname),
            ),
            Cell::text(r.version.clone()),
            Cell::text(if r.critical { "critical" } else { "no" }),
            Cell::text(r.source.replace('_', " ")),
            Cell::text(r.last_seen.format("%Y-%m-%d %H:%M").to_string()),
        ]
    });
    Ok(render(
        &user,
        PageContent {
            title: "Vulnerable installations".into(),
            action: "/console/insights/vulnerable",
            intro: vec!["Each hostname once, by its most recent report (Service Ping or version check); vulnerable means check.json answers danger for that version today.".into()],
            fields: vec![
                Field::text("days", "Window (days)", &days_text, "28"),
                Field::select("critical", "Show", if critical { "true" } else { "false" }, &[("false", "all vulnerable"), ("true", "critical only")]),
                include_internal_field(include_internal),
            ],
            errors,
            notices: Vec::new(),
            sections: vec![section],
        },
    ))
}
