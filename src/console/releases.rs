//! The release pages: list with filters, one release with its edit form and history, the
//! security-release batch form with its preview, and the history with revert. Analysts
//! read; release managers change (every form carries the CSRF token).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::NaiveDate;
use serde::Deserialize;

use crate::console::auth::{ConsoleError, ConsoleUser, Role};
use crate::console::layout::{self, Section, Shell};
use crate::db::models::release_changes::{self, Actor, ChangeRow, Expect, WriteError};
use crate::domain::csv_import::parse_release_version;
use crate::domain::release::{Release, SecurityLevel};
use crate::domain::release_edit::{security_batch, Edit, FieldChange, Mode, SecurityBatch, Via};
use crate::domain::verdict::ReleaseTable;
use crate::domain::version::Version;
use crate::release_ops::{self, Impact, Told};
use crate::state::AppState;

/// Most rows on the list page.
const LIST_LIMIT: usize = 500;

/// Registers the release pages under `/console`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/releases", web::get().to(list))
        .route("/releases/batch", web::get().to(batch_form))
        .route("/releases/batch", web::post().to(batch_submit))
        .route("/releases/history", web::get().to(history))
        .route("/releases/history/revert", web::post().to(revert))
        .route("/releases/{version}", web::get().to(show))
        .route("/releases/{version}", web::post().to(edit));
}

struct Row {
    version: String,
    released_on: String,
    security: &'static str,
    advisory: String,
}

fn row(r: &Release) -> Row {
    Row {
        version: r.version.to_string(),
        released_on: r.released_on.to_string(),
        security: r.security.as_str(),
        advisory: r.advisory_id().unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "console/releases.html")]
struct ListPage {
    shell: Shell,
    rows: Vec<Row>,
    total: usize,
    shown_capped: bool,
    q: String,
    line: String,
    security: String,
    from: String,
    to: String,
    error: Option<String>,
    can_edit: bool,
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    q: Option<String>,
    line: Option<String>,
    security: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

pub(crate) fn parse_day(name: &str, text: &str) -> Result<Option<NaiveDate>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map(Some)
        .map_err(|_| format!("`{name}` must be a YYYY-MM-DD date, got `{text}`"))
}

type Filter = (
    Option<(u64, u64)>,
    Option<SecurityLevel>,
    Option<NaiveDate>,
    Option<NaiveDate>,
);

fn parse_filter(q: &ListQuery) -> Result<Filter, String> {
    let line = match q.line.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
        None => None,
        Some(text) => {
            let parts: Vec<&str> = text.split('.').collect();
            match parts.as_slice() {
                [a, b] => match (a.parse(), b.parse()) {
                    (Ok(a), Ok(b)) => Some((a, b)),
                    _ => return Err(format!("`line` must look like 17.9, got `{text}`")),
                },
                _ => return Err(format!("`line` must look like 17.9, got `{text}`")),
            }
        }
    };
    let security = match q
        .security
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None | Some("any") => None,
        Some(text) => Some(text.parse::<SecurityLevel>().map_err(|e| e.to_string())?),
    };
    let from = parse_day("from", q.from.as_deref().unwrap_or(""))?;
    let to = parse_day("to", q.to.as_deref().unwrap_or(""))?;
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(format!("`from` ({f}) is after `to` ({t})"));
        }
    }
    Ok((line, security, from, to))
}

/// `GET /console/releases`: the table, newest first, filtered by the URL's query.
pub async fn list(
    req: HttpRequest,
    user: ConsoleUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::Analyst)?;
    let query: ListQuery = serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let table = state.releases.current();
    let (filter, error) = match parse_filter(&query) {
        Ok(f) => (Some(f), None),
        Err(e) => (None, Some(e)),
    };
    let needle = query
        .q
        .clone()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let matching: Vec<&Release> = match &filter {
        None => Vec::new(),
        Some((line, security, from, to)) => table
            .releases()
            .iter()
            .rev()
            .filter(|r| line.is_none_or(|l| r.version.line() == l))
            .filter(|r| security.is_none_or(|s| r.security == s))
            .filter(|r| from.is_none_or(|f| r.released_on >= f))
            .filter(|r| to.is_none_or(|t| r.released_on <= t))
            .filter(|r| {
                needle.is_empty()
                    || r.version.to_string().starts_with(&needle)
                    || r.advisory_id()
                        .is_some_and(|a| a.to_ascii_lowercase().contains(&needle))
                    || r.details.to_ascii_lowercase().contains(&needle)
            })
            .collect(),
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok(layout::render(
        status,
        &ListPage {
            shell: Shell::for_user(&user, Section::Releases),
            total: matching.len(),
            shown_capped: matching.len() > LIST_LIMIT,
            rows: matching.iter().take(LIST_LIMIT).map(|r| row(r)).collect(),
            q: query.q.unwrap_or_default(),
            line: query.line.unwrap_or_default(),
            security: query.security.unwrap_or_default(),
            from: query.from.unwrap_or_default(),
            to: query.to.unwrap_or_default(),
            error,
            can_edit: user.is_at_least(Role::ReleaseManager),
        },
    ))
}

