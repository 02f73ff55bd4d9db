//! The version check: `GET /check.svg`, `/check.png`, `/check@2x.png` and `/check.json`
//! (protocol section 1).
//!
//! The hottest path of the service, so it does as little as possible: decode `gitlab_info` on
//! the stack, read the verdict from the in-memory release snapshot, bump the recorder's
//! in-memory aggregate, and answer pre-rendered bytes. It never waits for the store.
//!
//! Images always answer 200 with an image, whatever the input (an error would make the badge
//! vanish from the admin page): unreadable input gets the grey `unknown` badge with
//! `Cache-Control: no-store`. `check.json` answers unreadable input with a 400 naming the
//! problem, as its only client (the GitLab server) just logs and retries later.

use actix_web::http::header::{self, HeaderValue};
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use chrono::Utc;

use crate::domain::check::{referer_host, version_from_query, CheckInputError};
use crate::domain::verdict::Severity;
use crate::domain::version::Version;
use crate::error::ApiError;
use crate::metrics::CheckRoute;
use crate::recorder::CheckKey;
use crate::render::{BadgeKind, ImageFormat, Scale};
use crate::routes::client::client_country;
use crate::state::AppState;

/// Registers the check routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // HEAD answers like GET without the body (actix drops it); other methods get 405.
    use crate::routes::fallback::not_allowed;
    cfg.service(
        web::resource("/check.svg")
            .route(web::get().to(svg))
            .route(web::head().to(svg))
            .default_service(not_allowed("GET, HEAD")),
    )
    .service(
        web::resource("/check.png")
            .route(web::get().to(png))
            .route(web::head().to(png))
            .default_service(not_allowed("GET, HEAD")),
    )
    .service(
        web::resource("/check@2x.png")
            .route(web::get().to(png_2x))
            .route(web::head().to(png_2x))
            .default_service(not_allowed("GET, HEAD")),
    )
    .service(
        web::resource("/check.json")
            .route(web::get().to(json))
            .route(web::head().to(json))
            .default_service(not_allowed("GET, HEAD")),
    );
}

// The image handlers borrow the state from the request instead of extracting `web::Data`
// (an `Arc` clone per request); `state()` cannot fail once the app is built.

/// `GET /check.svg?gitlab_info=…`
pub async fn svg(req: HttpRequest) -> HttpResponse {
    image(
        &req,
        state(&req),
        ImageFormat::Svg,
        Scale::ONE,
        CheckRoute::Svg,
    )
}

/// `GET /check.png?gitlab_info=…[&scale=N]` (N from 1 to 4, clamped; for high-DPI screens).
pub async fn png(req: HttpRequest) -> HttpResponse {
    let scale = scale_param(req.query_string());
    image(&req, state(&req), ImageFormat::Png, scale, CheckRoute::Png)
}

/// `GET /check@2x.png?gitlab_info=…`: the PNG at twice the pixel density.
pub async fn png_2x(req: HttpRequest) -> HttpResponse {
    image(
        &req,
        state(&req),
        ImageFormat::Png,
        Scale::TWO,
        CheckRoute::Png,
    )
}

fn state(req: &HttpRequest) -> &AppState {
    req.app_data::<web::Data<AppState>>()
        .expect("AppState is registered by Application::build")
}

/// `GET /check.json?gitlab_info=…`: the six-field verdict, or 400 naming the problem.
pub async fn json(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let check = &state.check;
    match version_from_query(req.query_string(), check.max_query_bytes) {
        Ok(version) => {
            let verdict = state.releases.current().verdict(&version);
            record(&req, &state, &version);
            state
                .metrics
                .count_check(CheckRoute::Json, badge_kind(verdict.severity));
            Ok(HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, check.cache_control.clone()))
                .json(verdict))
        }
        Err(err) => {
            reject(&state, &err, CheckRoute::Json);
            Err(ApiError::BadRequest(err.to_string()))
        }
    }
}

