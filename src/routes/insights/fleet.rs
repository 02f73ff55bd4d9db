//! `GET /api/v1/insights/overview/…`, `versions/…`, `licences…` and `raw/{id}`: the fleet
//! views added to the overview, versions and licences pages, and the raw payload (admin).

use crate::db::DbError;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::Serialize;

use super::output::{respond, text, CsvRow};
use super::params::Params;
use super::pseudonymise;
use super::{require_access, SeriesMeta, MAX_BACKPORT_DAYS};
use crate::console::auth::Role;
use crate::domain::insights::versions_behind::latest_line;
use crate::domain::version::Version;
use crate::error::ApiError;
use crate::insights::fleet::{
    self, ActivityRow, BehindRow, DaysBehindRow, PenetrationRow, SourcesRow, VersionSourcesRow,
};
use crate::insights::licences::{LicenceList, LicenceRow, UtilisationRow};
use crate::insights::report::{self, Range, VulnerableShareRow};
use crate::insights::{lists, series};
use crate::state::AppState;

/// Parameters of the period series without `by`.
pub(crate) const PLAIN_SERIES: &[&str] = &["period", "from", "to", "include_internal", "format"];
/// Parameters of the penetration series.
pub(crate) const PENETRATION_PARAMS: &[&str] = &[
    "period",
    "from",
    "to",
    "include_internal",
    "version",
    "format",
];
/// Parameters of the licence lists.
pub(crate) const LICENCE_PARAMS: &[&str] =
    &["list", "within", "days", "include_internal", "format"];

/// Registers the fleet endpoints (called from the insights route table).
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/insights/overview/activity", web::get().to(activity))
        .route(
            "/insights/overview/sources",
            web::get().to(overview_sources),
        )
        .route("/insights/versions/penetration", web::get().to(penetration))
        .route("/insights/versions/behind", web::get().to(behind))
        .route("/insights/versions/days_behind", web::get().to(days_behind))
        .route(
            "/insights/versions/vulnerable_share",
            web::get().to(vulnerable_share),
        )
        .route("/insights/versions/sources", web::get().to(version_sources))
        .route("/insights/licences/utilisation", web::get().to(utilisation))
        .route("/insights/licences", web::get().to(licence_list))
        .route("/insights/raw/{usage_data_id}", web::get().to(raw));
}

fn meta(range: &Range, capped: &Option<String>) -> SeriesMeta {
    SeriesMeta {
        period: range.kind.as_str(),
        from: range.from,
        to: range.to,
        capped: capped.clone(),
    }
}

/// Reads a period series request without `by`. These series carry no identifier, so
/// `pseudonymise` is accepted (every insights endpoint takes it) and only validated.
fn series(
    state: &AppState,
    req: &HttpRequest,
    allowed: &[&str],
) -> Result<(Params, Range, Option<String>), ApiError> {
    let params = Params::parse(req.query_string(), &pseudonymise::with_param(allowed))?;
    pseudonymise::requested(&params, &state.settings)?;
    let (range, capped) = params.range(Utc::now().date_naive())?;
    Ok((params, range, capped))
}

async fn activity(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    require_access(&state, &req).await?;
    let (params, range, capped) = series(&state, &req, PLAIN_SERIES)?;
    let cache = state.insights_cache.clone();
    let rows = state
        .read_db
        .run(move |c| series::activity(c, &cache, &range))
        .await?;
    respond(
        params.format()?,
        &rows,
        meta(&range, &capped),
        capped.as_deref(),
    )
}

async fn overview_sources(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    require_access(&state, &req).await?;
    let (params, range, capped) = series(&state, &req, PLAIN_SERIES)?;
    let cache = state.insights_cache.clone();
    let rows = state
        .read_db
        .run(move |c| series::overview_sources(c, &cache, &range))
        .await?;
    respond(
        params.format()?,
        &rows,
        meta(&range, &capped),
        capped.as_deref(),
    )
}

