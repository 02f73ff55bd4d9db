//! Issue 8 (hardening), defects 3, 4 and 11: colliding metric paths, NUL characters,
//! over-long hostnames, absurd dates and oversized version numbers get the same answer on
//! both stores, and never a 500.

use crate::helpers::TestApp;
use crate::usage_data::{minimal_with, post_json};
use diesel::prelude::*;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use version_app::auth::Scope;
use version_app::db::schema::{metric_keys, metric_values, usage_data};

async fn post(app: &TestApp, path: &str, body: String) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(path))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The value stored for `key` in the one submission with `uuid`.
fn stored_metric(app: &TestApp, uuid: &str, key: &str) -> Vec<f64> {
    let db = app.store();
    let mut conn = db.get().unwrap();
    version_app::with_conn!(&mut conn, |c| metric_values::table
        .inner_join(metric_keys::table.on(metric_keys::id.eq(metric_values::key_id)))
        .inner_join(usage_data::table.on(usage_data::id.eq(metric_values::usage_data_id)))
        .filter(usage_data::uuid.eq(uuid))
        .filter(metric_keys::key_path.eq(key))
        .select(metric_values::value)
        .load::<f64>(c)
        .unwrap())
}

/// Defect 3: a repeated key and a dotted key colliding with a nested path: last value wins.
#[tokio::test]
async fn duplicate_and_colliding_metric_paths_keep_the_last_value() {
    let app = TestApp::spawn().await;
    let repeated = r#"{"uuid":"dup-1","recorded_at":"2026-01-09T10:00:00Z","version":"18.9.0","counts":{"a":1,"a":2}}"#;
    let (status, answer) = post(&app, "/usage_data", repeated.into()).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(stored_metric(&app, "dup-1", "counts.a"), vec![2.0]);

    let colliding = r#"{"uuid":"dup-2","recorded_at":"2026-01-09T10:00:00Z","version":"18.9.0","a.b":1,"a":{"b":2}}"#;
    let (status, answer) = post(&app, "/usage_data", colliding.into()).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(stored_metric(&app, "dup-2", "a.b"), vec![2.0]);
    app.stop().await;
}

