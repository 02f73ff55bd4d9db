//! Scale-out rules (docs/scaling.md): the migration rule between releases, and nodes that
//! start together on one fresh store.

use version_app::startup::Application;

use crate::helpers::{run_cli, test_settings, TestApp, TestDb};
use crate::store_dump::query_text;

/// A migration a future release applied (this binary does not know it).
const FUTURE: &str = "20991231000000";

/// The rule: a process refuses to start on a store that a newer release migrated, naming
/// the unknown migrations and the way out; `allow_newer_schema` lets it start (a roll-back
/// within one release, which the backward-compatible migrations make safe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_older_than_the_schema_refuses_to_start_unless_allowed() {
    let db = TestDb::new();
    let settings = test_settings(&db);
    let out = run_cli(&db.url, &["migrate"], &[]);
    assert!(out.status.success(), "{out:?}");
    query_text(
        &db.url,
        &format!("INSERT INTO __diesel_schema_migrations (version) VALUES ('{FUTURE}')"),
    );

    let refused = Application::build(settings.clone()).await;
    let message = format!(
        "{:#}",
        refused.err().expect("the older node must not start")
    );
    for needle in [FUTURE, "newer release", "VERSION_APP_ALLOW_NEWER_SCHEMA"] {
        assert!(message.contains(needle), "{needle} not in: {message}");
    }
    // The CLI follows the same rule (it migrates before every store command).
    let out = run_cli(&db.url, &["releases", "list", "--limit", "1"], &[]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(FUTURE),
        "{out:?}"
    );
    let out = run_cli(
        &db.url,
        &["releases", "list", "--limit", "1"],
        &[("VERSION_APP_ALLOW_NEWER_SCHEMA", "true")],
    );
    assert!(out.status.success(), "{out:?}");

    // Allowed: it starts and serves, and leaves the newer migration in place.
    let app = TestApp::spawn_on(db, |s| s.store.allow_newer_schema = true).await;
    assert_eq!(app.get("/-/ready").await.status(), 200);
    let versions = query_text(
        &app.db.url,
        &format!("SELECT count(*) FROM __diesel_schema_migrations WHERE version = '{FUTURE}'"),
    );
    assert_eq!(versions.trim(), "1");
    app.stop().await;
}

/// Nodes started at once on a fresh store migrate one after another (an advisory lock on
/// PostgreSQL), instead of racing on the same DDL and failing to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_on_a_fresh_store_all_start() {
    let db = TestDb::new();
    let settings = test_settings(&db);
    let builds = (0..3).map(|_| Application::build(settings.clone()));
    let started = futures_util::future::join_all(builds).await;
    for app in started {
        // Built, never run: dropping it is enough (its jobs end with the test's runtime).
        drop(app.expect("every node starts"));
    }
}
