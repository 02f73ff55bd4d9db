//! `POST /usage_data`: storage, idempotency, gzip, every bad-input class, store outages.

use crate::helpers::{TestApp, TestDb};
use diesel::prelude::*;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use std::io::Write;
use version_app::db::models::usage_data_raw as raw_model;
use version_app::db::schema::{metric_keys, metric_values, usage_data, usage_data_raw};
use version_app::domain::payload::{parse_payload, PayloadLimits};

/// The generated full 18.9 payload (~230 KB, ~4,200 metrics).
pub const FULL: &[u8] = include_bytes!("../fixtures/payload_18.9.0_generated.json");
/// A payload with only the required categories.
pub const MINIMAL: &[u8] = include_bytes!("../fixtures/payload_18.9.0_minimal.json");

/// The minimal payload with some fields replaced (compact JSON, like GitLab sends).
pub fn minimal_with(changes: Value) -> Vec<u8> {
    let mut payload: Value = serde_json::from_slice(MINIMAL).unwrap();
    merge(&mut payload, changes);
    serde_json::to_vec(&payload).unwrap()
}

fn merge(target: &mut Value, changes: Value) {
    match (target, changes) {
        (Value::Object(target), Value::Object(changes)) => {
            for (key, value) in changes {
                match target.get_mut(&key) {
                    Some(slot) if value.is_object() && slot.is_object() => merge(slot, value),
                    _ => {
                        target.insert(key, value);
                    }
                }
            }
        }
        (target, changes) => *target = changes,
    }
}

/// POSTs a JSON body.
pub async fn post_json(app: &TestApp, body: Vec<u8>) -> reqwest::Response {
    app.post_usage_data(body).await
}

/// `(usage_data rows, raw rows, metric rows)` in the store.
pub fn counts(app: &TestApp) -> (i64, i64, i64) {
    let db = app.store();
    let mut conn = db.get().unwrap();
    version_app::with_conn!(&mut conn, |c| (
        usage_data::table.count().get_result(c).unwrap(),
        usage_data_raw::table.count().get_result(c).unwrap(),
        metric_values::table.count().get_result(c).unwrap(),
    ))
}

fn assert_conv_index(body: &Value) -> i64 {
    let conv = body["conv_index"].as_object().expect("conv_index object");
    let id = conv["usage_data_id"]
        .as_i64()
        .expect("integer usage_data_id");
    assert!(id > 0);
    assert_eq!(conv.len(), 31, "usage_data_id + 30 floats: {conv:?}");
    for (key, value) in conv {
        if key != "usage_data_id" {
            let v = value
                .as_f64()
                .unwrap_or_else(|| panic!("{key} is not a number"));
            assert!(v >= 0.0 && v.is_finite(), "{key} = {v}");
        }
    }
    id
}

/// Summary columns read back in the first test.
type SummaryRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    i64,
);

#[tokio::test]
async fn full_payload_is_stored_verbatim_summarised_and_flattened() {
    let app = TestApp::spawn().await;
    let response = post_json(&app, FULL.to_vec()).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let id = assert_conv_index(&body);

    let expected = parse_payload(FULL, &PayloadLimits::default()).unwrap();
    assert!(expected.metrics.len() > 4000);
    let (rows, raws, metrics) = counts(&app);
    assert_eq!((rows, raws), (1, 1));
    assert_eq!(
        metrics,
        expected.metrics.len() as i64,
        "every leaf flattened"
    );

    let db = app.store();
    let mut conn = db.get().unwrap();
    // Stored compressed; the model's read gives back the bytes as received.
    let raw = raw_model::find_raw_payload(&mut conn, id).unwrap().unwrap();
    assert_eq!(raw, FULL, "raw payload kept byte for byte");
    version_app::with_conn!(&mut conn, |c| {
        let (uuid, hostname, version, edition, source, country, count): SummaryRow =
            usage_data::table
                .find(id)
                .select((
                    usage_data::uuid,
                    usage_data::hostname,
                    usage_data::version,
                    usage_data::edition,
                    usage_data::source,
                    usage_data::country,
                    usage_data::metrics_count,
                ))
                .first(c)
                .unwrap();
        assert_eq!(uuid, "01974cde-79f9-4882-b407-7bec1eb4e8a3");
        assert_eq!(hostname.as_deref(), Some("gitlab.acme-0000.example.com"));
        assert_eq!(version.as_deref(), Some("18.9.0"));
        assert_eq!(edition.as_deref(), Some("EEP"));
        assert_eq!(source, "automatic");
        assert_eq!(country, None, "no GeoIP configured");
        assert_eq!(count, expected.metrics.len() as i64);
        // One metric over time is one index range: key path -> key id -> rows.
        let issues: f64 = metric_values::table
            .inner_join(metric_keys::table.on(metric_keys::id.eq(metric_values::key_id)))
            .filter(metric_keys::key_path.eq("counts.issues"))
            .filter(metric_values::usage_data_id.eq(id))
            .select(metric_values::value)
            .first(c)
            .unwrap();
        assert_eq!(issues, expected.metrics.get("counts.issues").unwrap());
    });
}

