//! The version-check routes as GitLab instances call them: every state against the bundled
//! release history, every encoding of `gitlab_info`, every class of bad input, 304s.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::Value;

use crate::helpers::TestApp;

/// `gitlab_info` exactly as GitLab builds it: Ruby's `Base64.urlsafe_encode64`, padded.
pub fn gitlab_info(version: &str) -> String {
    URL_SAFE.encode(format!(r#"{{"version":"{version}"}}"#))
}

/// The check URL path for a route and a version.
pub fn check_path(route: &str, version: &str) -> String {
    format!("/{route}?gitlab_info={}", gitlab_info(version))
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// Versions from `assets/releases.csv` and what they must show.
const STATES: [(&str, &str, bool, &str); 5] = [
    // newest release
    ("19.1.1", "success", false, "up-to-date"),
    // has the 2026-06-23 security fix of its line; 19.1.1 is newer
    ("19.0.3", "warning", false, "update available"),
    // misses the 2026-06-23 non-critical security release (19.1.1)
    ("19.1.0", "danger", false, "update asap"),
    // misses the 2025-03-12 critical release (17.9.2)
    ("17.9.1", "danger", true, "update asap"),
    // enterprise edition suffix is ignored
    ("17.9.1-ee", "danger", true, "update asap"),
];

#[tokio::test]
async fn json_answers_each_state_with_all_six_fields() {
    let app = TestApp::spawn().await;
    for (version, severity, critical, _) in STATES {
        let response = app.get(&check_path("check.json", version)).await;
        assert_eq!(response.status(), 200, "{version}");
        assert!(header(&response, "content-type").starts_with("application/json"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["severity"], severity, "{version}: {body}");
        assert_eq!(
            body["critical_vulnerability"], critical,
            "{version}: {body}"
        );
        assert_eq!(body["latest_version"], "19.1.1");
        let targets = body["latest_stable_versions"].as_array().unwrap();
        assert_eq!(targets.len(), 3, "{body}");
        assert_eq!(targets[0], "19.1.1");
        assert!(body["details"].is_string());
        assert!(body.get("latest_stable_version_of_minor").is_some());
        if severity == "danger" {
            assert!(!body["details"].as_str().unwrap().is_empty(), "{body}");
        }
        if critical {
            // 17.9 is no longer maintained: no safe patch of its own line exists.
            assert!(body["latest_stable_version_of_minor"].is_null(), "{body}");
            assert!(
                body["details"].as_str().unwrap().contains("critical"),
                "{body}"
            );
        }
        if version == "19.1.0" {
            assert_eq!(body["latest_stable_version_of_minor"], "19.1.1");
        }
    }
}

#[tokio::test]
async fn images_show_each_state() {
    let app = TestApp::spawn().await;
    for (version, _, _, message) in STATES {
        let svg = app.get(&check_path("check.svg", version)).await;
        assert_eq!(svg.status(), 200);
        assert_eq!(header(&svg, "content-type"), "image/svg+xml");
        assert!(header(&svg, "cache-control").contains("max-age=3600"));
        assert!(header(&svg, "etag").starts_with('"'));
        let text = svg.text().await.unwrap();
        assert!(
            text.contains(&format!("<title>version: {message}</title>")),
            "{version}: {text}"
        );

        let png = app.get(&check_path("check.png", version)).await;
        assert_eq!(png.status(), 200);
        assert_eq!(header(&png, "content-type"), "image/png");
        assert!(png.bytes().await.unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));
    }
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

#[tokio::test]
async fn png_comes_in_high_dpi_scales() {
    let app = TestApp::spawn().await;
    let info = gitlab_info("19.1.1");
    let get = |path: String| {
        let app = &app;
        async move { app.get(&path).await.bytes().await.unwrap() }
    };
    let one = get(format!("/check.png?gitlab_info={info}")).await;
    let two = get(format!("/check.png?gitlab_info={info}&scale=2")).await;
    let at_2x = get(format!("/check@2x.png?gitlab_info={info}")).await;
    let huge = get(format!("/check.png?gitlab_info={info}&scale=1000")).await;
    let junk = get(format!("/check.png?scale=abc&gitlab_info={info}")).await;
    let (w1, h1) = png_size(&one);
    assert_eq!(h1, 20);
    assert_eq!(png_size(&two), (w1 * 2, 40));
    assert_eq!(two, at_2x);
    assert_eq!(png_size(&huge), (w1 * 4, 80), "scale is capped at 4");
    assert_eq!(junk, one);
}

#[tokio::test]
async fn every_encoding_real_clients_send_is_read() {
    let app = TestApp::spawn().await;
    // Encodes to both `+` and `/` (standard) or `-` and `_` (urlsafe), with padding.
    let json = r#"{"version":"19.0.3","note":"????>"}"#;
    let mut infos = Vec::new();
    for engine in [&URL_SAFE, &URL_SAFE_NO_PAD, &STANDARD, &STANDARD_NO_PAD] {
        let encoded = engine.encode(json);
        let escaped =
            percent_encoding::utf8_percent_encode(&encoded, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        infos.push(encoded);
        infos.push(escaped);
    }
    assert!(infos.iter().any(|i| i.contains('+')) && infos.iter().any(|i| i.contains('_')));
    assert!(infos.iter().any(|i| i.contains("%3D")));
    for info in infos {
        let response = app.get(&format!("/check.json?gitlab_info={info}")).await;
        assert_eq!(response.status(), 200, "{info}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["severity"], "warning", "{info}");
        let svg = app.get(&format!("/check.svg?gitlab_info={info}")).await;
        assert!(
            svg.text().await.unwrap().contains("update available"),
            "{info}"
        );
    }
    // The protocol's own example, byte for byte.
    let response = app
        .get("/check.json?gitlab_info=eyJ2ZXJzaW9uIjoiMTEuMC4wIn0=")
        .await;
    assert_eq!(response.status(), 200);
}

/// Each bad-input class of the issue: (query, words the JSON message must contain).
pub fn bad_queries() -> Vec<(String, &'static str)> {
    let b64 = |json: &str| URL_SAFE.encode(json);
    vec![
        (String::new(), "missing"),
        ("foo=bar".into(), "missing"),
        ("gitlab_info=".into(), "empty"),
        ("gitlab_info".into(), "empty"),
        (format!("gitlab_info={}", "A".repeat(600)), "longer than"),
        (
            format!("gitlab_info={}", "A".repeat(5000)),
            "query string is 5012 bytes",
        ),
        ("gitlab_info=not*base64!".into(), "not base64"),
        ("gitlab_info=%FF%FE%00".into(), "not base64"),
        (format!("gitlab_info={}", b64("hello world")), "JSON"),
        (format!("gitlab_info={}", b64("[\"16.0.0\"]")), "array"),
        (format!("gitlab_info={}", b64("{}")), "no `version`"),
        (
            format!("gitlab_info={}", b64(r#"{"edition":"EE"}"#)),
            "no `version`",
        ),
        (
            format!("gitlab_info={}", b64(r#"{"version":16.1}"#)),
            "must be a string, got a JSON number",
        ),
        (
            format!("gitlab_info={}", b64(r#"{"version":null}"#)),
            "must be a string, got a JSON null",
        ),
        (format!("gitlab_info={}", b64(r#"{"version":""}"#)), "empty"),
        (
            format!("gitlab_info={}", b64(r#"{"version":"latest"}"#)),
            "MAJOR.MINOR.PATCH",
        ),
        (
            format!(
                "gitlab_info={}",
                b64(r#"{"version":"<script>alert(1)</script>"}"#)
            ),
            "MAJOR.MINOR.PATCH",
        ),
    ]
}

#[tokio::test]
async fn bad_input_gets_a_grey_image_or_a_named_400() {
    let app = TestApp::spawn().await;
    for (query, words) in bad_queries() {
        let json = app.get(&format!("/check.json?{query}")).await;
        assert_eq!(json.status(), 400, "{query}");
        let body: Value = json.json().await.unwrap();
        assert_eq!(body["error"], "bad_request", "{query}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(words), "{query}: {message}");

        for route in ["check.svg", "check.png", "check@2x.png"] {
            let image = app.get(&format!("/{route}?{query}")).await;
            assert_eq!(image.status(), 200, "{route}?{query}");
            assert_eq!(
                header(&image, "cache-control"),
                "no-store",
                "{route}?{query}"
            );
            assert!(image.headers().get("etag").is_none());
            let png = route.ends_with(".png");
            let expected = if png { "image/png" } else { "image/svg+xml" };
            assert_eq!(header(&image, "content-type"), expected);
            let bytes = image.bytes().await.unwrap();
            if png {
                assert!(bytes.starts_with(b"\x89PNG"));
            } else {
                let text = String::from_utf8(bytes.to_vec()).unwrap();
                assert!(text.contains("<title>version: unknown</title>"), "{text}");
            }
        }
    }
}

#[tokio::test]
async fn if_none_match_gets_304_and_still_counts_the_check() {
    let app = TestApp::spawn().await;
    let path = check_path("check.svg", "19.1.1");
    let first = app.get(&path).await;
    let etag = header(&first, "etag").to_owned();
    for validator in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
    ] {
        let again = app
            .client
            .get(app.url(&path))
            .header("If-None-Match", validator.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{validator}");
        assert_eq!(header(&again, "etag"), etag);
        assert!(header(&again, "cache-control").contains("max-age"));
        assert!(again.bytes().await.unwrap().is_empty());
    }
    // A stale validator (the verdict changed since) gets the new image.
    let stale = app
        .client
        .get(app.url(&check_path("check.svg", "19.0.3")))
        .header("If-None-Match", etag.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    assert_ne!(header(&stale, "etag"), etag);
    // PNG ETags differ by scale.
    let png1 = app.get(&check_path("check.png", "19.1.1")).await;
    let png2 = app.get(&check_path("check@2x.png", "19.1.1")).await;
    assert_ne!(header(&png1, "etag"), header(&png2, "etag"));

    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"version_app_check_requests_total{route="check.svg",severity="success"} 4"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn metrics_count_routes_severities_and_rejections() {
    let app = TestApp::spawn().await;
    app.get(&check_path("check.json", "17.9.1")).await;
    app.get(&check_path("check.png", "19.0.3")).await;
    app.get("/check.svg?gitlab_info=").await;
    app.get("/check.json").await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for line in [
        r#"version_app_check_requests_total{route="check.json",severity="danger"} 1"#,
        r#"version_app_check_requests_total{route="check.png",severity="warning"} 1"#,
        r#"version_app_check_requests_total{route="check.svg",severity="unknown"} 1"#,
        r#"version_app_check_requests_total{route="check.json",severity="unknown"} 1"#,
        r#"version_app_check_rejected_total{reason="empty"} 1"#,
        r#"version_app_check_rejected_total{reason="missing"} 1"#,
        "version_app_check_records_dropped_total 0",
        "version_app_check_flush_seconds_count",
        "version_app_check_flush_failures_total 0",
        "version_app_check_buffer_keys",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
}