struct Entry {
    id: i64,
    at: String,
    actor: String,
    via: String,
    version: String,
    field: String,
    old: String,
    new: String,
    batch: String,
    note: String,
}

fn entry(r: ChangeRow) -> Entry {
    Entry {
        id: r.id,
        at: r.at.format("%Y-%m-%d %H:%M:%S").to_string(),
        actor: r.actor,
        via: r.via,
        version: r.version,
        field: r.field,
        old: r.old.unwrap_or_else(|| "—".into()),
        new: r.new.unwrap_or_else(|| "—".into()),
        batch: r.batch,
        note: r.note.unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "console/release.html")]
struct ReleasePage {
    shell: Shell,
    csrf: String,
    r: Row,
    details: String,
    advisory_raw: String,
    entries: Vec<Entry>,
    can_edit: bool,
    message: Option<String>,
    conflict: Vec<FieldChange>,
    saved: bool,
}

fn find_release(state: &AppState, text: &str) -> Result<(Version, Release), ConsoleError> {
    let version = parse_release_version(text).map_err(ConsoleError::NotFound)?;
    let table = state.releases.current();
    let release = table
        .find(&version)
        .cloned()
        .ok_or_else(|| ConsoleError::NotFound(format!("There is no release {version}.")))?;
    Ok((version, release))
}

async fn release_page(
    state: &AppState,
    user: &ConsoleUser,
    version_text: &str,
    status: StatusCode,
    message: Option<String>,
    conflict: Vec<FieldChange>,
    saved: bool,
) -> Result<HttpResponse, ConsoleError> {
    let (version, release) = find_release(state, version_text)?;
    let key = version.to_string();
    let rows = state
        .db
        .run(move |conn| release_changes::history(conn, Some(&key), 200, None))
        .await?;
    Ok(layout::render(
        status,
        &ReleasePage {
            shell: Shell::for_user(user, Section::Releases),
            csrf: user.csrf_token.clone(),
            r: row(&release),
            details: release.details.clone(),
            advisory_raw: release.advisory.clone().unwrap_or_default(),
            entries: rows.into_iter().map(entry).collect(),
            can_edit: user.is_at_least(Role::ReleaseManager),
            message,
            conflict,
            saved,
        },
    ))
}

/// `GET /console/releases/{version}`
pub async fn show(
    user: ConsoleUser,
    path: web::Path<String>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::Analyst)?;
    let saved = req.query_string().contains("saved=1");
    release_page(
        &state,
        &user,
        &path,
        StatusCode::OK,
        None,
        Vec::new(),
        saved,
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
struct EditForm {
    csrf_token: Option<String>,
    security: Option<String>,
    advisory: Option<String>,
    details: Option<String>,
    orig_security: Option<String>,
    orig_advisory: Option<String>,
    orig_details: Option<String>,
}

pub(crate) fn read_form<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ConsoleError> {
    if body.len() > 64 * 1024 {
        return Err(ConsoleError::BadRequest(
            "The form is larger than 64 KiB.".into(),
        ));
    }
    serde_urlencoded::from_bytes(body)
        .map_err(|e| ConsoleError::BadRequest(format!("The form could not be read: {e}.")))
}

fn empty_to_none(text: &str) -> Option<String> {
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// `POST /console/releases/{version}`: sets level, advisory and details; a form rendered
/// before someone else's change gets 409 and shows what changed.
pub async fn edit(
    user: ConsoleUser,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::ReleaseManager)?;
    let form: EditForm = read_form(&body)?;
    user.check_csrf(form.csrf_token.as_deref())?;
    let (version, _) = find_release(&state, &path)?;
    let security = match form
        .security
        .as_deref()
        .unwrap_or("")
        .parse::<SecurityLevel>()
    {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("{e}. Nothing was saved.");
            return release_page(
                &state,
                &user,
                &path,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(msg),
                Vec::new(),
                false,
            )
            .await;
        }
    };
    let key = version.to_string();
    let expect = vec![
        Expect {
            version: key.clone(),
            field: "security",
            value: form.orig_security.clone(),
        },
        Expect {
            version: key.clone(),
            field: "advisory",
            value: form.orig_advisory.as_deref().and_then(empty_to_none),
        },
        Expect {
            version: key.clone(),
            field: "details",
            value: Some(form.orig_details.clone().unwrap_or_default()),
        },
    ];
    let mut change = Edit::new(version.clone(), Mode::Update);
    change.security = Some(security);
    change.advisory = Some(form.advisory.as_deref().and_then(empty_to_none));
    change.details = Some(form.details.clone().unwrap_or_default());
    let actor = Actor::new(user.name.clone(), Via::Web);
    match release_ops::apply(&state.db, &state.releases, vec![change], expect, actor).await {
        Ok(_) => Ok(HttpResponse::SeeOther()
            .insert_header(("location", format!("/console/releases/{key}?saved=1")))
            .finish()),
        Err(WriteError::Stale(changed)) => {
            let msg = "Someone changed this release after you opened the form. Nothing was saved; \
                       the form now shows the current values."
                .to_string();
            release_page(
                &state,
                &user,
                &key,
                StatusCode::CONFLICT,
                Some(msg),
                changed,
                false,
            )
            .await
        }
        Err(WriteError::Edit(e)) => {
            release_page(
                &state,
                &user,
                &key,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(e.to_string()),
                Vec::new(),
                false,
            )
            .await
        }
        Err(WriteError::Db(e)) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "console/batch.html")]