#[tokio::test]
async fn duplicates_get_the_same_id_and_store_nothing_twice() {
    let app = TestApp::spawn().await;
    let first: Value = post_json(&app, FULL.to_vec()).await.json().await.unwrap();
    let again = post_json(&app, FULL.to_vec()).await;
    assert_eq!(again.status(), 201);
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        first, again,
        "a retry sees the same id and the same numbers"
    );
    let before = counts(&app);
    assert_eq!(before.0, 1);

    // Concurrent re-deliveries of a new payload: one row, one id.
    let body = minimal_with(json!({"uuid": "concurrent-duplicate"}));
    let sends = (0..8).map(|_| post_json(&app, body.clone()));
    let answers = futures_util::future::join_all(sends).await;
    let mut ids = Vec::new();
    for answer in answers {
        assert_eq!(answer.status(), 201);
        let body: Value = answer.json().await.unwrap();
        ids.push(body["conv_index"]["usage_data_id"].as_i64().unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let expected_minimal = parse_payload(&body, &PayloadLimits::default())
        .unwrap()
        .metrics
        .len() as i64;
    let after = counts(&app);
    assert_eq!(after.0, 2);
    assert_eq!(after.1, 2);
    assert_eq!(after.2, before.2 + expected_minimal);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn gzip_bodies_are_decoded_and_the_json_kept() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/usage_data"))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(gzip(FULL))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let db = app.store();
    let mut conn = db.get().unwrap();
    let id: i64 = version_app::with_conn!(&mut conn, |c| usage_data::table
        .select(usage_data::id)
        .first(c)
        .unwrap());
    let raw = raw_model::find_raw_payload(&mut conn, id).unwrap().unwrap();
    assert_eq!(raw, FULL);
}

async fn expect_error(app: &TestApp, request: reqwest::RequestBuilder, status: u16, needle: &str) {
    let response = request.send().await.expect("request sent");
    assert_eq!(
        response.status().as_u16(),
        status,
        "expected {status} for {needle}"
    );
    let body: Value = response.json().await.expect("JSON error body");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains(needle),
        "`{message}` should mention `{needle}`"
    );
    assert!(body["error"].is_string());
    assert_eq!(counts(app), (0, 0, 0), "nothing stored after `{needle}`");
}