/// Version X of the penetration chart: `version` (`18.8` means `18.8.0`), by default the
/// first release of the newest minor line released by today.
pub(crate) fn penetration_version(params: &Params, state: &AppState) -> Result<Version, ApiError> {
    match params.get("version") {
        Some(text) => {
            let full = if text.matches('.').count() == 1 {
                format!("{text}.0")
            } else {
                text.to_owned()
            };
            Version::parse(&full).map_err(|e| ApiError::BadRequest(format!("`version`: {e}")))
        }
        None => {
            let table = state.releases.current();
            latest_line(table.releases(), Utc::now().date_naive())
                .map(|(a, b)| Version::new(a, b, 0))
                .ok_or_else(|| {
                    ApiError::BadRequest("no release is known yet: give `version`".into())
                })
        }
    }
}

async fn penetration(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    require_access(&state, &req).await?;
    let (params, range, capped) = series(&state, &req, PENETRATION_PARAMS)?;
    let version = penetration_version(&params, &state)?;
    let cache = state.insights_cache.clone();
    let rows = state
        .read_db
        .run(move |c| {
            Ok(fleet::penetration(
                &series::version_counts(c, &cache, &range)?,
                &range,
                &version,
            ))
        })
        .await?;
    respond(
        params.format()?,
        &rows,
        meta(&range, &capped),
        capped.as_deref(),
    )
}

async fn behind(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    require_access(&state, &req).await?;
    let (params, range, capped) = series(&state, &req, PLAIN_SERIES)?;
    let table = state.releases.current();
    let cache = state.insights_cache.clone();
    let rows = state
        .read_db
        .run(move |c| {
            Ok(fleet::behind(
                &series::version_counts(c, &cache, &range)?,
                table.releases(),
                &range,
            ))
        })
        .await?;
    respond(
        params.format()?,
        &rows,
        meta(&range, &capped),
        capped.as_deref(),
    )
}

async fn days_behind(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    require_access(&state, &req).await?;
    let (params, range, capped) = series(&state, &req, PLAIN_SERIES)?;
    let table = state.releases.current();
    let cache = state.insights_cache.clone();
    let rows = state
        .read_db
        .run(move |c| {
            Ok(fleet::days_behind_rows(
                &series::version_counts(c, &cache, &range)?,
                table.releases(),
                &range,
            ))
        })
        .await?;
    respond(
        params.format()?,
        &rows,
        meta(&range, &capped),
        capped.as_deref(),
    )
}

async fn vulnerable_share(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    require_access(&state, &req).await?;
    let (params, range, capped) = series(&state, &req, PLAIN_SERIES)?;
    let table = state.releases.current();
    let cache = state.insights_cache.clone();
    let rows = state
        .read_db
        .run(move |c| {
            Ok(report::vulnerable_share(
                &series::version_counts(c, &cache, &range)?,
                &table,
                &range,
            ))
        })
        .await?;
    respond(
        params.format()?,
        &rows,
        meta(&range, &capped),
        capped.as_deref(),
    )
}

async fn version_sources(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    require_access(&state, &req).await?;
    let (params, range, capped) = series(&state, &req, PLAIN_SERIES)?;
    let cache = state.insights_cache.clone();
    let rows = state
        .read_db
        .run(move |c| series::version_sources(c, &cache, &range))
        .await?;
    respond(
        params.format()?,
        &rows,
        meta(&range, &capped),
        capped.as_deref(),
    )
}

async fn utilisation(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    require_access(&state, &req).await?;
    let (params, range, capped) = series(&state, &req, PLAIN_SERIES)?;
    let cache = state.insights_cache.clone();
    let rows = state
        .read_db
        .run(move |c| series::utilisation(c, &cache, &range))
        .await?;
    respond(
        params.format()?,
        &rows,
        meta(&range, &capped),
        capped.as_deref(),
    )
}

/// A whole-number parameter in `1..=max`.
fn days_param(params: &Params, name: &str, default: i64, max: i64) -> Result<i64, ApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(t) => match t.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "`{name}` must be a whole number from 1 to {max}, got `{t}`"
            ))),
        },
    }
}

