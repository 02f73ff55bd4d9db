//! Answers for what no handler takes (issue 8, defects 9 and 10): a method a route does not
//! answer gets 405 with `Allow`, an unknown path 404, and the framework's own extractor
//! failures (bad JSON, bad query, bad path) the JSON error envelope like every other error.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError, UrlencodedError};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use crate::error::{json_extractor_error, ApiError};

/// The default service of a resource: 405 naming the methods it does answer.
pub fn not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(move |req: HttpRequest| async move {
        ApiError::MethodNotAllowed {
            allow,
            message: format!(
                "{} is not allowed on {}; allowed: {allow}",
                req.method(),
                req.path()
            ),
        }
        .error_response()
    })
}

/// The application's default service: a JSON 404 naming the path.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound(format!("no route for {} {}", req.method(), req.path())).error_response()
}

/// Extractor settings whose failures answer the JSON envelope.
pub fn extractor_configs(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default().error_handler(|err: JsonPayloadError, _| {
            let status = err.status_code();
            json_extractor_error(err, status)
        }),
    )
    .app_data(
        web::QueryConfig::default().error_handler(|err: QueryPayloadError, _| {
            let status = err.status_code();
            json_extractor_error(err, status)
        }),
    )
    .app_data(
        web::PathConfig::default().error_handler(|err: PathError, _| {
            let status = err.status_code();
            json_extractor_error(err, status)
        }),
    )
    .app_data(
        web::FormConfig::default().error_handler(|err: UrlencodedError, _| {
            let status = err.status_code();
            json_extractor_error(err, status)
        }),
    );
}
