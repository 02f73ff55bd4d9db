//! `export --pseudonymise` and the retention pass (`version-app retention run`).

use chrono::{Datelike, Duration, NaiveDate, Utc};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::Sha256;
use std::collections::BTreeMap;
use version_app::db::models::version_checks;
use version_app::recorder::CheckCount;

use crate::helpers::{run_cli, TestApp};
use crate::store_dump::query_text;
use crate::usage_data::{minimal_with, FULL};

async fn post_json(app: &TestApp, body: Vec<u8>) -> reqwest::Response {
    crate::store_dump::post_ping(&app.client, &app.url("/usage_data"), body).await
}

const KEY: &str = "pseudonymise-key-for-tests-0123";

/// The reference pseudonym, computed here with the hmac crate directly.
fn hmac_hex(key: &str, value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn export(url: &str, format: &str, key: Option<&str>, pseudonymise: bool) -> std::process::Output {
    let mut args = vec![
        "export",
        "--from",
        "2026-01-01",
        "--to",
        "2026-02-01",
        "--format",
        format,
    ];
    if format == "csv" {
        args.extend(["--keys", "counts.issues"]);
    }
    if pseudonymise {
        args.push("--pseudonymise");
    }
    let env: Vec<(&str, &str)> = key
        .map(|k| ("VERSION_APP_PSEUDONYMISE_KEY", k))
        .into_iter()
        .collect();
    run_cli(url, &args, &env)
}

#[tokio::test]
async fn pseudonymised_exports_hide_identifiers_and_keep_every_other_byte() {
    let app = TestApp::spawn().await;
    assert_eq!(post_json(&app, FULL.to_vec()).await.status(), 201);
    let second = minimal_with(
        json!({"uuid": "second-uuid", "hostname": "second.example.com",
        "recorded_at": "2026-01-20T08:00:00Z", "licensee": {"Name": "Jane \"JD\" Doe",
        "Email": "jane@second.example.com"}, "license_md5": "0123abcd", "counts": {"issues": 3}}),
    );
    assert_eq!(post_json(&app, second.clone()).await.status(), 201);
    let url = app.settings.store.url.expose_secret().to_owned();

    let refused = export(&url, "ndjson", None, true);
    assert!(!refused.status.success());
    assert!(
        refused.stdout.is_empty(),
        "nothing is written without the key"
    );
    assert!(
        text(&refused.stderr).contains("pseudonymise_key"),
        "{}",
        text(&refused.stderr)
    );

    let out = export(&url, "ndjson", Some(KEY), true);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<&[u8]> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 2);

    // The expected bytes: each identifying `"key":"value"` pair of the payload as received
    // (each occurs exactly once) with the value swapped for its HMAC; nothing else touched.
    let expect = |payload: &[u8], pairs: &[(&str, &str)]| -> String {
        let mut expected = text(payload);
        for (key, value) in pairs {
            let from = format!("\"{key}\":{}", serde_json::to_string(value).unwrap());
            assert_eq!(
                expected.matches(&from).count(),
                1,
                "{from} once in the payload"
            );
            expected = expected.replace(&from, &format!("\"{key}\":\"{}\"", hmac_hex(KEY, value)));
        }
        expected
    };
    let full_expected = expect(
        FULL,
        &[
            ("uuid", "01974cde-79f9-4882-b407-7bec1eb4e8a3"),
            ("unique_instance_id", "9dff67d4-5ebf-4fab-9cd0-15625480962c"),
            ("hostname", "gitlab.acme-0000.example.com"),
            (
                "license_sha256",
                "f166d7eb092b5f4ea58f0b35fba6cd91cff47af69e13e9908afc5a219f350580",
            ),
            ("Name", "Acme GmbH IT"),
            ("Email", "it@acme-0000.example.com"),
        ],
    );
    assert!(
        text(lines[0]) == full_expected,
        "the full payload differs beyond the identifiers"
    );
    let second_expected = expect(
        &second,
        &[
            ("uuid", "second-uuid"),
            ("hostname", "second.example.com"),
            ("license_md5", "0123abcd"),
            ("Name", "Jane \"JD\" Doe"),
            ("Email", "jane@second.example.com"),
        ],
    );
    assert_eq!(text(lines[1]), second_expected);
    assert!(
        text(lines[0]).contains("\"Company\":\"Acme GmbH\""),
        "not in the issue's list"
    );

    let again = export(&url, "ndjson", Some(KEY), true);
    assert_eq!(
        again.stdout, out.stdout,
        "stable across exports with the same key"
    );
    let other = export(&url, "ndjson", Some("another-key-0123456789abcdef"), true);
    assert_ne!(other.stdout, out.stdout);

    let plain = export(&url, "csv", None, false);
    let hidden = export(&url, "csv", Some(KEY), true);
    assert!(hidden.status.success(), "{}", text(&hidden.stderr));
    let rows = |out: &std::process::Output| -> Vec<Vec<String>> {
        csv::Reader::from_reader(out.stdout.as_slice())
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect())
            .collect()
    };
    let (plain, hidden) = (rows(&plain), rows(&hidden));
    assert_eq!(plain.len(), 2);
    for (p, h) in plain.iter().zip(&hidden) {
        assert_eq!(h[1], hmac_hex(KEY, &p[1]), "uuid column");
        assert_eq!(h[2], hmac_hex(KEY, &p[2]), "hostname column");
        assert_eq!(h[0], p[0]);
        assert_eq!(h[3..], p[3..], "every other column unchanged");
    }
    assert_eq!(
        hidden[0][1],
        hmac_hex(KEY, "01974cde-79f9-4882-b407-7bec1eb4e8a3"),
        "joins with NDJSON"
    );
}

