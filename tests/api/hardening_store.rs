//! Issue 8 (hardening), defects 6, 8 and 15: SQLite under two processes, store faults.

use crate::helpers::TestApp;
use crate::usage_data::{minimal_with, post_json};
use secrecy::ExposeSecret;
use serde_json::json;

/// Defect 8: two servers on one SQLite file. Write transactions start as `BEGIN IMMEDIATE`,
/// so writers queue on `busy_timeout` instead of failing a read-to-write upgrade with a
/// spurious "database is locked" 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_sqlite_file_do_not_refuse_ingest() {
    // A long admission wait: this test is about the store's lock, not the admission queue.
    let first = TestApp::spawn_with(|s| {
        s.check.flush_interval = std::time::Duration::from_millis(20);
        s.ingest.admission_wait = std::time::Duration::from_millis(60_000);
    })
    .await;
    if first.db.is_postgres() {
        // One PostgreSQL server takes any number of writers; nothing SQLite-specific to show.
        first.stop().await;
        return;
    }
    let url = first.settings.store.url.expose_secret().to_owned();
    let second = TestApp::spawn_with(|s| {
        s.store.url = url.into();
        s.check.flush_interval = std::time::Duration::from_millis(20);
        s.ingest.admission_wait = std::time::Duration::from_millis(60_000);
        s.releases.seed = false;
    })
    .await;
    let apps = [&first, &second];
    let mut tasks = Vec::new();
    for i in 0..120 {
        let app = apps[i % 2];
        let (client, base) = (app.client.clone(), app.address.clone());
        tasks.push(tokio::spawn(async move {
            let body =
                minimal_with(json!({"uuid": format!("two-{i}"), "hostname": format!("h{i}")}));
            let response = client
                .post(format!("{base}/usage_data"))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }));
        // Version checks from both, so the recorders' flushes write beside the ingest.
        let check = app
            .client
            .get(app.url(&crate::check::check_path("check.svg", "16.0.0")))
            .header("Referer", format!("https://i{i}.example.com/help"));
        tasks.push(tokio::spawn(async move {
            let response = check.send().await.unwrap();
            (response.status().as_u16(), String::new())
        }));
    }
    let mut refused = Vec::new();
    for task in tasks {
        let (status, text) = task.await.unwrap();
        if status >= 500 {
            refused.push(format!("{status} {text}"));
        }
    }
    assert!(
        refused.is_empty(),
        "{} refused: {:?}",
        refused.len(),
        refused.first()
    );
    let _ = post_json(&first, minimal_with(json!({"uuid": "after"}))).await;
    second.stop().await;
    first.stop().await;
}

/// Defect 15: a fresh SQLite file is in WAL mode before the pool fills, and every pooled
/// connection sees it (the switch is made once, not by each connection racing the others).
#[tokio::test]
async fn a_fresh_sqlite_file_is_switched_to_wal_once() {
    let db = crate::helpers::TestDb::new();
    if db.is_postgres() {
        return;
    }
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let settings = version_app::config::StoreSettings {
            url: format!("sqlite://{}", dir.path().join("fresh.db").display()).into(),
            pool_size: std::num::NonZeroU32::new(8).unwrap(),
            ..version_app::config::StoreSettings::default()
        };
        let store = version_app::db::Db::connect(&settings).expect("fresh store opens");
        let mut conns: Vec<_> = (0..8).map(|_| store.get().unwrap()).collect();
        for conn in &mut conns {
            let mode = version_app::with_conn!(conn, |c| {
                use diesel::RunQueryDsl;
                #[derive(diesel::QueryableByName)]
                struct Mode {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    journal_mode: String,
                }
                diesel::sql_query("PRAGMA journal_mode")
                    .get_result::<Mode>(c)
                    .unwrap()
                    .journal_mode
            });
            assert_eq!(mode, "wal", "round {round}");
        }
    }
}

/// Defect 6: the SQLite file deleted under a running server. Nothing more is acknowledged
/// into the deleted file: ingest gets 503 + `Retry-After` and readiness fails.
#[tokio::test]
async fn a_deleted_store_file_is_refused_not_written_into() {
    let app = TestApp::spawn().await;
    if app.db.is_postgres() {
        app.stop().await;
        return;
    }
    let before = post_json(&app, minimal_with(json!({"uuid": "before-delete"}))).await;
    assert_eq!(before.status(), 201);
    assert_eq!(app.get("/-/ready").await.status(), 200);
    let path = app
        .settings
        .store
        .url
        .expose_secret()
        .trim_start_matches("sqlite://")
        .to_string();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    let after = post_json(&app, minimal_with(json!({"uuid": "after-delete"}))).await;
    assert_eq!(after.status(), 503);
    assert!(after.headers().contains_key("retry-after"));
    let body: serde_json::Value = after.json().await.unwrap();
    assert_eq!(body["error"], "unavailable", "{body}");
    assert_eq!(app.get("/-/ready").await.status(), 503);
    // Checks are still answered from memory.
    let check = app
        .get(&crate::check::check_path("check.svg", "16.0.0"))
        .await;
    assert_eq!(check.status(), 200);
    app.handle.stop(true).await;
}

/// Defect 5: the CLI on PostgreSQL over TLS exits cleanly every time (it crashed at exit in
/// about one run in six to thirty, a pool thread still in `PQconnectdb` racing OpenSSL's
/// exit-time cleanup). Runs only on PostgreSQL, with TLS required.
#[test]
fn the_cli_exits_cleanly_on_postgres_over_tls() {
    let db = crate::helpers::TestDb::new();
    if !db.is_postgres() {
        return;
    }
    let base = db.url.split('?').next().unwrap().to_string();
    let url = format!("{base}?sslmode=require");
    let first = crate::helpers::run_cli(&url, &["migrate"], &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let mut crashed = Vec::new();
    for run in 0..100 {
        let output = crate::helpers::run_cli(&url, &["releases", "list", "--limit", "1"], &[]);
        if !output.status.success() {
            crashed.push((run, output.status));
        }
    }
    assert!(
        crashed.is_empty(),
        "{} of 100 runs failed: {crashed:?}",
        crashed.len()
    );
}
