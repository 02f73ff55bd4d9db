//! The release API that GitLab's tooling already speaks (protocol section 3).
//!
//! - `GET /api/v1/versions?per_page=&page=`: public, newest first.
//! - `POST /api/v1/versions[/]`: form fields `private_token` + `version`, exactly as
//!   omnibus-gitlab's `add_to_version_server.sh` sends them: form-encoded even when its
//!   Content-Type claims JSON, so the body is read by its shape, not its header.
//! - `PATCH /api/v1/versions/{version}`: set the security level and advisory text.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::{self, Scope};
use crate::db::models::release_changes::Actor;
use crate::db::models::releases::{self, ReleaseRow};
use crate::domain::csv_import::parse_release_version;
use crate::domain::input_rules::no_nul_opt;
use crate::domain::release::{Release, SecurityLevel};
use crate::domain::release_edit::{Edit, Mode, Via};
use crate::domain::version::Version;
use crate::error::ApiError;
use crate::release_ops;
use crate::routes::body::BodyError;
use crate::state::AppState;

/// Default and largest page sizes, as in GitLab's own API.
const DEFAULT_PER_PAGE: usize = 20;
const MAX_PER_PAGE: usize = 100;
/// Release writes are a few fields; anything bigger is not a release.
pub const MAX_RELEASE_BODY_BYTES: usize = 64 * 1024;

/// One release on the wire.
#[derive(Debug, Serialize)]
pub struct ReleaseJson {
    /// Canonical version, e.g. `16.7.2`.
    pub version: String,
    /// Publication day, `YYYY-MM-DD`.
    pub released_on: NaiveDate,
    /// `none`, `non_critical` or `critical`.
    pub security: SecurityLevel,
    /// Advisory batch id; `null` for non-security releases.
    pub advisory: Option<String>,
    /// Advisory text shown in GitLab's modal.
    pub details: String,
}

impl From<&Release> for ReleaseJson {
    fn from(r: &Release) -> Self {
        ReleaseJson {
            version: r.version.to_string(),
            released_on: r.released_on,
            security: r.security,
            advisory: r.advisory_id(),
            details: r.details.clone(),
        }
    }
}

fn row_json(row: &ReleaseRow) -> Result<ReleaseJson, ApiError> {
    Ok(ReleaseJson::from(&row.to_domain()?))
}

/// `?per_page=&page=` of the list; a bad value gets the JSON 400 through the app's
/// `QueryConfig` (`routes::fallback::extractor_configs`). Other parameters are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct Paging {
    #[serde(default, deserialize_with = "per_page")]
    per_page: Option<usize>,
    #[serde(default, deserialize_with = "page")]
    page: Option<usize>,
}

fn per_page<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    whole_number(d, "per_page", MAX_PER_PAGE).map(Some)
}

fn page<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    whole_number(d, "page", 1_000_000).map(Some)
}

