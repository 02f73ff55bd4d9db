//! `GET /api/v1/insights/…`: every chart's numbers as JSON (default) or CSV (`?format=csv`).
//! Access: a token with scope `insights:read` (`PRIVATE-TOKEN` or `Authorization: Bearer`)
//! or a console session of an analyst (or a higher role).

mod fleet;
pub mod metric_lists;
pub mod output;
pub mod params;
pub mod pseudonymise;

pub(crate) use fleet::{
    licence_params, load_raw, no_raw_payload, parse_id, penetration_version, LICENCE_PARAMS,
};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::Serialize;

use crate::auth::Scope;
use crate::console::auth::Role;
use crate::domain::insights::dimension::Dimension;
use crate::domain::version::Version;
use crate::error::ApiError;
use crate::insights::report::{self, AffectedRange, MetricError, VulnerableRow};
use crate::insights::{lists, series};
use crate::state::AppState;
use output::respond;
use params::{Format, Params};

/// Parameters of the period series endpoints.
const SERIES_PARAMS: &[&str] = &[
    "period",
    "from",
    "to",
    "by",
    "include_internal",
    "format",
    pseudonymise::PARAM,
];
/// Longest window of the backport report, in days.
pub const MAX_BACKPORT_DAYS: i64 = 365;

/// Registers the insights API under the `/api/v1` scope.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/insights/installations", web::get().to(installations))
        .route("/insights/metrics", web::get().to(metric_lists::catalogue))
        .route("/insights/metrics/{key_path}", web::get().to(metric))
        .route(
            "/insights/metrics/{key_path}/top",
            web::get().to(metric_lists::top),
        )
        .route("/insights/versions", web::get().to(versions))
        .route("/insights/backport", web::get().to(backport))
        .route("/insights/installation", web::get().to(installation))
        .route("/insights/vulnerable", web::get().to(vulnerable))
        .configure(fleet::routes);
}

/// 401 without credentials, 403 with a token of another scope or a session below analyst.
pub(crate) async fn require_access(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    crate::console::auth::authorize_api(req, state, Role::Analyst, Scope::InsightsRead).await?;
    Ok(())
}

/// Fields beside `rows` in a series answer.
#[derive(Serialize)]
struct SeriesMeta {
    period: &'static str,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
    capped: Option<String>,
}

async fn installations(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    require_access(&state, &req).await?;
    let params = Params::parse(req.query_string(), SERIES_PARAMS)?;
    let format = params.format()?;
    // Counts per group only, no identifier: checked, answer unchanged.
    pseudonymise::requested(&params, &state.settings)?;
    let by = params.by(&[
        Dimension::Tier,
        Dimension::Edition,
        Dimension::InstallationType,
        Dimension::Country,
    ])?;
    let (range, capped) = params.range(Utc::now().date_naive())?;
    let cache = state.insights_cache.clone();
    let rows = state
        .read_db
        .run(move |conn| series::installations(conn, &cache, &range, by))
        .await?;
    let meta = SeriesMeta {
        period: range.kind.as_str(),
        from: range.from,
        to: range.to,
        capped: capped.clone(),
    };
    respond(format, &rows, meta, capped.as_deref())
}

async fn metric(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_access(&state, &req).await?;
    let key_path = path.into_inner();
    let params = Params::parse(req.query_string(), SERIES_PARAMS)?;
    let format = params.format()?;
    // Counts per group only, no identifier: checked, answer unchanged.
    pseudonymise::requested(&params, &state.settings)?;
    let by = params.by(&[Dimension::Tier, Dimension::Edition])?;
    let (range, capped) = params.range(Utc::now().date_naive())?;
    let key = key_path.clone();
    let cache = state.insights_cache.clone();
    let (rows, (frame, source)) = state
        .read_db
        .run(
            move |conn| match series::metric(conn, &cache, &key, &range, by) {
                Ok(rows) => Ok(Ok((
                    rows,
                    crate::insights::metric_lists::time_frame_of(conn, &key)?,
                ))),
                Err(MetricError::UnknownKey(k)) => Ok(Err(k)),
                Err(MetricError::Db(e)) => Err(e),
            },
        )
        .await?
        .map_err(|k| ApiError::NotFound(format!("unknown metric key path `{k}`")))?;
    #[derive(Serialize)]
    struct Meta {
        key_path: String,
        time_frame: &'static str,
        time_frame_source: &'static str,
        #[serde(flatten)]
        series: SeriesMeta,
    }
    let meta = Meta {
        time_frame: frame.as_str(),
        time_frame_source: source.as_str(),
        key_path,
        series: SeriesMeta {
            period: range.kind.as_str(),
            from: range.from,
            to: range.to,
            capped: capped.clone(),
        },
    };
    respond(format, &rows, meta, capped.as_deref())
}