/// `list=over_seats|expiring|trials` (default over_seats), `within` (expiring: 1..=365,
/// default 90), `days` (the window of latest submissions: 1..=365, default 28),
/// `include_internal`.
pub(crate) fn licence_params(params: &Params) -> Result<(LicenceList, i64, bool), ApiError> {
    let within = days_param(params, "within", 90, 365)?;
    let which = match params.get("list") {
        None | Some("over_seats") => LicenceList::OverSeats,
        Some("expiring") => LicenceList::Expiring(within),
        Some("trials") => LicenceList::Trials,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "`list` must be over_seats, expiring or trials, got `{other}`"
            )))
        }
    };
    let days = days_param(params, "days", 28, MAX_BACKPORT_DAYS)?;
    Ok((which, days, params.include_internal()?))
}

async fn licence_list(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    require_access(&state, &req).await?;
    let params = Params::parse(
        req.query_string(),
        &pseudonymise::with_param(LICENCE_PARAMS),
    )?;
    let format = params.format()?;
    let (which, days, include_internal) = licence_params(&params)?;
    let hide = pseudonymise::requested(&params, &state.settings)?;
    let cache = state.insights_cache.clone();
    let rows = state
        .read_db
        .run(move |c| {
            lists::licence_lists(
                c,
                &cache,
                Utc::now().naive_utc(),
                (days, include_internal),
                &[which],
            )
        })
        .await?;
    let rows = rows.first().map(Vec::as_slice).unwrap_or_default();
    let hidden;
    let rows = match hide {
        Some(key) => {
            hidden = pseudonymise::licences(rows.to_vec(), &key);
            &hidden
        }
        None => rows,
    };
    #[derive(Serialize)]
    struct Meta {
        list: &'static str,
        days: i64,
        within: Option<i64>,
    }
    let (list, within) = match which {
        LicenceList::OverSeats => ("over_seats", None),
        LicenceList::Expiring(n) => ("expiring", Some(n)),
        LicenceList::Trials => ("trials", None),
    };
    respond(format, rows, Meta { list, days, within }, None)
}

/// The submission's payload as received, for an admin's console session only: a token (of
/// any scope) or a lower role gets 403, no session 401.
async fn raw(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if crate::auth::presented_token(&req).is_some() {
        return Err(ApiError::Forbidden(
            "raw payloads need an admin's console session; tokens cannot read them".into(),
        ));
    }
    crate::console::auth::authorize_api(
        &req,
        &state,
        Role::Admin,
        crate::auth::Scope::InsightsRead,
    )
    .await?;
    Params::parse(req.query_string(), &[])?;
    let id = parse_id(&path)?;
    let payload = load_raw(&state, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(no_raw_payload(id)))?;
    #[derive(Serialize)]
    struct Raw {
        usage_data_id: i64,
        payload: serde_json::Value,
    }
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "private, no-store"))
        .json(Raw {
            usage_data_id: id,
            payload,
        }))
}

/// A submission id from the path.
pub(crate) fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "`usage_data_id` must be a positive whole number, got `{}`",
            text.chars().take(40).collect::<String>()
        ))
    })
}

/// The stored payload of a submission as JSON (a non-JSON body as a JSON string); 404 when
/// it was never stored or retention removed it.
pub(crate) async fn load_raw(
    state: &AppState,
    id: i64,
) -> Result<Option<serde_json::Value>, DbError> {
    let bytes = state
        .read_db
        .run(move |c| crate::db::models::usage_data_raw::find_raw_payload(c, id))
        .await?;
    Ok(bytes.map(|bytes| {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        })
    }))
}

/// What both the API and the console answer for a submission without a raw payload.
pub(crate) fn no_raw_payload(id: i64) -> String {
    format!("no raw payload for submission {id} (never received, or removed by retention)")
}

fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map(ToString::to_string).unwrap_or_default()
}