fn image(
    req: &HttpRequest,
    state: &AppState,
    format: ImageFormat,
    scale: Scale,
    route: CheckRoute,
) -> HttpResponse {
    let check = &state.check;
    let kind = match version_from_query(req.query_string(), check.max_query_bytes) {
        Ok(version) => {
            let kind = badge_kind(state.releases.load().severity(&version));
            record(req, state, &version);
            state.metrics.count_check(route, kind);
            kind
        }
        Err(err) => {
            reject(state, &err, route);
            BadgeKind::Unknown
        }
    };
    let badge = check.badges.get(kind, format, scale);
    if kind == BadgeKind::Unknown {
        // Not cached: the next request may carry a readable version.
        return HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, badge.content_type_header().clone()))
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .body(badge.bytes().clone());
    }
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tags| etag_matches(tags.as_bytes(), badge.etag_header().as_bytes()));
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, badge.etag_header().clone()))
        .insert_header((header::CACHE_CONTROL, check.cache_control.clone()));
    if not_modified {
        response.finish()
    } else {
        response
            .insert_header((header::CONTENT_TYPE, badge.content_type_header().clone()))
            .body(badge.bytes().clone())
    }
}

fn badge_kind(severity: Severity) -> BadgeKind {
    match severity {
        Severity::Success => BadgeKind::UpToDate,
        Severity::Warning => BadgeKind::UpdateAvailable,
        Severity::Danger => BadgeKind::UpdateAsap,
    }
}

fn reject(state: &AppState, err: &CheckInputError, route: CheckRoute) {
    state.metrics.count_check(route, BadgeKind::Unknown);
    state
        .metrics
        .check_rejected
        .with_label_values(&[err.reason()])
        .inc();
}

/// Counts the check in the recorder: version, Referer host, day and (with GeoIP) country.
/// The client address is used for the country lookup only and goes no further.
fn record(req: &HttpRequest, state: &AppState, version: &Version) {
    let host = req
        .headers()
        .get(header::REFERER)
        .and_then(|referer| referer_host(referer.as_bytes()));
    let country = client_country(req, state);
    let now = Utc::now();
    state.recorder.record(
        CheckKey {
            day: now.date_naive(),
            host: host.as_deref(),
            version,
            country,
        },
        now,
    );
}

/// The `scale` parameter of `check.png`; absent or unreadable means 1 (an image, not an
/// error, is what the admin page needs).
fn scale_param(query: &str) -> Scale {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("scale="))
        .and_then(|value| value.parse::<u32>().ok())
        .map_or(Scale::ONE, Scale::clamped)
}

/// True when an `If-None-Match` value (`*`, or a list of possibly weak tags) names `etag`.
/// Weak comparison, as RFC 9110 prescribes for `If-None-Match`.
fn etag_matches(header: &[u8], etag: &[u8]) -> bool {
    header.split(|&b| b == b',').any(|candidate| {
        let candidate = candidate.trim_ascii();
        let candidate = candidate.strip_prefix(b"W/").unwrap_or(candidate);
        candidate == b"*" || candidate == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let tag = b"\"abc\"";
        assert!(etag_matches(b"\"abc\"", tag));
        assert!(etag_matches(b"W/\"abc\"", tag));
        assert!(etag_matches(b"\"x\", \"abc\"", tag));
        assert!(etag_matches(b"*", tag));
        assert!(!etag_matches(b"\"abcd\"", tag));
        assert!(!etag_matches(b"abc", tag));
        assert!(!etag_matches(b"", tag));
    }

    #[test]
    fn scale_is_clamped_and_defaults_to_one() {
        assert_eq!(scale_param("gitlab_info=x&scale=2"), Scale::TWO);
        assert_eq!(scale_param("scale=0"), Scale::ONE);
        assert_eq!(scale_param("scale=99"), Scale::clamped(99));
        assert_eq!(scale_param("scale=two"), Scale::ONE);
        assert_eq!(scale_param("scale=-1"), Scale::ONE);
        assert_eq!(scale_param(""), Scale::ONE);
    }
}
