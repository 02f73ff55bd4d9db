//! Service Ping ingest in `/metrics`: every outcome counted under its labels, bytes before
//! and after gzip, the writer's histograms, and a page `promtool check metrics` accepts.

use crate::helpers::TestApp;
use crate::usage_data::{minimal_with, post_json, FULL};
use serde_json::json;
use std::io::Write;

/// The value of the sample `series` (name with labels, exactly as exposed), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn ingest_outcomes_bytes_and_writer_figures_are_in_metrics_and_promtool_accepts_them() {
    let app = TestApp::spawn().await;
    let gzipped = gzip(FULL);
    let response = app
        .client
        .post(app.url("/usage_data"))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(gzipped.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(post_json(&app, FULL.to_vec()).await.status(), 201); // duplicate
    let small = minimal_with(json!({"uuid": "metrics-small"}));
    assert_eq!(post_json(&app, small.clone()).await.status(), 201);
    assert_eq!(post_json(&app, b"{not json".to_vec()).await.status(), 400);
    assert_eq!(post_json(&app, b"[1]".to_vec()).await.status(), 400);
    let no_uuid = br#"{"recorded_at":"2026-01-01T00:00:00Z"}"#.to_vec();
    assert_eq!(post_json(&app, no_uuid.clone()).await.status(), 400);
    let report = |path: &str, body: serde_json::Value| {
        app.client
            .post(app.url(path))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
    };
    let error = json!({"error": {"uuid": "u", "hostname": "h", "version": "18.9.0",
        "message": "boom", "elapsed": 1.5, "time": "2026-01-01 00:00:00 UTC"}});
    assert_eq!(
        report("/usage_ping_errors", error).await.unwrap().status(),
        201
    );
    let metadata =
        json!({"metadata": {"uuid": "u", "metrics": [{"name": "a", "time_elapsed": 0.1}]}});
    assert_eq!(
        report("/usage_ping_metadata", metadata)
            .await
            .unwrap()
            .status(),
        201
    );
    let bad = json!({"metadata": {"metrics": "nope"}});
    assert_eq!(
        report("/usage_ping_metadata", bad).await.unwrap().status(),
        400
    );

    let text = app.get("/metrics").await.text().await.unwrap();
    let count = |labels: &str| {
        sample(
            &text,
            &format!("version_app_ingest_submissions_total{{{labels}}}"),
        )
    };
    assert_eq!(
        count(r#"outcome="stored",reason="none",source="automatic""#),
        2.0,
        "{text}"
    );
    assert_eq!(
        count(r#"outcome="duplicate",reason="none",source="automatic""#),
        1.0
    );
    assert_eq!(
        count(r#"outcome="rejected",reason="invalid_json",source="automatic""#),
        1.0
    );
    assert_eq!(
        count(r#"outcome="rejected",reason="not_an_object",source="automatic""#),
        1.0
    );
    assert_eq!(
        count(r#"outcome="rejected",reason="invalid_field",source="automatic""#),
        1.0
    );
    // Bytes as sent (gzip for the first), after decoding, after zstd.
    let sent = gzipped.len() + FULL.len() + small.len() + "{not json".len() + 3 + no_uuid.len();
    assert_eq!(
        sample(&text, "version_app_ingest_body_bytes_total"),
        sent as f64
    );
    let decoded = 2 * FULL.len() + small.len();
    assert_eq!(
        sample(&text, "version_app_ingest_json_bytes_total"),
        decoded as f64
    );
    let stored = sample(&text, "version_app_ingest_raw_stored_bytes_total");
    assert!(stored > 0.0 && stored < decoded as f64 / 4.0, "{stored}");
    // Three payloads reached a writer, in one to three groups.
    let groups = sample(&text, "version_app_ingest_group_size_count");
    assert!((1.0..=3.0).contains(&groups), "{groups}");
    assert_eq!(sample(&text, "version_app_ingest_group_size_sum"), 3.0);
    assert_eq!(
        sample(&text, "version_app_ingest_commit_seconds_count"),
        groups
    );
    assert!(sample(&text, "version_app_ingest_writer_busy_seconds_total") > 0.0);
    assert_eq!(sample(&text, "version_app_ingest_queue_depth"), 0.0);
    let reports = |labels: &str| {
        sample(
            &text,
            &format!("version_app_usage_ping_reports_total{{{labels}}}"),
        )
    };
    assert_eq!(reports(r#"kind="errors",outcome="stored""#), 1.0);
    assert_eq!(reports(r#"kind="metadata",outcome="stored""#), 1.0);
    assert_eq!(reports(r#"kind="metadata",outcome="rejected""#), 1.0);

    // The whole page is valid exposition format with lint-clean names and help.
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed (.ci/setup.d/promtool.sh)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
