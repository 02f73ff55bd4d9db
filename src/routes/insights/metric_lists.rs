//! `GET /api/v1/insights/metrics` (the catalogue of key paths) and
//! `GET /api/v1/insights/metrics/{key_path}/top` (top, growing and declining installations).

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{NaiveDate, Utc};
use serde::Serialize;

use super::output::{opt, respond, text, CsvRow};
use super::params::Params;
use crate::domain::insights::periods::PeriodKind;
use crate::domain::insights::time_frame::TimeFrame;
use crate::error::ApiError;
use crate::insights::metric_lists::{
    self as lists, CatalogueEntry, CatalogueQuery, TopRow, MAX_PER_PAGE,
};
use crate::insights::report::MetricError;
use crate::state::AppState;

/// Parameters of the catalogue.
pub const CATALOGUE_PARAMS: &[&str] = &["q", "time_frame", "source", "page", "per_page", "format"];
/// Catalogue rows per page unless asked otherwise.
pub const DEFAULT_PER_PAGE: usize = 100;
/// Parameters of the top lists.
pub const TOP_PARAMS: &[&str] = &["period", "at", "list", "include_internal", "format"];

/// A whole number parameter in `1..=max`.
fn count(params: &Params, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "`{name}` must be a whole number from 1 to {max}, got `{t}`"
            ))),
        },
    }
}

/// The catalogue search of a query string.
pub fn catalogue_query(params: &Params) -> Result<CatalogueQuery, ApiError> {
    let time_frame = params
        .get("time_frame")
        .map(|t| {
            t.parse::<TimeFrame>()
                .map_err(|e| ApiError::BadRequest(format!("`time_frame`: {e}")))
        })
        .transpose()?;
    let source = match params.get("source") {
        None => None,
        Some("definition") => Some("definition"),
        Some("key_path") => Some("key_path"),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "`source` must be definition or key_path, got `{other}`"
            )))
        }
    };
    let q = params.get("q").unwrap_or_default();
    if q.len() > 200 {
        return Err(ApiError::BadRequest("`q` may be at most 200 bytes".into()));
    }
    Ok(CatalogueQuery {
        q: q.to_owned(),
        time_frame,
        source,
        page: count(params, "page", 1, 1_000_000)?,
        per_page: count(params, "per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)?,
    })
}

/// `period`, `at` and `list` of the top lists.
pub fn top_params(
    params: &Params,
) -> Result<(PeriodKind, Option<NaiveDate>, Option<&'static str>), ApiError> {
    let kind: PeriodKind = match params.get("period") {
        None => PeriodKind::Month,
        Some(t) => t.parse().map_err(ApiError::BadRequest)?,
    };
    let at = params
        .get("at")
        .map(|t| {
            NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| {
                ApiError::BadRequest(format!("`at` must be a YYYY-MM-DD date, got `{t}`"))
            })
        })
        .transpose()?;
    let list = match params.get("list") {
        None => None,
        Some("top") => Some("top"),
        Some("growing") => Some("growing"),
        Some("declining") => Some("declining"),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "`list` must be top, growing or declining, got `{other}`"
            )))
        }
    };
    Ok((kind, at, list))
}

impl CsvRow for CatalogueEntry {
    const HEADER: &'static [&'static str] = &[
        "key_path",
        "time_frame",
        "time_frame_source",
        "first_version",
        "last_version",
        "installations_last_month",
        "description",
        "product_group",
        "status",
        "tier",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            text(&self.key_path),
            self.time_frame.to_owned(),
            self.time_frame_source.to_owned(),
            text(&opt(&self.first_version)),
            text(&opt(&self.last_version)),
            self.installations_last_month.to_string(),
            text(&opt(&self.description)),
            text(&opt(&self.product_group)),
            text(&opt(&self.status)),
            text(&opt(&self.tier)),
        ]
    }
}

impl CsvRow for TopRow {
    const HEADER: &'static [&'static str] = &[
        "list",
        "rank",
        "uuid",
        "hostname",
        "value",
        "previous_value",
        "change",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.list.to_owned(),
            self.rank.to_string(),
            text(&self.uuid),
            text(&self.hostname),
            self.value.to_string(),
            opt(&self.previous_value),
            opt(&self.change),
        ]
    }
}

/// `GET /api/v1/insights/metrics`.
pub async fn catalogue(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    super::require_access(&state, &req).await?;
    let params = Params::parse(req.query_string(), CATALOGUE_PARAMS)?;
    let format = params.format()?;
    let query = catalogue_query(&params)?;
    let today = Utc::now().date_naive();
    let q = query.clone();
    let page = state
        .read_db
        .run(move |conn| lists::catalogue(conn, &q, today))
        .await?;
    #[derive(Serialize)]
    struct Meta {
        total: usize,
        page: usize,
        per_page: usize,
        month: NaiveDate,
    }
    let meta = Meta {
        total: page.total,
        page: query.page,
        per_page: query.per_page,
        month: page.month,
    };
    respond(format, &page.rows, meta, None)
}

/// `GET /api/v1/insights/metrics/{key_path}/top`.
pub async fn top(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    super::require_access(&state, &req).await?;
    let key_path = path.into_inner();
    let params = Params::parse(req.query_string(), TOP_PARAMS)?;
    let format = params.format()?;
    let (kind, at, list) = top_params(&params)?;
    let include_internal = params.include_internal()?;
    let today = Utc::now().date_naive();
    let key = key_path.clone();
    let cache = state.insights_cache.clone();
    let lists = state
        .read_db
        .run(move |conn| {
            match crate::insights::series::top_lists(
                conn,
                &cache,
                &key,
                kind,
                at,
                include_internal,
                today,
            ) {
                Ok(l) => Ok(Ok(l)),
                Err(MetricError::UnknownKey(k)) => Ok(Err(k)),
                Err(MetricError::Db(e)) => Err(e),
            }
        })
        .await?
        .map_err(|k| ApiError::NotFound(format!("unknown metric key path `{k}`")))?;
    let rows: Vec<TopRow> = lists
        .rows
        .into_iter()
        .filter(|r| list.is_none_or(|l| l == r.list))
        .collect();
    #[derive(Serialize)]
    struct Meta {
        key_path: String,
        period: &'static str,
        period_start: NaiveDate,
        previous_start: NaiveDate,
    }
    let meta = Meta {
        key_path,
        period: kind.as_str(),
        period_start: lists.period_start,
        previous_start: lists.previous_start,
    };
    respond(format, &rows, meta, None)
}