async fn versions(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    require_access(&state, &req).await?;
    let params = Params::parse(
        req.query_string(),
        &[
            "period",
            "from",
            "to",
            "include_internal",
            "format",
            pseudonymise::PARAM,
        ],
    )?;
    let format = params.format()?;
    // No identifier in this answer: the parameter is checked (a missing key is still a
    // 400) and the answer is the same.
    pseudonymise::requested(&params, &state.settings)?;
    let (range, capped) = params.range(Utc::now().date_naive())?;
    let cache = state.insights_cache.clone();
    let rows = state
        .read_db
        .run(move |conn| {
            Ok(report::versions(
                &series::version_counts(conn, &cache, &range)?,
                &range,
            ))
        })
        .await?;
    let meta = SeriesMeta {
        period: range.kind.as_str(),
        from: range.from,
        to: range.to,
        capped: capped.clone(),
    };
    respond(format, &rows, meta, capped.as_deref())
}

/// Parses a what-if version bound.
fn version_param(params: &Params, name: &str) -> Result<Option<Version>, ApiError> {
    params
        .get(name)
        .map(|text| {
            Version::parse(text).map_err(|e| ApiError::BadRequest(format!("`{name}`: {e}")))
        })
        .transpose()
}

/// `days`, `include_internal` and the what-if range of the backport report.
pub fn backport_params(params: &Params) -> Result<(i64, bool, Option<AffectedRange>), ApiError> {
    let days = match params.get("days") {
        None => 28,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if (1..=MAX_BACKPORT_DAYS).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "`days` must be a whole number from 1 to {MAX_BACKPORT_DAYS}, got `{text}`"
                )))
            }
        },
    };
    let what_if = match (
        version_param(params, "affected_from")?,
        version_param(params, "affected_to")?,
    ) {
        (None, None) => None,
        (Some(from), Some(to)) if from <= to => Some(AffectedRange { from, to }),
        (Some(from), Some(to)) => {
            return Err(ApiError::BadRequest(format!(
                "`affected_from` ({from}) must not be above `affected_to` ({to})"
            )))
        }
        (None, Some(_)) => return Err(ApiError::BadRequest("`affected_from` is missing".into())),
        (Some(_), None) => return Err(ApiError::BadRequest("`affected_to` is missing".into())),
    };
    Ok((days, params.include_internal()?, what_if))
}

/// Parameters of the backport endpoint.
pub const BACKPORT_PARAMS: &[&str] = &[
    "days",
    "include_internal",
    "affected_from",
    "affected_to",
    "format",
];

async fn backport(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    require_access(&state, &req).await?;
    let params = Params::parse(
        req.query_string(),
        &pseudonymise::with_param(BACKPORT_PARAMS),
    )?;
    let format = params.format()?;
    // Counts per minor line only, no identifier: checked, answer unchanged.
    pseudonymise::requested(&params, &state.settings)?;
    let (days, include_internal, what_if) = backport_params(&params)?;
    let table = state.releases.current();
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
                what_if.as_ref(),
            )
        })
        .await?;
    #[derive(Serialize)]
    struct Meta {
        days: i64,
    }
    respond(format, &rows, Meta { days }, None)
}

async fn installation(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    require_access(&state, &req).await?;
    let params = Params::parse(
        req.query_string(),
        &["uuid", "hostname", "format", pseudonymise::PARAM],
    )?;
    let format = params.format()?;
    let hide = pseudonymise::requested(&params, &state.settings)?;
    let uuid = params
        .get("uuid")
        .ok_or_else(|| ApiError::BadRequest("`uuid` is required".into()))?
        .to_owned();
    let hostname = params.get("hostname").unwrap_or_default().to_owned();
    let table = state.releases.current();
    let (u, h) = (uuid.clone(), hostname.clone());
    let found = state
        .read_db
        .run(move |conn| report::installation(conn, &table, &u, &h))
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no installation with uuid `{uuid}` and hostname `{hostname}`"
            ))
        })?;
    let found = match &hide {
        Some(key) => pseudonymise::installation(found, key),
        None => found,
    };
    match format {
        Format::Json => Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "private, no-cache"))
            .json(&found)),
        Format::Csv => respond(format, &found.submissions, (), None),
    }
}

/// `days` (1..=365, default 28) and `critical=true|false`.
pub fn vulnerable_params(params: &Params) -> Result<(i64, bool, bool), ApiError> {
    let (days, include_internal, _) = backport_params(params)?;
    let critical = match params.get("critical") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "`critical` must be true or false, got `{other}`"
            )))
        }
    };
    Ok((days, include_internal, critical))
}

/// Parameters of the vulnerable endpoint.
pub const VULNERABLE_PARAMS: &[&str] = &["days", "include_internal", "critical", "format"];

async fn vulnerable(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    require_access(&state, &req).await?;
    let params = Params::parse(
        req.query_string(),
        &pseudonymise::with_param(VULNERABLE_PARAMS),
    )?;
    let format = params.format()?;
    let hide = pseudonymise::requested(&params, &state.settings)?;
    let (days, include_internal, critical) = vulnerable_params(&params)?;
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
        .await?;
    let hidden;
    let rows: &[VulnerableRow] = match &hide {
        Some(key) => {
            hidden = pseudonymise::vulnerable(rows.to_vec(), key);
            &hidden
        }
        None => &rows,
    };
    #[derive(Serialize)]
    struct Meta {
        days: i64,
    }
    respond(format, rows, Meta { days }, None)
}
