//! The handlers of the insights pages. Numbers come from [`crate::insights::report`], the
//! very functions behind `/api/v1/insights/…`, so page and API cannot disagree.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use std::collections::BTreeMap;

use super::filters::{
    include_internal_field, period_label, range_of, range_query, read, series_fields, stacked,
    store_error, SERIES,
};
use super::{installation_href, query_of, render, Cell, Field, PageContent, Section};
use crate::console::auth::{ConsoleError, ConsoleUser, Role};
use crate::db::models::insights as store;
use crate::domain::insights::dimension::Dimension;
use crate::domain::insights::time_frame::TimeFrame;
use crate::error::ApiError;
use crate::insights::report;
use crate::routes::insights::params::Params;
use crate::routes::insights::{
    backport_params, vulnerable_params, BACKPORT_PARAMS, VULNERABLE_PARAMS,
};
use crate::state::AppState;

/// Most key paths listed by one catalogue search.
const CATALOGUE_LIMIT: usize = 200;
/// Most minor lines drawn as their own series (the rest are "other").
const MAX_LINES: usize = 8;

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
    let rows = state
        .read_db
        .run(move |conn| report::installations(conn, &range, Some(by)))
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
    Ok(render(
        &user,
        PageContent {
            title: "Overview".into(),
            action: "/console/insights",
            intro: vec![
                "An installation is a (uuid, hostname) pair with a Service Ping placed in the period by its recorded_at; each counts once per period, with its last submission.".into(),
            ],
            fields: series_fields(
                &params,
                &range,
                &[("tier", "tier"), ("edition", "edition"), ("installation_type", "installation type"), ("country", "country")],
            ),
            errors,
            notices,
            sections: vec![section],
        },
    ))
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
        &["period", "from", "to", "include_internal"],
        &mut errors,
    );
    let range = range_of(&params, &mut errors, &mut notices);
    let table = state.releases.current();
    let (rows, shares) = state
        .read_db
        .run(move |conn| {
            Ok((
                report::versions(conn, &range)?,
                report::vulnerable_share(conn, &table, &range)?,
            ))
        })
        .await
        .map_err(store_error)?;
    // the most common lines get their own colour, the rest are summed as "other"
    let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
    for r in &rows {
        *totals.entry(r.minor.as_str()).or_default() += r.installations;
    }
    let mut ranked: Vec<(&str, i64)> = totals.into_iter().collect();
    ranked.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let top: Vec<&str> = ranked.iter().take(MAX_LINES).map(|(l, _)| *l).collect();
    let points: Vec<(String, String, f64)> = rows
        .iter()
        .map(|r| {
            let line = if top.contains(&r.minor.as_str()) {
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
    .chart(&share_chart);
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
    Ok(render(
        &user,
        PageContent {
            title: "Versions".into(),
            action: "/console/insights/versions",
            intro: vec!["Service Ping installations by the minor line of their period's last submission; vulnerability is today's verdict for that version.".into()],
            fields: series_fields(&params, &range, &[]),
            errors,
            notices,
            sections: vec![adoption, vulnerable],
        },
    ))
}

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
    let rows = state
        .read_db
        .run(move |conn| {
            report::backport(
                conn,
                &table,
                Utc::now().naive_utc(),
                days,
                include_internal,
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

/// `GET /console/insights/metrics`: the searchable catalogue, and one metric's series.
pub async fn metrics(
    user: ConsoleUser,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::Analyst)?;
    let (mut errors, mut notices) = (Vec::new(), Vec::new());
    let allowed = ["q", "key", "period", "from", "to", "by", "include_internal"];
    let params = read(&req, &allowed, &mut errors);
    let range = range_of(&params, &mut errors, &mut notices);
    let by = params
        .by(&[Dimension::Tier, Dimension::Edition])
        .unwrap_or_else(|e| {
            errors.push(e.to_string());
            None
        });
    let q = params.get("q").unwrap_or_default().to_owned();
    let key = params.get("key").map(str::to_owned);
    let k = key.clone();
    let (keys, series) = state
        .read_db
        .run(move |conn| {
            let keys = store::list_metric_keys(conn)?;
            let series = k.as_ref().map(|key| report::metric(conn, key, &range, by));
            Ok((keys, series))
        })
        .await
        .map_err(store_error)?;
    let mut sections = Vec::new();
    if let (Some(key), Some(series)) = (&key, series) {
        match series {
            Ok(rows) => {
                let points: Vec<(String, String, f64)> = rows
                    .iter()
                    .map(|r| (period_label(r.period, r.complete), r.group.clone(), r.sum))
                    .collect();
                let chart = stacked(
                    &format!("{key}: sum per period"),
                    range.kind.as_str(),
                    "sum of period values",
                    &points,
                );
                let frame = TimeFrame::from_key_path(key);
                let mut s = Section::new(
                    "metric",
                    format!("{key} (time frame {frame})"),
                    &[
                        ("period", false),
                        ("group", false),
                        ("reporting", true),
                        ("adopting", true),
                        ("sum", true),
                        ("median", true),
                        ("p90", true),
                        ("special values excluded", true),
                    ],
                )
                .chart(&chart)
                .data(
                    &format!(
                        "/api/v1/insights/metrics/{}",
                        percent_encoding::utf8_percent_encode(
                            key,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    ),
                    &range_query(&range, by),
                );
                let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_else(|| "–".into());
                s.rows = rows
                    .iter()
                    .map(|r| {
                        vec![
                            Cell::text(r.period.to_string()),
                            Cell::text(r.group.clone()),
                            Cell::num(r.installations_reporting),
                            Cell::num(r.adopting),
                            Cell::num(r.sum),
                            Cell::num(opt(r.median)),
                            Cell::num(opt(r.p90)),
                            Cell::num(r.excluded_special),
                        ]
                    })
                    .collect();
                sections.push(s);
            }
            Err(report::MetricError::UnknownKey(k)) => {
                errors.push(format!("unknown metric key path `{k}`"));
            }
            Err(report::MetricError::Db(e)) => return Err(store_error(e)),
        }
    }
    let needle = q.to_lowercase();
    let mut matching: Vec<&String> = keys
        .iter()
        .map(|(_, path)| path)
        .filter(|path| needle.is_empty() || path.to_lowercase().contains(&needle))
        .collect();
    matching.sort();
    if matching.len() > CATALOGUE_LIMIT {
        notices.push(format!(
            "{} key paths match; the first {CATALOGUE_LIMIT} are listed. Narrow the search.",
            matching.len()
        ));
    }
    let base = range_query(&range, by);
    let mut catalogue = Section::new(
        "catalogue",
        "Metric catalogue",
        &[("key path", false), ("time frame", false)],
    );
    catalogue.empty = "No key path matches (or no Service Ping has been received yet).";
    catalogue.rows = matching
        .iter()
        .take(CATALOGUE_LIMIT)
        .map(|path| {
            let href = format!(
                "/console/insights/metrics?{}&{base}",
                query_of(&[("key", path.as_str()), ("q", &q)])
            );
            vec![
                Cell::link(path.as_str(), href),
                Cell::text(TimeFrame::from_key_path(path).as_str()),
            ]
        })
        .collect();
    sections.push(catalogue);
    let mut fields = vec![Field::text(
        "q",
        "Search key paths",
        &q,
        "e.g. counts.issues",
    )];
    if let Some(key) = &key {
        fields.push(Field::text("key", "Metric", key, ""));
    }
    fields.extend(series_fields(
        &params,
        &range,
        &[("", "all"), ("tier", "tier"), ("edition", "edition")],
    ));
    Ok(render(
        &user,
        PageContent {
            title: "Metrics".into(),
            action: "/console/insights/metrics",
            intro: vec!["Period values follow the time-frame rule: 28- and 7-day metrics as reported, all-time counters as the difference from the previous period (resets count 0, the first period is left out). Special values (-1, -2, -3, -1000) are excluded and counted.".into()],
            fields,
            errors,
            notices,
            sections,
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
    let rows = state
        .read_db
        .run(move |conn| {
            report::vulnerable(
                conn,
                &table,
                Utc::now().naive_utc(),
                days,
                include_internal,
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
    section.rows = rows
        .iter()
        .map(|r| {
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
        })
        .collect();
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

/// `GET /console/insights/installation?uuid=…&hostname=…`: one installation's history.
pub async fn installation(
    user: ConsoleUser,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::Analyst)?;
    let mut errors = Vec::new();
    let params = read(&req, &["uuid", "hostname"], &mut errors);
    let uuid = params.get("uuid").unwrap_or_default().to_owned();
    let hostname = params.get("hostname").unwrap_or_default().to_owned();
    let table = state.releases.current();
    let (u, h) = (uuid.clone(), hostname.clone());
    let found = state
        .read_db
        .run(move |conn| report::installation(conn, &table, &u, &h))
        .await
        .map_err(store_error)?;
    let query = query_of(&[("uuid", &uuid), ("hostname", &hostname)]);
    let mut intro = Vec::new();
    let mut sections = Vec::new();
    match found {
        None => intro.push("Nothing is known about this installation (no Service Ping and no version check from its hostname).".into()),
        Some(found) => {
            if let Some(severity) = found.severity_now {
                intro.push(format!("Its latest known version gets the verdict “{severity}” today."));
            }
            let points: Vec<(String, String, f64)> = found
                .submissions
                .iter()
                .map(|s| (s.recorded_at.format("%Y-%m-%d").to_string(), "active users".into(), s.active_user_count.unwrap_or(0) as f64))
                .collect();
            let chart = stacked("Active users per submission", "submission (recorded_at)", "active users", &points);
            let mut subs = Section::new(
                "submissions",
                "Service Ping submissions",
                &[("recorded_at", false), ("version", false), ("edition", false), ("tier", false), ("active users", true)],
            )
            .chart(&chart)
            .data("/api/v1/insights/installation", &query);
            subs.empty = "No Service Ping from this installation.";
            subs.rows = found
                .submissions
                .iter()
                .map(|s| {
                    vec![
                        Cell::text(s.recorded_at.format("%Y-%m-%d %H:%M").to_string()),
                        Cell::text(s.version.clone().unwrap_or_default()),
                        Cell::text(s.edition.clone().unwrap_or_default()),
                        Cell::text(s.tier.clone()),
                        Cell::num(s.active_user_count.map(|n| n.to_string()).unwrap_or_else(|| "–".into())),
                    ]
                })
                .collect();
            let mut checks = Section::new("checks", "Version checks from its hostname", &[("day", false), ("version", false), ("checks", true)]);
            checks.empty = "No version check from this hostname.";
            checks.rows = found
                .version_checks
                .iter()
                .map(|c| vec![Cell::text(c.day.to_string()), Cell::text(c.version.clone()), Cell::num(c.count)])
                .collect();
            sections.push(subs);
            sections.push(checks);
        }
    }
    Ok(render(
        &user,
        PageContent {
            title: format!(
                "Installation {} {}",
                if hostname.is_empty() {
                    "(no hostname)"
                } else {
                    &hostname
                },
                uuid
            ),
            action: "/console/insights/installation",
            intro,
            fields: vec![
                Field::text("uuid", "UUID", &uuid, ""),
                Field::text("hostname", "Hostname", &hostname, ""),
            ],
            errors,
            notices: Vec::new(),
            sections,
        },
    ))
}