struct BatchPage {
    shell: Shell,
    csrf: String,
    versions: String,
    security: String,
    advisory: String,
    details: String,
    released_on: String,
    sample: String,
    error: Option<String>,
    preview: Option<Preview>,
}

struct Preview {
    changes: Vec<FieldChange>,
    impact: Impact,
    sample: String,
    before: Told,
    after: Told,
    before_json: String,
    after_json: String,
}

#[derive(Debug, Default, Deserialize)]
struct BatchForm {
    csrf_token: Option<String>,
    action: Option<String>,
    versions: Option<String>,
    security: Option<String>,
    advisory: Option<String>,
    details: Option<String>,
    released_on: Option<String>,
    sample: Option<String>,
}

/// `GET /console/releases/batch`: the security-release batch form.
pub async fn batch_form(user: ConsoleUser) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::ReleaseManager)?;
    Ok(layout::render(
        StatusCode::OK,
        &BatchPage {
            shell: Shell::for_user(&user, Section::Releases),
            csrf: user.csrf_token.clone(),
            versions: String::new(),
            security: "critical".into(),
            advisory: String::new(),
            details: String::new(),
            released_on: String::new(),
            sample: String::new(),
            error: None,
            preview: None,
        },
    ))
}

/// `POST /console/releases/batch`: `action=preview` shows the changes and their impact;
/// `action=save` records them (the same checks run again).
pub async fn batch_submit(
    user: ConsoleUser,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::ReleaseManager)?;
    let form: BatchForm = read_form(&body)?;
    user.check_csrf(form.csrf_token.as_deref())?;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut page = BatchPage {
        shell: Shell::for_user(&user, Section::Releases),
        csrf: user.csrf_token.clone(),
        versions: text(&form.versions),
        security: text(&form.security),
        advisory: text(&form.advisory),
        details: text(&form.details),
        released_on: text(&form.released_on),
        sample: text(&form.sample),
        error: None,
        preview: None,
    };
    let released_on = match parse_day("released_on", &page.released_on) {
        Ok(d) => d,
        Err(e) => {
            page.error = Some(e);
            return Ok(layout::render(StatusCode::UNPROCESSABLE_ENTITY, &page));
        }
    };
    let batch = SecurityBatch {
        versions: page
            .versions
            .split(|c: char| c == ',' || c.is_whitespace())
            .map(str::to_string)
            .collect(),
        security: page.security.clone(),
        advisory: page.advisory.clone(),
        details: page.details.clone(),
        released_on,
    };
    let table = state.releases.current();
    let edits = match security_batch(table.releases(), &batch) {
        Ok(e) => e,
        Err(e) => {
            page.error = Some(format!("{e}. Nothing was saved."));
            return Ok(layout::render(StatusCode::UNPROCESSABLE_ENTITY, &page));
        }
    };
    if form.action.as_deref() == Some("save") {
        let actor = Actor::new(user.name.clone(), Via::Web);
        return match release_ops::apply(&state.db, &state.releases, edits, Vec::new(), actor).await
        {
            Ok(_) => Ok(HttpResponse::SeeOther()
                .insert_header(("location", "/console/releases/history?saved=1"))
                .finish()),
            Err(WriteError::Db(e)) => Err(e.into()),
            Err(other) => {
                page.error = Some(format!(
                    "{}. Nothing was saved.",
                    release_ops::api_error(other)
                ));
                Ok(layout::render(StatusCode::CONFLICT, &page))
            }
        };
    }
    let run_edits = edits.clone();
    let run = state
        .db
        .run(move |conn| release_ops::dry_run(conn, &run_edits))
        .await?
        .map_err(|e| ConsoleError::BadRequest(e.to_string()))?;
    // The sample instance: the one asked for, else the newest version just below the
    // batch's first release (the typical instance that needs this fix).
    let sample = match parse_release_version(&page.sample) {
        Ok(v) => v,
        Err(_) => {
            let first = edits
                .first()
                .map(|e| e.version.clone())
                .expect("a batch has versions");
            table
                .releases()
                .iter()
                .rev()
                .find(|r| r.version < first)
                .map(|r| r.version.clone())
                .unwrap_or(first)
        }
    };
    let after_table = ReleaseTable::new(run.after.clone());
    let before = release_ops::told(&table, &sample);
    let after = release_ops::told(&after_table, &sample);
    page.preview = Some(Preview {
        before_json: serde_json::to_string_pretty(&before.check_json).unwrap_or_default(),
        after_json: serde_json::to_string_pretty(&after.check_json).unwrap_or_default(),
        changes: run.changes,
        impact: run.impact,
        sample: sample.to_string(),
        before,
        after,
    });
    Ok(layout::render(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "console/history.html")]
