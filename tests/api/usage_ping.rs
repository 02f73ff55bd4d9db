//! `POST /usage_ping_errors` and `POST /usage_ping_metadata`: every shape of protocol 2.3.

use crate::helpers::TestApp;
use diesel::prelude::*;
use serde_json::{json, Value};
use version_app::db::schema::{
    usage_ping_errors, usage_ping_metadata, usage_ping_metadata_metrics,
};

async fn post(app: &TestApp, path: &str, body: &str) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(path))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// (uuid, unique_instance_id, message, elapsed)
type ErrorRow = (Option<String>, Option<String>, Option<String>, Option<f64>);

#[tokio::test]
async fn error_reports_are_stored_with_and_without_unique_instance_id() {
    let app = TestApp::spawn().await;
    let current = json!({"error": {"time": "2026-01-08T21:54:39.000Z", "uuid": "u-1",
        "unique_instance_id": "ui-1", "hostname": "gitlab.example.com", "version": "18.9.0",
        "message": "Net::ReadTimeout at submit_service.rb:42", "elapsed": 0.1}});
    let older = json!({"error": {"time": "2026-01-08T21:54:39.000Z", "uuid": "u-2",
        "hostname": "old.example.com", "version": "15.0.0", "message": "boom", "elapsed": 3}});
    for body in [&current, &older] {
        let (status, answer) = post(&app, "/usage_ping_errors", &body.to_string()).await;
        assert_eq!(status, 201, "{answer}");
        assert!(answer["id"].as_i64().unwrap() > 0);
    }
    let db = app.store();
    let mut conn = db.get().unwrap();
    let rows: Vec<ErrorRow> = version_app::with_conn!(&mut conn, |c| usage_ping_errors::table
        .order(usage_ping_errors::id)
        .select((
            usage_ping_errors::uuid,
            usage_ping_errors::unique_instance_id,
            usage_ping_errors::message,
            usage_ping_errors::elapsed,
        ))
        .load(c)
        .unwrap());
    assert_eq!(rows[0].0.as_deref(), Some("u-1"));
    assert_eq!(rows[0].1.as_deref(), Some("ui-1"));
    assert_eq!(rows[1].1, None);
    assert_eq!(rows[1].2.as_deref(), Some("boom"));
    assert_eq!(rows[1].3, Some(3.0));
}

#[tokio::test]
async fn metadata_reports_are_stored_in_every_shape() {
    let app = TestApp::spawn().await;
    let shapes = [
        json!({"metadata": {"uuid": "u-1", "unique_instance_id": "ui-1", "metrics": [
            {"name": "counts.issues", "time_elapsed": 0.0123},
            {"name": "counts.ci_builds", "time_elapsed": 0.2, "error": "PG::QueryCanceled"}]}}),
        json!({"metadata": {"uuid": "u-2", "metrics": [{"name": "counts.issues", "time_elapsed": 1}]}}),
        json!({"metadata": {"metrics": [{"name": "counts.notes", "time_elapsed": 0.5}]}}),
    ];
    for body in &shapes {
        let (status, answer) = post(&app, "/usage_ping_metadata", &body.to_string()).await;
        assert_eq!(status, 201, "{answer}");
    }
    let db = app.store();
    let mut conn = db.get().unwrap();
    version_app::with_conn!(&mut conn, |c| {
        let reports: Vec<(Option<String>, i64)> = usage_ping_metadata::table
            .order(usage_ping_metadata::id)
            .select((
                usage_ping_metadata::uuid,
                usage_ping_metadata::metrics_count,
            ))
            .load(c)
            .unwrap();
        assert_eq!(
            reports,
            vec![(Some("u-1".into()), 2), (Some("u-2".into()), 1), (None, 1)]
        );
        let failed: Vec<(String, Option<String>)> = usage_ping_metadata_metrics::table
            .filter(usage_ping_metadata_metrics::error.is_not_null())
            .select((
                usage_ping_metadata_metrics::name,
                usage_ping_metadata_metrics::error,
            ))
            .load(c)
            .unwrap();
        assert_eq!(
            failed,
            vec![("counts.ci_builds".into(), Some("PG::QueryCanceled".into()))]
        );
    });
}

#[tokio::test]
async fn bad_reports_get_a_json_400_naming_the_problem() {
    let app = TestApp::spawn().await;
    let cases = [
        ("/usage_ping_errors", "not json", "not valid JSON"),
        ("/usage_ping_errors", "[]", "must be a JSON object"),
        ("/usage_ping_errors", "{}", "missing required field `error`"),
        (
            "/usage_ping_errors",
            r#"{"error": "x"}"#,
            "`error` must be an object",
        ),
        (
            "/usage_ping_errors",
            r#"{"error": {"uuid": []}}"#,
            "`uuid` must be a string",
        ),
        (
            "/usage_ping_metadata",
            r#"{"metrics": []}"#,
            "missing required field `metadata`",
        ),
        (
            "/usage_ping_metadata",
            r#"{"metadata": {}}"#,
            "`metadata.metrics`",
        ),
        (
            "/usage_ping_metadata",
            r#"{"metadata": {"metrics": {}}}"#,
            "must be an array",
        ),
        (
            "/usage_ping_metadata",
            r#"{"metadata": {"metrics": [1]}}"#,
            "`metadata.metrics[0]` must be an object",
        ),
        (
            "/usage_ping_metadata",
            r#"{"metadata": {"metrics": [{"time_elapsed": 1}]}}"#,
            "`metadata.metrics[0].name`",
        ),
        (
            "/usage_ping_metadata",
            r#"{"metadata": {"metrics": [{"name": "a", "time_elapsed": "slow"}]}}"#,
            "`time_elapsed` must be a number",
        ),
    ];
    for (path, body, needle) in cases {
        let (status, answer) = post(&app, path, body).await;
        assert_eq!(status, 400, "{path} {body}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(needle), "`{message}` lacks `{needle}`");
    }
    let db = app.store();
    let mut conn = db.get().unwrap();
    let stored: (i64, i64) = version_app::with_conn!(&mut conn, |c| (
        usage_ping_errors::table.count().get_result(c).unwrap(),
        usage_ping_metadata::table.count().get_result(c).unwrap()
    ));
    assert_eq!(stored, (0, 0));
}
