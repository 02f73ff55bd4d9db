//! Issue 8 (hardening), defects 6, 8 and 15: SQLite under two processes, store faults.

use crate::helpers::TestApp;
use crate::usage_data::{minimal_with, post_json};
use serde_json::json;

/// Defect 8: two servers on one SQLite file. Write transactions start as `BEGIN IMMEDIATE`,
/// so writers queue on `busy_timeout` instead of failing a read-to-write upgrade with a
/// spurious "database is locked" 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_sqlite_file_do_not_refuse_ingest() {
    let first = TestApp::spawn_with(|s| s.check_flush_interval_ms = 20).await;
    if first.db.is_postgres() {
        // One PostgreSQL server takes any number of writers; nothing SQLite-specific to show.
        first.stop().await;
        return;
    }
    let url = first.settings.database_url.clone();
    let second = TestApp::spawn_with(|s| {
        s.database_url = url;
        s.check_flush_interval_ms = 20;
        s.seed_releases = false;
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
        let settings = version_app::config::Settings {
            database_url: format!("sqlite://{}", dir.path().join("fresh.db").display()),
            database_pool_size: 8,
            ..version_app::config::Settings::default()
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
