//! The release table's audited API: security batches (with a dry run and its impact) and
//! the history of changes.
//!
//! - `POST /api/v1/security_releases[?dry_run=true]`: a `releases:write` token or a release
//!   manager's session (with `X-CSRF-Token`).
//! - `GET /api/v1/releases/history`, `GET /api/v1/versions/{version}/history`: entries
//!   `id, at, actor, via, version, field, old, new` (+ `batch`, `note`), newest first;
//!   `?limit=` (1–1000, default 100) and `?before=ID` page back.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::auth::Scope;
use crate::console::auth::{AccessRule, ApiAccess, ReleasesWrite, Role};
use crate::db::models::release_changes::{self, Actor, ChangeRow};
use crate::domain::csv_import::parse_release_version;
use crate::domain::release_edit::{security_batch, SecurityBatch, Via};
use crate::error::ApiError;
use crate::release_ops;
use crate::state::AppState;

/// Reading the history: an analyst's session or a `releases:write` token.
#[derive(Debug)]
pub struct ReleasesRead;
impl AccessRule for ReleasesRead {
    const ROLE: Role = Role::Analyst;
    const SCOPE: Scope = Scope::ReleasesWrite;
}

/// One history entry on the wire.
#[derive(Debug, Serialize)]
pub struct HistoryEntry {
    /// Change id (`releases revert ID`).
    pub id: i64,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Who.
    pub actor: String,
    /// `web`, `api`, `cli`, `import` or `sync`.
    pub via: String,
    /// The release.
    pub version: String,
    /// The field.
    pub field: String,
    /// Before.
    pub old: Option<String>,
    /// After.
    pub new: Option<String>,
    /// Operation id.
    pub batch: String,
    /// e.g. `revert of change 12`.
    pub note: Option<String>,
}

impl From<ChangeRow> for HistoryEntry {
    fn from(r: ChangeRow) -> Self {
        HistoryEntry {
            id: r.id,
            at: r.at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            actor: r.actor,
            via: r.via,
            version: r.version,
            field: r.field,
            old: r.old,
            new: r.new,
            batch: r.batch,
            note: r.note,
        }
    }
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    limit: Option<i64>,
    before: Option<i64>,
}

fn history_query(req: &HttpRequest) -> Result<(i64, Option<i64>), ApiError> {
    let q: HistoryQuery = serde_urlencoded::from_str(req.query_string()).map_err(|e| {
        ApiError::BadRequest(format!("`limit` and `before` must be whole numbers: {e}"))
    })?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "`limit` must be from 1 to 1000, got {limit}"
        )));
    }
    Ok((limit, q.before))
}

async fn history(
    state: &AppState,
    version: Option<String>,
    limit: i64,
    before: Option<i64>,
) -> Result<HttpResponse, ApiError> {
    let rows = state
        .db
        .run(move |conn| release_changes::history(conn, version.as_deref(), limit, before))
        .await?;
    let entries: Vec<HistoryEntry> = rows.into_iter().map(HistoryEntry::from).collect();
    Ok(HttpResponse::Ok().json(entries))
}

/// `GET /api/v1/releases/history`
pub async fn all_history(
    req: HttpRequest,
    _access: ApiAccess<ReleasesRead>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (limit, before) = history_query(&req)?;
    history(&state, None, limit, before).await
}

/// `GET /api/v1/versions/{version}/history`
pub async fn version_history(
    req: HttpRequest,
    path: web::Path<String>,
    _access: ApiAccess<ReleasesRead>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let version = parse_release_version(&path).map_err(ApiError::BadRequest)?;
    let (limit, before) = history_query(&req)?;
    history(&state, Some(version.to_string()), limit, before).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    versions: Option<Vec<String>>,
    security: Option<String>,
    advisory: Option<String>,
    details: Option<String>,
    released_on: Option<NaiveDate>,
}

#[derive(Debug, Deserialize)]
struct DryRunQuery {
    dry_run: Option<String>,
}

/// `POST /api/v1/security_releases[?dry_run=true]`
pub async fn security_releases(
    req: HttpRequest,
    access: ApiAccess<ReleasesWrite>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if body.len() > crate::routes::versions::MAX_RELEASE_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "a security release body may be at most {} bytes",
            crate::routes::versions::MAX_RELEASE_BODY_BYTES
        )));
    }
    let query: DryRunQuery = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))?;
    let dry_run = match query.dry_run.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "`dry_run` must be true or false, got `{other}`"
            )))
        }
    };
    let body: BatchBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a valid JSON object: {e}")))?;
    let batch = SecurityBatch {
        versions: body.versions.unwrap_or_default(),
        security: body.security.unwrap_or_default(),
        advisory: body.advisory.unwrap_or_default(),
        details: body.details.unwrap_or_default(),
        released_on: body.released_on,
    };
    let table = state.releases.current();
    let edits = security_batch(table.releases(), &batch).map_err(ApiError::Unprocessable)?;
    if dry_run {
        let run = state
            .db
            .run(move |conn| release_ops::dry_run(conn, &edits))
            .await?
            .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
        return Ok(HttpResponse::Ok().json(serde_json::json!({
            "dry_run": true,
            "changes": run.changes,
            "impact": run.impact,
        })));
    }
    let actor = Actor::new(access.caller.actor(), Via::Api);
    let written = release_ops::apply(&state.db, &state.releases, edits, Vec::new(), actor)
        .await
        .map_err(release_ops::api_error)?;
    tracing::info!(advisory = %batch.advisory, changes = written.len(), "security release recorded");
    let changes: Vec<HistoryEntry> = written.into_iter().map(HistoryEntry::from).collect();
    Ok(HttpResponse::Created().json(serde_json::json!({
        "advisory": batch.advisory.trim(),
        "versions": batch.versions.iter().map(|v| v.trim()).collect::<Vec<_>>(),
        "changes": changes,
    })))
}