#[tokio::test]
async fn every_bad_input_gets_a_clear_json_error_and_stores_nothing() {
    let app = TestApp::spawn_with(|s| {
        s.ingest.max_body_bytes = 512 * 1024;
        s.ingest.max_decompressed_bytes = 1024 * 1024;
    })
    .await;
    let post = |body: Vec<u8>| {
        app.client
            .post(app.url("/usage_data"))
            .header("Content-Type", "application/json")
            .body(body)
    };
    expect_error(&app, post(b"{not json".to_vec()), 400, "not valid JSON").await;
    expect_error(&app, post(Vec::new()), 400, "empty").await;
    expect_error(
        &app,
        post(b"[1,2,3]".to_vec()),
        400,
        "must be a JSON object",
    )
    .await;
    let missing_uuid = minimal_with(json!({"uuid": null}));
    expect_error(&app, post(missing_uuid), 400, "`uuid`").await;
    let mut no_recorded_at: Value = serde_json::from_slice(MINIMAL).unwrap();
    no_recorded_at
        .as_object_mut()
        .unwrap()
        .remove("recorded_at");
    expect_error(
        &app,
        post(serde_json::to_vec(&no_recorded_at).unwrap()),
        400,
        "`recorded_at`",
    )
    .await;
    expect_error(
        &app,
        post(minimal_with(json!({"uuid": 42}))),
        400,
        "`uuid` must be",
    )
    .await;
    expect_error(
        &app,
        post(minimal_with(json!({"recorded_at": "last tuesday"}))),
        400,
        "`recorded_at`",
    )
    .await;
    // 100,000 levels of nesting: refused at the depth cap, not a stack overflow.
    let mut deep = b"{\"uuid\":\"u\",\"recorded_at\":\"2026-01-01T00:00:00Z\",\"x\":".to_vec();
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    deep.extend(std::iter::repeat_n(b']', 100_000));
    deep.push(b'}');
    expect_error(&app, post(deep.clone()), 400, "nesting deeper").await;
    // Deep nesting sent gzipped is caught the same way.
    expect_error(
        &app,
        post(gzip(&deep)).header("Content-Encoding", "gzip"),
        400,
        "nesting deeper",
    )
    .await;
    // Over the body cap.
    let mut big = FULL.to_vec();
    big.extend(FULL);
    big.extend(FULL);
    expect_error(&app, post(big), 413, "exceeds").await;
    // A gzip bomb: 50 MB of spaces compress to ~50 KB.
    let mut bomb = b"{\"uuid\":\"u\",\"recorded_at\":\"2026-01-01T00:00:00Z\",\"pad\":\"".to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 50 * 1024 * 1024));
    bomb.extend(b"\"}");
    let bomb = gzip(&bomb);
    assert!(bomb.len() < 512 * 1024);
    expect_error(
        &app,
        post(bomb).header("Content-Encoding", "gzip"),
        413,
        "decompressed",
    )
    .await;
    // A truncated gzip stream.
    let whole = gzip(MINIMAL);
    let truncated = whole[..whole.len() / 2].to_vec();
    expect_error(
        &app,
        post(truncated).header("Content-Encoding", "gzip"),
        400,
        "gzip",
    )
    .await;
    expect_error(
        &app,
        post(MINIMAL.to_vec()).header("Content-Encoding", "br"),
        415,
        "Content-Encoding",
    )
    .await;
    expect_error(
        &app,
        app.client
            .post(app.url("/usage_data"))
            .header("Content-Type", "text/plain")
            .body(MINIMAL.to_vec()),
        415,
        "Content-Type",
    )
    .await;
}

#[tokio::test]
async fn special_values_are_kept_as_data() {
    let app = TestApp::spawn().await;
    let body = minimal_with(json!({
        "counts": {"issues": -1, "notes": -2, "boards": -1000, "milestones": -3},
        "histogram": {"-1": -1}
    }));
    let response = post_json(&app, body).await;
    assert_eq!(response.status(), 201);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["conv_index"]["instance_notes"], 0.0);
    let db = app.store();
    let mut conn = db.get().unwrap();
    let values: Vec<(String, f64)> = version_app::with_conn!(&mut conn, |c| metric_values::table
        .inner_join(metric_keys::table.on(metric_keys::id.eq(metric_values::key_id)))
        .filter(metric_keys::key_path.eq_any([
            "counts.issues",
            "counts.notes",
            "counts.boards",
            "counts.milestones",
            "histogram.-1",
        ]))
        .select((metric_keys::key_path, metric_values::value))
        .order(metric_keys::key_path)
        .load(c)
        .unwrap());
    assert_eq!(
        values,
        vec![
            ("counts.boards".to_string(), -1000.0),
            ("counts.issues".to_string(), -1.0),
            ("counts.milestones".to_string(), -3.0),
            ("counts.notes".to_string(), -2.0),
            ("histogram.-1".to_string(), -1.0),
        ]
    );
}