fn assert_names(status: u16, answer: &Value, expected_status: u16, field: &str) {
    assert_eq!(status, expected_status, "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains(field), "{field}: {answer}");
    assert!(answer["error"].is_string(), "{answer}");
}

/// Defect 4: a NUL in any stored string, a hostname over 255 characters and a `recorded_at`
/// outside 1970..9999 are refused with a 400 naming the field, on both stores.
#[tokio::test]
async fn nul_long_hostnames_and_absurd_dates_are_refused_alike_on_both_stores() {
    let app = TestApp::spawn().await;
    let nul = "a\0b";
    let payload_cases = [
        (json!({"uuid": nul}), "uuid"),
        (json!({"hostname": nul}), "hostname"),
        (json!({"version": "18.9.0\0"}), "version"),
        (json!({"edition": nul}), "edition"),
        (json!({"licensee": {"Name": nul}}), "licensee"),
        (json!({"installation_type": nul}), "installation_type"),
        (json!({"counts": {"is\0sues": 3}}), "metric key"),
        (json!({"hostname": "h".repeat(2_800)}), "hostname"),
        (
            json!({"recorded_at": "-5000-01-01 00:00:00 UTC"}),
            "recorded_at",
        ),
        (
            json!({"recorded_at": "0001-01-01T00:00:00Z"}),
            "recorded_at",
        ),
    ];
    for (change, field) in payload_cases {
        let response = post_json(&app, minimal_with(change.clone())).await;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        assert_names(status, &answer, 400, field);
    }
    // At the cap itself: accepted.
    let ok = post_json(&app, minimal_with(json!({"hostname": "h".repeat(255)}))).await;
    assert_eq!(ok.status(), 201);

    let error = |field: &str| {
        let mut e = json!({"time": "2026-01-08T21:54:39.000Z", "uuid": "u", "hostname": "h",
            "version": "18.9.0", "message": "m", "elapsed": 1});
        e[field] = json!(nul);
        json!({ "error": e }).to_string()
    };
    for field in ["uuid", "hostname", "version", "message", "time"] {
        let (status, answer) = post(&app, "/usage_ping_errors", error(field)).await;
        assert_names(status, &answer, 400, &format!("error.{field}"));
    }
    let long_host = json!({"error": {"uuid": "u", "hostname": "h".repeat(3_000)}}).to_string();
    let (status, answer) = post(&app, "/usage_ping_errors", long_host).await;
    assert_names(status, &answer, 400, "error.hostname");
    let metadata = [
        (
            json!({"metadata": {"uuid": nul, "metrics": []}}),
            "metadata.uuid",
        ),
        (
            json!({"metadata": {"metrics": [{"name": nul, "time_elapsed": 1}]}}),
            "metadata.metrics[0].name",
        ),
        (
            json!({"metadata": {"metrics": [{"name": "n", "error": nul}]}}),
            "metadata.metrics[0].error",
        ),
    ];
    for (body, field) in metadata {
        let (status, answer) = post(&app, "/usage_ping_metadata", body.to_string()).await;
        assert_names(status, &answer, 400, field);
    }

    let token = app.token(Scope::ReleasesWrite);
    for (field, value) in [("details", nul), ("advisory", nul)] {
        let mut body = json!({"private_token": token, "version": "99.1.0"});
        body[field] = json!(value);
        let (status, answer) = post(&app, "/api/v1/versions", body.to_string()).await;
        assert_names(status, &answer, 422, field);
    }
    let patch = app
        .client
        .patch(app.url("/api/v1/versions/16.7.2"))
        .header("PRIVATE-TOKEN", &token)
        .body(json!({"security": "critical", "details": nul}).to_string())
        .send()
        .await
        .unwrap();
    let status = patch.status().as_u16();
    assert_names(status, &patch.json().await.unwrap(), 422, "details");
    app.stop().await;
}

/// Defect 11: a version part above i64 is refused, not stored wrapped to a negative number.
#[tokio::test]
async fn version_parts_beyond_i64_are_refused() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::ReleasesWrite);
    let body = format!("private_token={token}&version=9223372036854775808.0.0");
    let response = app
        .client
        .post(app.url("/api/v1/versions"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["message"].as_str().unwrap().contains("larger than"),
        "{answer}"
    );
    // The largest that fits is a version like any other.
    let body = format!("private_token={token}&version=9223372036854775807.0.0");
    let response = app
        .client
        .post(app.url("/api/v1/versions"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let check = app
        .get(&crate::check::check_path("check.json", "16.0.0"))
        .await;
    let verdict: Value = check.json().await.unwrap();
    assert_eq!(verdict["latest_version"], "9223372036854775807.0.0");
    app.stop().await;
}

/// Defect 7: sender text that a spreadsheet would run as a formula is exported neutralised
/// (a leading `'`), while numbers the export formats itself keep their sign.
#[tokio::test]
async fn csv_export_neutralises_formula_cells() {
    let app = TestApp::spawn().await;
    let hostile = minimal_with(json!({
        "uuid": "@cmd",
        "hostname": "=HYPERLINK(\"http://evil.example/\",\"x\")",
        "version": "+SUM(1+1)",
        "edition": "-2+3",
        "recorded_at": "2026-01-10T00:00:00Z",
        "counts": {"issues": -1}
    }));
    assert_eq!(post_json(&app, hostile).await.status(), 201);
    let output = crate::helpers::run_cli(
        app.settings.store.url.expose_secret(),
        &[
            "export",
            "--from",
            "2026-01-01",
            "--to",
            "2026-02-01",
            "--format",
            "csv",
            "--keys",
            "counts.issues,=evil",
        ],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut reader = csv::Reader::from_reader(output.stdout.as_slice());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[9], "'=evil");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(&row[1], "'@cmd");
    assert_eq!(&row[2], "'=HYPERLINK(\"http://evil.example/\",\"x\")");
    assert_eq!(&row[3], "'+SUM(1+1)");
    assert_eq!(&row[4], "'-2+3");
    assert_eq!(&row[8], "-1", "a number is not text and keeps its sign");
    app.stop().await;
}

/// Defect 13: only syntactically valid DNS names (after IDNA) are recorded as hosts; the
/// check is still counted, without a host.
#[tokio::test]
async fn only_valid_dns_names_are_recorded_as_hosts() {
    use crate::check_recording::{check_rows, wait_for_total};
    let app =
        TestApp::spawn_with(|s| s.check.flush_interval = std::time::Duration::from_millis(100))
            .await;
    let svg = crate::check::check_path("check.svg", "18.0.0");
    let label64 = format!("http://{}.example.com/", "a".repeat(64));
    let label63 = format!("http://{}.example.com/", "a".repeat(63));
    let referers = [
        "http://a..b/",
        label64.as_str(),
        "http://a@b@c/",
        "http://-lead.example/",
        "http://trail-.example/",
        label63.as_str(),
        "http://ok.example/",
    ];
    for referer in referers {
        let r = app
            .client
            .get(app.url(&svg))
            .header("Referer", referer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let db = app.store();
    wait_for_total(&db, referers.len() as i64).await;
    let rows = check_rows(&db);
    let hosts: Vec<&str> = rows.iter().map(|r| r.host.as_str()).collect();
    let expected_long = format!("{}.example.com", "a".repeat(63));
    assert_eq!(hosts, ["", expected_long.as_str(), "ok.example"]);
    assert_eq!(rows[0].count, 5, "invalid names are counted without a host");
    app.stop().await;
}
