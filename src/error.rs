//! One error type for JSON handlers, one envelope on the wire:
//! `{"error": "<code>", "message": "<what is wrong>"}`. A 500 never carries internal text;
//! its cause is logged once, here, at the boundary (so is a store outage's).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::db::DbError;

/// Seconds a client is asked to wait when the store is unavailable.
pub const RETRY_AFTER_SECS: u64 = 60;

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; the message names the problem.
    #[error("{0}")]
    BadRequest(String),
    /// No valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials without the needed scope.
    #[error("{0}")]
    Forbidden(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what exists (e.g. a duplicate release).
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but semantically wrong input.
    #[error("{0}")]
    Unprocessable(String),
    /// The body is larger than the configured cap.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body's media type is not one this route reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The store cannot take the request now; the client should retry later. Carries the
    /// store's error when there is one, logged once when the answer is made.
    #[error("the store is unavailable, retry later")]
    Unavailable(#[source] Option<DbError>),
    /// The server is at capacity (not the store's fault); the client should retry later.
    #[error("{0}")]
    Busy(String),
    /// The request body stalled, trickled or took too long; the connection is closed.
    #[error("{0}")]
    RequestTimeout(String),
    /// The method is not one the route answers; `Allow` lists those it does.
    #[error("{message}")]
    MethodNotAllowed {
        /// The `Allow` header value.
        allow: &'static str,
        /// What the client is told.
        message: String,
    },
    /// A bug or unexpected failure; details go to the log only.
    #[error("internal error")]
    Internal(String),
}

/// The JSON error envelope.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// Machine-readable code, e.g. `bad_request`.
    pub error: &'a str,
    /// Human-readable explanation naming the problem.
    pub message: String,
}

impl ApiError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unprocessable(_) => "unprocessable_entity",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Busy(_) => "busy",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

// `Chain` lives in `telemetry` (a leaf module), so the store layer can use it without
// importing this module, which imports the store's `DbError`.
pub use crate::telemetry::Chain;

/// No logging here: the failure is logged once, when the answer is made
/// ([`ResponseError::error_response`]).
impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        if err.is_unavailable() {
            ApiError::Unavailable(Some(err))
        } else {
            ApiError::Internal(Chain(&err).to_string())
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) | ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        // The one log line of a failure (the request logger records only the status).
        match self {
            ApiError::Internal(cause) => tracing::error!(error.cause = %cause, "request failed"),
            ApiError::Unavailable(Some(cause)) => {
                tracing::warn!(error.cause = %Chain(cause), "store unavailable");
            }
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unavailable(_) | ApiError::Busy(_) => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
            }
            // The rest of the body is never read: the connection cannot be reused.
            ApiError::RequestTimeout(_) => {
                response.force_close();
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                response.insert_header((header::ALLOW, *allow));
            }
            _ => {}
        }
        response.json(ErrorBody {
            error: self.code(),
            message: self.to_string(),
        })
    }
}

/// Turns actix's own extractor failures (bad query string, JSON, sizes) into the envelope,
/// so every JSON route answers errors the same way.
pub fn json_extractor_error(err: impl std::fmt::Display, status: StatusCode) -> actix_web::Error {
    let api = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(err.to_string()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(err.to_string()),
        _ => ApiError::BadRequest(err.to_string()),
    };
    api.into()
}
