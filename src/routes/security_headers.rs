//! Security headers on every response (issue 8, defect 14), as one middleware wrapping the
//! whole application, so pages added later (the console) get them without doing anything.
//!
//! - All responses: `X-Content-Type-Options: nosniff`.
//! - HTML responses: a strict `Content-Security-Policy` (nothing but same-origin images,
//!   styles and form posts; no script at all; inline styles only when their hash is listed),
//!   `frame-ancestors 'none'` with `X-Frame-Options: DENY` for older browsers, and
//!   `Referrer-Policy: no-referrer`.
//!
//! A handler that sets one of these headers itself keeps its own value.

use std::sync::OnceLock;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The upload pages' layout; its one inline `<style>` block is allowed by hash.
const LAYOUT: &str = include_str!("../../assets/templates/usage_data_layout.html");

/// The `'sha256-…'` source of every inline `<style>` block in `html`.
pub fn style_hashes(html: &str) -> Vec<String> {
    let mut hashes = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<style>") {
        let after = &rest[start + "<style>".len()..];
        let Some(end) = after.find("</style>") else {
            break;
        };
        let digest = Sha256::digest(&after.as_bytes()[..end]);
        hashes.push(format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        ));
        rest = &after[end..];
    }
    hashes
}

/// The policy sent with every HTML page.
pub fn content_security_policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        format!(
            "default-src 'none'; img-src 'self' data:; style-src 'self' {}; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
            style_hashes(LAYOUT).join(" ")
        )
    })
}

fn set_default(headers: &mut header::HeaderMap, name: HeaderName, value: HeaderValue) {
    if !headers.contains_key(&name) {
        headers.insert(name, value);
    }
}

/// The middleware: `App::new().wrap(from_fn(security_headers::add))`.
pub async fn add(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    set_default(
        headers,
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html {
        if let Ok(policy) = HeaderValue::from_str(content_security_policy()) {
            set_default(headers, header::CONTENT_SECURITY_POLICY, policy);
        }
        set_default(
            headers,
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        );
        set_default(
            headers,
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    Ok(response)
}
