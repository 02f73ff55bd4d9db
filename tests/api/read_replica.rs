//! `database_read_url`: analyst reads (insights) go to the replica when it is usable, to the
//! primary when it is not, and `/metrics` says which.

use std::time::{Duration, Instant};

use serde_json::Value;
use version_app::auth::Scope;

use crate::helpers::{run_cli, TestApp, TestDb};
use crate::insights::{fleet, post_all, refresh, RANGE};

async fn installations(app: &TestApp, token: &str) -> Value {
    let path = format!("/api/v1/insights/installations?period=month&{RANGE}");
    let response = app
        .client
        .get(app.url(&path))
        .header("PRIVATE-TOKEN", token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Polls `/metrics` until `series` reaches `at_least`.
async fn wait_for(app: &TestApp, series: &str, at_least: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = app.get("/metrics").await.text().await.unwrap();
        if metric(&text, series) >= at_least {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {at_least}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyst_reads_use_the_replica_and_fall_back_to_the_primary() {
    let primary = TestApp::spawn().await;
    if !primary.db.is_postgres() {
        // A read replica is a PostgreSQL feature: anything else is refused, naming the setting.
        let out = run_cli(
            &primary.db.url,
            &["releases", "list", "--limit", "1"],
            &[("VERSION_APP_DATABASE_READ_URL", "sqlite://other.db")],
        );
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("database_read_url"));
        primary.stop().await;
        return;
    }
    post_all(&primary, &fleet()).await;
    refresh(&primary);
    let token = primary.token(Scope::InsightsRead);
    let on_primary = installations(&primary, &token).await;

    // The "replica": another database with the schema and none of the data (not a standby,
    // so its lag is taken as 0). Its answers differ from the primary's, so we see where a
    // read went. The token is checked on the primary, as every non-analyst query is.
    let copy = TestDb::new();
    version_app::db::Db::connect(&crate::helpers::test_settings(&copy).store)
        .unwrap()
        .migrate()
        .unwrap();
    let (primary_url, copy_url) = (primary.db.url.clone(), copy.url.clone());
    let with_replica = TestApp::spawn_on(copy, |s| {
        s.store.url = primary_url.clone().into();
        s.store.read_url = Some(copy_url.into());
    })
    .await;
    wait_for(&with_replica, "version_app_read_replica_usable", 1.0).await;
    let on_replica = installations(&with_replica, &token).await;
    assert_ne!(on_replica, on_primary, "the read did not go to the replica");
    let text = with_replica.get("/metrics").await.text().await.unwrap();
    assert!(metric(&text, "version_app_read_queries_total{target=\"replica\"}") >= 1.0);
    assert_eq!(metric(&text, "version_app_read_replica_lag_seconds"), 0.0);
    with_replica.stop().await;

    // An unreachable replica: reads fall back to the primary, and /metrics says so.
    let unreachable = TestApp::spawn_on(TestDb::new(), |s| {
        s.store.url = primary_url.clone().into();
        s.store.read_url = Some("postgres://postgres@127.0.0.1:1/none?sslmode=disable".into());
    })
    .await;
    let text = wait_for(
        &unreachable,
        "version_app_read_replica_unusable_total{reason=\"unreachable\"}",
        1.0,
    )
    .await;
    assert_eq!(metric(&text, "version_app_read_replica_usable"), 0.0);
    assert_eq!(installations(&unreachable, &token).await, on_primary);
    let text = unreachable.get("/metrics").await.text().await.unwrap();
    assert!(
        metric(
            &text,
            "version_app_read_queries_total{target=\"primary_fallback\"}"
        ) >= 1.0
    );
    unreachable.stop().await;
    primary.stop().await;
}
