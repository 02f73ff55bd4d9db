//! Issue 8 (hardening), defects 9, 10 and 14: methods, framework errors as the JSON
//! envelope, and security headers.

use crate::check::check_path;
use crate::helpers::TestApp;
use base64::Engine;
use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};
use version_app::auth::Scope;

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn assert_envelope(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert!(
        header(&response, "content-type").starts_with("application/json"),
        "{}",
        header(&response, "content-type")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    body
}

/// Defect 9: HEAD on image routes answers like GET without a body; other methods get 405
/// with `Allow` and the envelope; unknown paths a JSON 404.
#[tokio::test]
async fn head_answers_like_get_and_other_methods_get_405_with_allow() {
    let app = TestApp::spawn().await;
    for (route, mime) in [
        ("check.svg", "image/svg+xml"),
        ("check.png", "image/png"),
        ("check@2x.png", "image/png"),
        ("check.json", "application/json"),
    ] {
        let path = check_path(route, "16.0.0");
        let get = app.get(&path).await;
        let head = app.client.head(app.url(&path)).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {route}");
        assert_eq!(header(&head, "content-type"), header(&get, "content-type"));
        assert!(header(&head, "content-type").starts_with(mime));
        assert_eq!(header(&head, "etag"), header(&get, "etag"));
        assert!(head.bytes().await.unwrap().is_empty());
    }
    let cases = [
        ("/check.svg", "GET, HEAD"),
        ("/check.png", "GET, HEAD"),
        ("/check.json", "GET, HEAD"),
        ("/usage_data", "POST"),
        ("/usage_ping_errors", "POST"),
        ("/usage_ping_metadata", "POST"),
        ("/api/v1/versions", "GET, POST"),
        ("/api/v1/versions/16.7.2", "PATCH"),
        ("/-/health", "GET, HEAD"),
        ("/metrics", "GET, HEAD"),
    ];
    let methods = [
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::from_bytes(b"FROB").unwrap(),
    ];
    for (path, allow) in cases {
        for method in methods.clone() {
            if allow.contains(method.as_str()) {
                continue;
            }
            let response = app
                .client
                .request(method.clone(), app.url(path))
                .send()
                .await
                .unwrap();
            assert_eq!(header(&response, "allow"), allow, "{method} {path}");
            assert_envelope(response, 405, "method_not_allowed").await;
        }
    }
    let missing = app.get("/no/such/route").await;
    assert_envelope(missing, 404, "not_found").await;
    app.stop().await;
}

/// Defect 10: the framework's own errors on JSON routes are the envelope too.
#[tokio::test]
async fn framework_errors_on_json_routes_are_the_envelope() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::ReleasesWrite);
    let huge = "x".repeat(300 * 1024);
    let post = app
        .client
        .post(app.url("/api/v1/versions"))
        .header("PRIVATE-TOKEN", &token)
        .body(format!("version=99.0.0&details={huge}"))
        .send()
        .await
        .unwrap();
    assert_envelope(post, 413, "payload_too_large").await;
    let patch = app
        .client
        .patch(app.url("/api/v1/versions/16.7.2"))
        .header("PRIVATE-TOKEN", &token)
        .header("Content-Type", "application/json")
        .body(format!(
            "{{\"security\":\"critical\",\"details\":\"{huge}\"}}"
        ))
        .send()
        .await
        .unwrap();
    assert_envelope(patch, 413, "payload_too_large").await;
    let bad_json = app
        .client
        .patch(app.url("/api/v1/versions/16.7.2"))
        .header("PRIVATE-TOKEN", &token)
        .body("{\"security\":")
        .send()
        .await
        .unwrap();
    assert_envelope(bad_json, 400, "bad_request").await;
    let bad_query = app.get("/api/v1/versions?per_page=%FF%FE").await;
    assert_envelope(bad_query, 400, "bad_request").await;
    app.stop().await;
}

/// Defect 14: nosniff everywhere; a strict CSP (no inline code unless hashed), framing and
/// referrer rules on HTML.
#[tokio::test]
async fn html_gets_a_strict_policy_and_every_response_nosniff() {
    let app = TestApp::spawn().await;
    for path in [
        check_path("check.svg", "16.0.0"),
        check_path("check.png", "16.0.0"),
        check_path("check.json", "16.0.0"),
        "/metrics".into(),
        "/-/health".into(),
        "/api/v1/versions".into(),
        "/nowhere".into(),
    ] {
        let response = app.get(&path).await;
        assert_eq!(
            header(&response, "x-content-type-options"),
            "nosniff",
            "{path}"
        );
    }
    let page = app.get("/usage_data/new").await;
    assert!(header(&page, "content-type").starts_with("text/html"));
    let csp = header(&page, "content-security-policy");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    assert_eq!(header(&page, "x-frame-options"), "DENY");
    assert_eq!(header(&page, "referrer-policy"), "no-referrer");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    // Every inline style block of the page as served is allowed by its hash, computed here.
    let html = page.text().await.unwrap();
    let mut rest = html.as_str();
    let mut blocks = 0;
    while let Some(start) = rest.find("<style>") {
        let after = &rest[start + 7..];
        let end = after.find("</style>").unwrap();
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&after[..end]));
        assert!(csp.contains(&format!("'sha256-{hash}'")), "{csp}");
        blocks += 1;
        rest = &after[end..];
    }
    assert!(blocks >= 1);
    assert!(!html.contains("<script"), "no script on the upload form");
    app.stop().await;
}