struct HistoryPage {
    shell: Shell,
    csrf: String,
    entries: Vec<Entry>,
    can_edit: bool,
    saved: bool,
    message: Option<String>,
}

/// `GET /console/releases/history`: every change, newest first.
pub async fn history(
    req: HttpRequest,
    user: ConsoleUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::Analyst)?;
    let saved = req.query_string().contains("saved=1");
    history_page(&state, &user, StatusCode::OK, saved, None).await
}

async fn history_page(
    state: &AppState,
    user: &ConsoleUser,
    status: StatusCode,
    saved: bool,
    message: Option<String>,
) -> Result<HttpResponse, ConsoleError> {
    let rows = state
        .db
        .run(|conn| release_changes::history(conn, None, 500, None))
        .await?;
    Ok(layout::render(
        status,
        &HistoryPage {
            shell: Shell::for_user(user, Section::History),
            csrf: user.csrf_token.clone(),
            entries: rows.into_iter().map(entry).collect(),
            can_edit: user.is_at_least(Role::ReleaseManager),
            saved,
            message,
        },
    ))
}

#[derive(Debug, Default, Deserialize)]
struct RevertForm {
    csrf_token: Option<String>,
    change_id: Option<i64>,
    batch: Option<String>,
}

/// `POST /console/releases/history/revert`: reverts one change or its whole operation, as a
/// new audited change.
pub async fn revert(
    user: ConsoleUser,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::ReleaseManager)?;
    let form: RevertForm = read_form(&body)?;
    user.check_csrf(form.csrf_token.as_deref())?;
    let id = form
        .change_id
        .ok_or_else(|| ConsoleError::BadRequest("The form names no change.".into()))?;
    let whole = form.batch.as_deref() == Some("1");
    let plan = state
        .db
        .run(move |conn| release_ops::plan_revert(conn, id, whole))
        .await?;
    let (edits, expect, note) = match plan {
        Ok(p) => p,
        Err(msg) => {
            return history_page(&state, &user, StatusCode::NOT_FOUND, false, Some(msg)).await
        }
    };
    let mut actor = Actor::new(user.name.clone(), Via::Web);
    actor.note = Some(note);
    match release_ops::apply(&state.db, &state.releases, edits, expect, actor).await {
        Ok(_) => Ok(HttpResponse::SeeOther()
            .insert_header(("location", "/console/releases/history?saved=1"))
            .finish()),
        Err(WriteError::Db(e)) => Err(e.into()),
        Err(other) => {
            let msg = format!(
                "{}. Revert the later change first.",
                release_ops::api_error(other)
            );
            history_page(&state, &user, StatusCode::CONFLICT, false, Some(msg)).await
        }
    }
}