impl CsvRow for ActivityRow {
    const HEADER: &'static [&'static str] = &[
        "period",
        "active",
        "new",
        "returning",
        "reactivated",
        "churned",
        "complete",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.period.to_string(),
            self.active.to_string(),
            self.new.to_string(),
            self.returning.to_string(),
            self.reactivated.to_string(),
            self.churned.to_string(),
            self.complete.to_string(),
        ]
    }
}

impl CsvRow for SourcesRow {
    const HEADER: &'static [&'static str] = &[
        "period",
        "service_ping",
        "version_check_only",
        "never_pinged",
        "total",
        "service_ping_share",
        "complete",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.period.to_string(),
            self.service_ping.to_string(),
            self.version_check_only.to_string(),
            self.never_pinged.to_string(),
            self.total.to_string(),
            self.service_ping_share.to_string(),
            self.complete.to_string(),
        ]
    }
}

impl CsvRow for VersionSourcesRow {
    const HEADER: &'static [&'static str] = &[
        "period",
        "minor",
        "service_ping",
        "version_check_only",
        "total",
        "complete",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.period.to_string(),
            text(&self.minor),
            self.service_ping.to_string(),
            self.version_check_only.to_string(),
            self.total.to_string(),
            self.complete.to_string(),
        ]
    }
}

impl CsvRow for PenetrationRow {
    const HEADER: &'static [&'static str] = &[
        "period",
        "version",
        "installations",
        "at_or_above",
        "share",
        "complete",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.period.to_string(),
            text(&self.version),
            self.installations.to_string(),
            self.at_or_above.to_string(),
            self.share.to_string(),
            self.complete.to_string(),
        ]
    }
}

impl CsvRow for BehindRow {
    const HEADER: &'static [&'static str] =
        &["period", "minors_behind", "installations", "complete"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.period.to_string(),
            opt(&self.minors_behind),
            self.installations.to_string(),
            self.complete.to_string(),
        ]
    }
}

impl CsvRow for DaysBehindRow {
    const HEADER: &'static [&'static str] = &[
        "period",
        "days_behind",
        "min_days",
        "installations",
        "complete",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.period.to_string(),
            self.days_behind.unwrap_or_default().to_owned(),
            opt(&self.min_days),
            self.installations.to_string(),
            self.complete.to_string(),
        ]
    }
}

impl CsvRow for VulnerableShareRow {
    const HEADER: &'static [&'static str] =
        &["period", "installations", "danger", "critical", "complete"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.period.to_string(),
            self.installations.to_string(),
            self.danger.to_string(),
            self.critical.to_string(),
            self.complete.to_string(),
        ]
    }
}

impl CsvRow for UtilisationRow {
    const HEADER: &'static [&'static str] = &[
        "period",
        "tier",
        "installations",
        "active_users",
        "seats",
        "utilisation",
        "over_seats",
        "complete",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.period.to_string(),
            text(&self.tier),
            self.installations.to_string(),
            self.active_users.to_string(),
            self.seats.to_string(),
            self.utilisation.to_string(),
            self.over_seats.to_string(),
            self.complete.to_string(),
        ]
    }
}

impl CsvRow for LicenceRow {
    const HEADER: &'static [&'static str] = &[
        "uuid",
        "hostname",
        "tier",
        "plan",
        "seats",
        "active_users",
        "historical_max_users",
        "over_by",
        "starts_at",
        "expires_at",
        "days_to_expiry",
        "trial",
        "add_ons",
        "recorded_at",
        "usage_data_id",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            text(&self.uuid),
            text(&self.hostname),
            self.tier.to_string(),
            text(&opt(&self.plan)),
            opt(&self.seats),
            opt(&self.active_users),
            opt(&self.historical_max_users),
            opt(&self.over_by),
            opt(&self.starts_at),
            opt(&self.expires_at),
            opt(&self.days_to_expiry),
            self.trial.to_string(),
            text(&self.add_ons),
            self.recorded_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            self.usage_data_id.to_string(),
        ]
    }
}