#[tokio::test]
async fn devops_score_uses_the_earlier_submission_and_background_leaders() {
    let app = TestApp::spawn_with(|s| {
        s.ingest.devops_leaders_refresh = std::time::Duration::from_secs(1);
    })
    .await;
    let uuid = "devops-instance";
    let first = minimal_with(json!({
        "uuid": uuid, "recorded_at": "2026-02-02T12:00:00Z", "active_user_count": 40,
        "counts": {"issues": 5000}
    }));
    assert_eq!(post_json(&app, first).await.status(), 201);
    let second = minimal_with(json!({
        "uuid": uuid, "recorded_at": "2026-03-02T12:00:00Z", "active_user_count": 40,
        "counts": {"issues": 5420}
    }));
    let answer: Value = post_json(&app, second).await.json().await.unwrap();
    let conv = &answer["conv_index"];
    // docs/devops-score.md worked example: (5420 - 5000) × 30 / 28 / 40
    let expected = 420.0 * 30.0 / 28.0 / 40.0;
    assert!((conv["instance_issues"].as_f64().unwrap() - expected).abs() < 1e-9);
    // Fewer than 5 peers: the instance is its own leader.
    assert_eq!(conv["percentage_issues"], 100.0);
}

#[tokio::test]
async fn store_unavailable_answers_503_with_retry_after_and_stores_nothing() {
    let db = TestDb::new();
    let app = TestApp::spawn_on(db, |s| s.store.timeout = std::time::Duration::from_secs(1)).await;
    let url = app.settings.store.url.expose_secret().to_owned();
    let blocker = block_store(&url);
    let response = post_json(&app, MINIMAL.to_vec()).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");
    drop(blocker);
    assert_eq!(counts(&app), (0, 0, 0));
    // Once the store is back, the instance's retry is stored.
    assert_eq!(post_json(&app, MINIMAL.to_vec()).await.status(), 201);
}

/// Makes the store refuse work until dropped: SQLite is locked by a writer that never
/// commits; PostgreSQL stops accepting connections and loses the app's open ones.
enum Blocker {
    Sqlite(diesel::SqliteConnection),
    Postgres(String, String),
}

fn block_store(url: &str) -> Blocker {
    use diesel::connection::SimpleConnection;
    if let Some(path) = url.strip_prefix("sqlite://") {
        let mut conn = diesel::SqliteConnection::establish(path).unwrap();
        conn.batch_execute("BEGIN EXCLUSIVE").unwrap();
        Blocker::Sqlite(conn)
    } else {
        let admin = std::env::var("TEST_DATABASE_URL").unwrap();
        let path = url.split('?').next().unwrap();
        let name = path.rsplit('/').next().unwrap().to_string();
        let mut conn = diesel::PgConnection::establish(&admin).unwrap();
        conn.batch_execute(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
        ))
        .unwrap();
        Blocker::Postgres(admin, name)
    }
}

impl Drop for Blocker {
    fn drop(&mut self) {
        use diesel::connection::SimpleConnection;
        match self {
            Blocker::Sqlite(conn) => conn.batch_execute("ROLLBACK").unwrap(),
            Blocker::Postgres(admin, name) => {
                let mut conn = diesel::PgConnection::establish(admin).unwrap();
                conn.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
                    .unwrap();
            }
        }
    }
}

/// The country of a Service Ping comes from the same client-address rule as the version
/// check: the peer, or X-Forwarded-For's first entry when `trust_forwarded_for` is on.
#[tokio::test]
async fn country_follows_the_trusted_proxy_setting_like_the_version_check() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/geoip-test.mmdb"
    );
    for (trust, expected) in [(false, "AQ"), (true, "FR")] {
        let app = TestApp::spawn_with(|s| {
            s.geoip.path = Some(fixture.into());
            s.server.trust_forwarded_for = trust;
        })
        .await;
        let response = app
            .client
            .post(app.url("/usage_data"))
            .header("Content-Type", "application/json")
            .header("X-Forwarded-For", "198.51.100.7")
            .body(MINIMAL.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let db = app.store();
        let mut conn = db.get().unwrap();
        let countries: Vec<Option<String>> = version_app::with_conn!(&mut conn, |c| {
            usage_data::table
                .select(usage_data::country)
                .load(c)
                .unwrap()
        });
        assert_eq!(
            countries,
            [Some(expected.to_string())],
            "trust_forwarded_for = {trust}"
        );
    }
}

