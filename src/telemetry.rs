//! Logging: a tracing subscriber and request spans that never carry the client's IP.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::HttpMessage;
use tracing::{Level, Span};
use tracing_actix_web::{RequestId, RootSpanBuilder};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (`RUST_LOG` filters; default `info`). Safe to call twice.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Request spans with method, route, status and request id, and deliberately without the
/// client IP, user agent or Referer that the default builder records: the protocol
/// promises that nothing but version and hostname is collected, and logs are stored too.
/// The check routes do not pass through it at all (see `routes::configure_hot`): they are
/// counted in `/metrics` instead.
pub struct PrivateRootSpan;

impl RootSpanBuilder for PrivateRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request.extensions().get::<RequestId>().copied();
        let route = request
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        let request_id = request_id.map(|id| id.to_string()).unwrap_or_default();
        tracing::info_span!(
            "http",
            http.method = %request.method(),
            http.route = %route,
            http.status = tracing::field::Empty,
            request_id = %request_id,
        )
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let status = match outcome {
            Ok(response) => response.response().status(),
            Err(error) => error.as_response_error().status_code(),
        };
        span.record("http.status", status.as_u16());
        let _entered = span.enter();
        // The access record only: a failure's cause is logged once, where the error becomes
        // the answer (`error::ApiError`, `console::auth::ConsoleError`), inside this span.
        tracing::event!(Level::INFO, http.status = status.as_u16(), "request done");
    }
}

/// An error and its chain of sources, `outer: inner: innermost`, for logs.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