fn check(day: NaiveDate, host: &str, version: &str, count: u64) -> CheckCount {
    CheckCount {
        day,
        host: host.into(),
        version: version.into(),
        country: "".into(),
        count,
        first_seen: day.and_hms_opt(8, 0, 0).unwrap(),
        last_seen: day.and_hms_opt(12, 0, 0).unwrap(),
    }
}

#[tokio::test]
async fn retention_rolls_old_checks_into_months_and_removes_what_is_past_its_period() {
    // The server's own retention job (first run at start) must leave the arranged rows to
    // the `retention run` below: its periods are set out of reach.
    let app = TestApp::spawn_with(|s| {
        s.retention.version_check_daily_days = std::num::NonZeroU32::new(100_000).unwrap();
        s.retention.host_days = std::num::NonZeroU32::new(100_000).unwrap();
        s.retention.usage_ping_error_days = std::num::NonZeroU32::new(100_000).unwrap();
        s.retention.usage_ping_metadata_days = std::num::NonZeroU32::new(100_000).unwrap();
    })
    .await;
    let url = app.settings.store.url.expose_secret().to_owned();
    let today = Utc::now().date_naive();
    let old = today - Duration::days(450);
    // Old daily rows over two months and three hosts, plus recent ones.
    let mut rows = Vec::new();
    for offset in 0..40 {
        let day = old - Duration::days(offset);
        for (i, host) in ["a.example", "b.example", ""].iter().enumerate() {
            rows.push(check(day, host, "17.0.0", (offset + i as i64 + 1) as u64));
        }
    }
    rows.push(check(today, "a.example", "18.9.0", 7));
    rows.push(check(today - Duration::days(10), "c.example", "18.9.0", 2));
    rows.sort_by(|a, b| (a.day, &a.host).cmp(&(b.day, &b.host)));
    let db = app.store();
    version_checks::record_batch(&mut db.get().unwrap(), &rows, &[]).unwrap();
    let total_before: i64 = rows.iter().map(|r| r.count as i64).sum();
    // Independent expectation of the monthly table.
    let mut monthly: BTreeMap<(String, String), i64> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.day < today - Duration::days(400)) {
        let month = r.day.with_day(1).unwrap().to_string();
        *monthly.entry((month, r.host.clone())).or_default() += r.count as i64;
    }

    for uuid in ["old-uuid", "new-uuid"] {
        let body = minimal_with(json!({"uuid": uuid, "hostname": format!("{uuid}.example")}));
        assert_eq!(post_json(&app, body).await.status(), 201);
        for (path, body) in [
            (
                "/usage_ping_errors",
                json!({"error": {"uuid": uuid, "message": "x", "elapsed": 1, "time": "t"}}),
            ),
            (
                "/usage_ping_metadata",
                json!({"metadata": {"uuid": uuid, "metrics": [{"name": "a", "time_elapsed": 1}]}}),
            ),
        ] {
            let response = app
                .client
                .post(app.url(path))
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
        }
    }
    let db = app.stop().await;
    let long_ago = (Utc::now() - Duration::days(100))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    for table in ["usage_data", "usage_ping_errors", "usage_ping_metadata"] {
        query_text(
            &db.url,
            &format!("UPDATE {table} SET received_at = '{long_ago}' WHERE uuid = 'old-uuid'"),
        );
    }
    // Console sessions: one over for two days, one live.
    let fmt = |d: Duration| (Utc::now() + d).format("%Y-%m-%d %H:%M:%S").to_string();
    query_text(
        &db.url,
        &format!(
            "INSERT INTO console_users (name, role, password_hash, created_at, disabled) \
             VALUES ('ops', 'admin', 'x', '{now}', FALSE)",
            now = fmt(Duration::zero())
        ),
    );
    for (hash, last_seen, expires) in [
        ("ended", fmt(-Duration::days(2)), fmt(-Duration::days(1))),
        ("live", fmt(Duration::zero()), fmt(Duration::hours(10))),
    ] {
        query_text(
            &db.url,
            &format!(
                "INSERT INTO console_sessions (session_hash, user_id, csrf_token, created_at, \
                 last_seen, expires_at) SELECT '{hash}', id, 't', '{last_seen}', '{last_seen}', \
                 '{expires}' FROM console_users"
            ),
        );
    }
    let metrics_of_old = query_text(&db.url, "SELECT COUNT(*) FROM metric_values m JOIN usage_data u ON u.id = m.usage_data_id WHERE u.uuid = 'old-uuid'");
    assert_ne!(metrics_of_old.trim(), "0");

    let bad = run_cli(
        &url,
        &["retention", "run"],
        &[("VERSION_APP_HOST_RETENTION_DAYS", "0")],
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("host_retention_days"),
        "{}",
        text(&bad.stderr)
    );

    let env = [
        ("VERSION_APP_RETENTION_BATCH_SIZE", "7"),
        ("VERSION_APP_SUBMISSION_RETENTION_DAYS", "30"),
    ];
    let out = run_cli(&url, &["retention", "run"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let old_daily = rows
        .iter()
        .filter(|r| r.day < today - Duration::days(400))
        .count();
    for line in [
        format!("version_checks_rolled_up: {old_daily} row(s) removed"),
        "hosts: 1 row(s) removed".to_string(),
        "usage_ping_errors: 1 row(s) removed".into(),
        "usage_ping_metadata: 1 row(s) removed".into(),
        "usage_data: 1 row(s) removed".into(),
        "console_sessions: 1 row(s) removed".into(),
    ] {
        assert!(printed.contains(&line), "`{line}` missing from:\n{printed}");
    }

    let q = |sql: &str| query_text(&url, sql).trim().to_string();
    let total_after: i64 = q("SELECT COALESCE(SUM(count), 0) FROM version_checks")
        .parse::<i64>()
        .unwrap()
        + q("SELECT COALESCE(SUM(count), 0) FROM version_checks_monthly")
            .parse::<i64>()
            .unwrap();
    assert_eq!(total_after, total_before, "totals stay right");
    let stored: BTreeMap<(String, String), i64> = query_text(
        &url,
        "SELECT month, host, count FROM version_checks_monthly",
    )
    .lines()
    .map(|l| {
        let cells: Vec<&str> = l.split('|').collect();
        (
            (cells[0].to_string(), cells[1].to_string()),
            cells[2].parse().unwrap(),
        )
    })
    .collect();
    assert_eq!(stored, monthly);
    assert_eq!(
        q("SELECT COUNT(*) FROM version_checks"),
        "2",
        "recent days keep their detail"
    );
    assert_eq!(
        q("SELECT hostname FROM hosts ORDER BY hostname"),
        "a.example\nc.example"
    );
    assert_eq!(q("SELECT uuid FROM usage_data"), "new-uuid");
    assert_eq!(q("SELECT uuid FROM usage_ping_errors"), "new-uuid");
    assert_eq!(q("SELECT uuid FROM usage_ping_metadata"), "new-uuid");
    assert_eq!(q("SELECT COUNT(*) FROM usage_ping_metadata_metrics"), "1");
    assert_eq!(q("SELECT COUNT(*) FROM usage_data_raw"), "1");
    assert_eq!(q("SELECT session_hash FROM console_sessions"), "live");
    let left = q("SELECT COUNT(*) FROM metric_values m LEFT JOIN usage_data u ON u.id = m.usage_data_id WHERE u.id IS NULL");
    assert_eq!(left, "0", "no metric row outlives its submission");

    let again = run_cli(&url, &["retention", "run"], &env);
    assert!(text(&again.stdout).contains("version_checks_rolled_up: 0 row(s) removed"));
    drop(db);
}

#[tokio::test]
async fn the_retention_job_runs_at_start_and_reports_in_metrics() {
    let app = TestApp::spawn().await;
    let body = json!({"error": {"uuid": "old", "message": "x", "elapsed": 1, "time": "t"}});
    let response = app
        .client
        .post(app.url("/usage_ping_errors"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let db = app.stop().await;
    let long_ago = (Utc::now() - Duration::days(91)).format("%Y-%m-%d %H:%M:%S");
    query_text(
        &db.url,
        &format!("UPDATE usage_ping_errors SET received_at = '{long_ago}'"),
    );
    // The report is backdated 91 days, so retention's last run must be too: on PostgreSQL a
    // once-across-processes job claims its run in `job_schedule`, and the first server's run
    // at start (moments ago, by the store's clock) would otherwise make this one `not_due`.
    query_text(&db.url, "UPDATE job_schedule SET last_started_ms = 0");

    let app = TestApp::spawn_on(db, |_| {}).await;
    let wanted = [
        r#"version_app_retention_removed_total{kind="usage_ping_errors"} 1"#,
        r#"version_app_job_runs_total{job="retention",outcome="ok"} 1"#,
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let page = app.get("/metrics").await.text().await.unwrap();
        if wanted.iter().all(|w| page.contains(w)) {
            assert!(page.contains(r#"version_app_retention_removed_total{kind="hosts"} 0"#));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let left = query_text(
        app.settings.store.url.expose_secret(),
        "SELECT COUNT(*) FROM usage_ping_errors",
    );
    assert_eq!(left.trim(), "0");
}