/// `(value, value_int)` of one key path of submission `id`.
fn stored_value(app: &TestApp, id: i64, key: &str) -> (f64, Option<i64>) {
    let db = app.store();
    let mut conn = db.get().unwrap();
    version_app::with_conn!(&mut conn, |c| metric_values::table
        .inner_join(metric_keys::table.on(metric_keys::id.eq(metric_values::key_id)))
        .filter(metric_keys::key_path.eq(key))
        .filter(metric_values::usage_data_id.eq(id))
        .select((metric_values::value, metric_values::value_int))
        .first(c)
        .unwrap())
}

#[tokio::test]
async fn integers_are_stored_exactly_booleans_as_0_1_and_floats_as_floats() {
    let app = TestApp::spawn().await;
    let body = minimal_with(json!({
        "uuid": "exact-values",
        "database": {"pg_system_id": 6842684531675334351_i64},
        "exact_flag": true,
        "exact_off": false,
        "exact_ratio": 0.25,
        "exact_whole_float": 3.0,
    }));
    let response = post_json(&app, body).await;
    assert_eq!(response.status(), 201);
    let answer: Value = response.json().await.unwrap();
    let id = answer["conv_index"]["usage_data_id"].as_i64().unwrap();
    let (double, exact) = stored_value(&app, id, "database.pg_system_id");
    assert_eq!(exact, Some(6_842_684_531_675_334_351));
    assert_eq!(double, 6_842_684_531_675_334_351_i64 as f64);
    assert_eq!(stored_value(&app, id, "exact_flag"), (1.0, Some(1)));
    assert_eq!(stored_value(&app, id, "exact_off"), (0.0, Some(0)));
    assert_eq!(stored_value(&app, id, "exact_ratio"), (0.25, None));
    assert_eq!(stored_value(&app, id, "exact_whole_float"), (3.0, None));
}

#[tokio::test]
async fn a_redelivery_gets_the_byte_identical_answer() {
    let app = TestApp::spawn().await;
    for body in [FULL.to_vec(), minimal_with(json!({"uuid": "same-bytes"}))] {
        let first = post_json(&app, body.clone()).await;
        assert_eq!(first.status(), 201);
        let first = first.bytes().await.unwrap();
        let again = post_json(&app, body).await;
        assert_eq!(again.status(), 201);
        let again = again.bytes().await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&first),
            String::from_utf8_lossy(&again),
            "the re-delivery is answered with the same bytes"
        );
    }
}

/// Regression: SQLite metric rows were inserted 10,000 per statement, which with four columns
/// binds 40,000 variables, over SQLite's 32,766. A payload (or a group) of more than ~8,191
/// numeric leaves then failed on SQLite. 9,000 leaves must be stored whole, on both stores.
#[tokio::test]
async fn a_payload_with_more_leaves_than_one_sqlite_statement_can_bind_is_stored() {
    let app = TestApp::spawn().await;
    let counts_map: serde_json::Map<String, Value> = (0..9_000)
        .map(|i| (format!("leaf_{i:05}"), json!(i)))
        .collect();
    let body = minimal_with(json!({"uuid": "many-leaves", "counts": counts_map}));
    let expected = parse_payload(&body, &PayloadLimits::default())
        .unwrap()
        .metrics
        .len() as i64;
    assert!(expected > 9_000, "{expected}");
    let answer = post_json(&app, body).await;
    let status = answer.status();
    assert_eq!(status, 201, "{}", answer.text().await.unwrap());
    assert_eq!(counts(&app), (1, 1, expected));
}
