//! `GET /console/insights/installation`: one installation's history, with links to each
//! submission's raw payload for admins; `GET /console/insights/raw/{id}`: that payload,
//! pretty-printed and escaped (admin only, 403 for every other role).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::filters::{read, stacked, store_error};
use super::{query_of, render, Cell, Field, PageContent, Section};
use crate::console::auth::{ConsoleError, ConsoleUser, Role};
use crate::console::layout::{self, Section as NavSection, Shell};
use crate::insights::report;
use crate::routes::insights::{load_raw, no_raw_payload, parse_id};
use crate::state::AppState;

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
            let admin = user.is_at_least(Role::Admin);
            let mut headers = vec![("recorded_at", false), ("version", false), ("edition", false), ("tier", false), ("active users", true)];
            if admin {
                headers.push(("raw payload", false));
            }
            let mut subs = Section::new(
                "submissions",
                "Service Ping submissions",
                &headers,
            )
            .chart(&chart)
            .data("/api/v1/insights/installation", &query);
            subs.empty = "No Service Ping from this installation.";
            subs.rows = found
                .submissions
                .iter()
                .map(|s| {
                    let mut cells = vec![
                        Cell::text(s.recorded_at.format("%Y-%m-%d %H:%M").to_string()),
                        Cell::text(s.version.clone().unwrap_or_default()),
                        Cell::text(s.edition.clone().unwrap_or_default()),
                        Cell::text(s.tier.clone()),
                        Cell::num(s.active_user_count.map(|n| n.to_string()).unwrap_or_else(|| "–".into())),
                    ];
                    if admin {
                        cells.push(Cell::link(
                            format!("submission {}", s.usage_data_id),
                            format!("/console/insights/raw/{}", s.usage_data_id),
                        ));
                    }
                    cells
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

#[derive(Template)]
#[template(path = "console/insights/raw.html")]
struct RawPage {
    shell: Shell,
    title: String,
    usage_data_id: i64,
    pretty: String,
}

/// `GET /console/insights/raw/{usage_data_id}`: the payload as received, pretty-printed.
pub async fn raw(
    user: ConsoleUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::Admin)?;
    let id = parse_id(&path).map_err(|e| ConsoleError::BadRequest(e.to_string()))?;
    // A store error takes the console's own `From<DbError>` (503 page when unavailable).
    let payload = load_raw(&state, id)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(no_raw_payload(id)))?;
    let pretty = serde_json::to_string_pretty(&payload)
        .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    Ok(layout::render(
        StatusCode::OK,
        &RawPage {
            shell: Shell::for_user(&user, NavSection::Insights),
            title: format!("Raw payload of submission {id}"),
            usage_data_id: id,
            pretty,
        },
    ))
}