/// A whole number from 1 to `max`; the error names the parameter, because serde's query
/// errors do not name the field.
fn whole_number<'de, D: serde::Deserializer<'de>>(
    d: D,
    name: &str,
    max: usize,
) -> Result<usize, D::Error> {
    let text = String::deserialize(d)?;
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{name}` must be a whole number from 1 to {max}, got `{text}`"
            ))
        })
}

/// `GET /api/v1/versions`: the release table from the in-memory snapshot, newest first,
/// with GitLab-style pagination headers.
pub(crate) async fn list(
    req: HttpRequest,
    query: web::Query<Paging>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let per_page = query.per_page.unwrap_or(DEFAULT_PER_PAGE);
    let page = query.page.unwrap_or(1);
    let table = state.releases.current();
    let total = table.len();
    let total_pages = total.div_ceil(per_page).max(1);
    let items: Vec<ReleaseJson> = table
        .releases()
        .iter()
        .rev()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(ReleaseJson::from)
        .collect();
    let mut response = HttpResponse::Ok();
    response
        .insert_header(("X-Total", total.to_string()))
        .insert_header(("X-Total-Pages", total_pages.to_string()))
        .insert_header(("X-Page", page.to_string()))
        .insert_header(("X-Per-Page", per_page.to_string()));
    if page < total_pages {
        response.insert_header(("X-Next-Page", (page + 1).to_string()));
        response.insert_header((
            header::LINK,
            format!(
                "<{}?per_page={per_page}&page={}>; rel=\"next\"",
                req.path(),
                page + 1
            ),
        ));
    }
    Ok(response.json(items))
}

/// Fields of a release creation, from a form or a JSON object.
#[derive(Debug, Default, Deserialize)]
struct CreateFields {
    private_token: Option<String>,
    version: Option<String>,
    released_on: Option<String>,
    security: Option<String>,
    advisory: Option<String>,
    details: Option<String>,
}

/// Reads the body by its shape: a JSON object if it looks like one, else form fields.
fn decode_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("the body is not UTF-8 text".into()))?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Ok(T::default());
    }
    if trimmed.starts_with('{') {
        serde_json::from_str(trimmed)
            .map_err(|e| ApiError::BadRequest(format!("the body is not a valid JSON object: {e}")))
    } else {
        serde_urlencoded::from_str(text)
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid form data: {e}")))
    }
}

fn header_token(req: &HttpRequest) -> Option<String> {
    auth::presented_token(req)
}

/// Admits a `releases:write` token; returns the actor name recorded in the history.
async fn authorize(state: &AppState, token: Option<String>) -> Result<String, ApiError> {
    let row = auth::authorize_on(&state.db, token, Scope::ReleasesWrite).await?;
    Ok(format!("token:{}", row.name))
}

fn parse_level(text: Option<&str>) -> Result<Option<SecurityLevel>, ApiError> {
    text.map(|t| {
        t.parse::<SecurityLevel>()
            .map_err(|e| ApiError::Unprocessable(e.to_string()))
    })
    .transpose()
}

/// Reads a release body under the body deadline (issue 8): over the cap is a JSON 413, not
/// the framework's plain-text one.
async fn read_release_body(state: &AppState, body: web::Payload) -> Result<web::Bytes, ApiError> {
    match state.body.read(body, MAX_RELEASE_BODY_BYTES, false).await {
        Ok(read) => Ok(read.bytes),
        Err(BodyError::TooLarge) => Err(ApiError::PayloadTooLarge(format!(
            "a release body may be at most {MAX_RELEASE_BODY_BYTES} bytes"
        ))),
        Err(other) => Err(other.into()),
    }
}

/// `POST /api/v1/versions`: adds a release (201), refusing duplicates (409).
pub async fn create(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_release_body(&state, body).await?;
    let fields: CreateFields = decode_body(&body)?;
    let actor = authorize(
        &state,
        fields.private_token.clone().or_else(|| header_token(&req)),
    )
    .await?;

    let raw_version = fields
        .version
        .as_deref()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| ApiError::Unprocessable("the field `version` is required".into()))?;
    let version = parse_release_version(raw_version).map_err(ApiError::Unprocessable)?;
    let released_on = match fields
        .released_on
        .as_deref()
        .filter(|d| !d.trim().is_empty())
    {
        Some(text) => NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
            ApiError::Unprocessable(format!(
                "`released_on` must be a YYYY-MM-DD date, got `{text}`"
            ))
        })?,
        None => Utc::now().date_naive(),
    };
    no_nul_opt("advisory", fields.advisory.as_deref())
        .and_then(|_| no_nul_opt("details", fields.details.as_deref()))
        .map_err(ApiError::Unprocessable)?;
    let mut edit = Edit::new(version.clone(), Mode::Create);
    edit.released_on = Some(released_on);
    edit.security = Some(parse_level(fields.security.as_deref())?.unwrap_or_default());
    edit.advisory = Some(fields.advisory.filter(|a| !a.trim().is_empty()));
    edit.details = Some(fields.details.unwrap_or_default());
    let actor = Actor::new(actor, Via::Api);
    release_ops::apply(&state.db, &state.releases, vec![edit], Vec::new(), actor)
        .await
        .map_err(release_ops::api_error)?;
    let row = find_row(&state, &version).await?;
    tracing::info!(release.version = %row.version, "release added");
    Ok(HttpResponse::Created().json(row_json(&row)?))
}

async fn find_row(state: &AppState, version: &Version) -> Result<ReleaseRow, ApiError> {
    let lookup = version.clone();
    state
        .db
        .run(move |conn| releases::find_by_version(conn, &lookup))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("release {version} does not exist")))
}

/// Body of a security-level change.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecurityFields {
    private_token: Option<String>,
    security: Option<String>,
    /// Absent: unchanged; `null` or `""`: cleared.
    #[serde(default, deserialize_with = "deserialize_some")]
    advisory: Option<Option<String>>,
    details: Option<String>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn deserialize_some<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `PATCH /api/v1/versions/{version}`: sets a release's security level and advisory text.
pub async fn set_security(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_release_body(&state, body).await?;
    let fields: SecurityFields = if body.iter().all(u8::is_ascii_whitespace) {
        SecurityFields::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!("the body is not a valid JSON object: {e}"))
        })?
    };
    let actor = authorize(&state, header_token(&req).or(fields.private_token.clone())).await?;
    let version = parse_release_version(&path).map_err(ApiError::BadRequest)?;
    let security = parse_level(fields.security.as_deref())?.ok_or_else(|| {
        ApiError::Unprocessable(
            "the field `security` is required (none, non_critical or critical)".into(),
        )
    })?;
    no_nul_opt(
        "advisory",
        fields.advisory.as_ref().and_then(|a| a.as_deref()),
    )
    .and_then(|_| no_nul_opt("details", fields.details.as_deref()))
    .map_err(ApiError::Unprocessable)?;
    let mut edit = Edit::new(version.clone(), Mode::Update);
    edit.security = Some(security);
    edit.advisory = fields.advisory.map(|a| a.filter(|s| !s.trim().is_empty()));
    edit.details = fields.details;
    release_ops::apply(
        &state.db,
        &state.releases,
        vec![edit],
        Vec::new(),
        Actor::new(actor, Via::Api),
    )
    .await
    .map_err(release_ops::api_error)?;
    let row = find_row(&state, &version).await?;
    tracing::info!(release.version = %row.version, release.security = %row.security, "release security changed");
    Ok(HttpResponse::Ok().json(row_json(&row)?))
}
