//! `version-app erase`: one installation out of the store, in one transaction, leaving the
//! store as if it had never sent anything; `export --pseudonymise`; the retention pass.

use std::collections::BTreeMap;

use crate::helpers::{run_cli, TestApp, TestDb};
use crate::store_dump::{assert_absent, assert_same_dump, dump, query_text};
use crate::usage_data::minimal_with;
use serde_json::json;

pub(crate) const ERASURE_KEY: &str = "erasure-key-for-tests-0123456789";

pub(crate) fn key_env() -> [(&'static str, &'static str); 1] {
    [("VERSION_APP_ERASURE_KEY", ERASURE_KEY)]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Pings, checks with its Referer, an error and a metadata report of one installation.
pub(crate) async fn installation_traffic(
    app: &TestApp,
    uuid: &str,
    unique: &str,
    hostname: &str,
    issues: i64,
) {
    for (at, n) in [
        ("2026-01-08T10:00:00Z", issues),
        ("2026-01-15T10:00:00Z", issues + 5),
    ] {
        let body = minimal_with(json!({"uuid": uuid, "unique_instance_id": unique,
            "hostname": hostname, "recorded_at": at, "version": "18.9.0-ee", "edition": "EE",
            "counts": {"issues": n}}));
        assert_eq!(
            crate::store_dump::post_ping(&app.client, &app.url("/usage_data"), body)
                .await
                .status(),
            201
        );
    }
    let referer = format!("https://{}/admin", hostname.to_ascii_lowercase());
    for version in ["18.9.0", "17.0.0"] {
        let path = crate::check::check_path("check.svg", version);
        let response = app
            .client
            .get(app.url(&path))
            .header("Referer", &referer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // Reports naming the installation only by hostname, only by unique id, and by uuid.
    for (path, body) in [
        (
            "/usage_ping_errors",
            json!({"error": {"hostname": hostname, "version": "18.9.0",
            "message": "timeout", "elapsed": 1, "time": "2026-01-08T21:54:39.000Z"}}),
        ),
        (
            "/usage_ping_errors",
            json!({"error": {"unique_instance_id": unique, "message": "boom",
            "elapsed": 2, "time": "2026-01-09T21:54:39.000Z"}}),
        ),
        (
            "/usage_ping_metadata",
            json!({"metadata": {"uuid": uuid, "metrics": [
            {"name": "counts.issues", "time_elapsed": 0.1}, {"name": "counts.notes", "time_elapsed": 0.2}]}}),
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
        assert_eq!(response.status(), 201, "{path}");
    }
}

/// The analysts' and operators' queries (read from the docs) and per-table counts, as text.
fn aggregates(url: &str) -> BTreeMap<String, String> {
    let mut queries: BTreeMap<String, String> = BTreeMap::new();
    let analysts = include_str!("../../docs/analysts.md");
    for part in analysts.split("<!-- query: ").skip(1) {
        let name = part.split(" -->").next().unwrap().to_string();
        let sql = part
            .split("```sql\n")
            .nth(1)
            .unwrap()
            .split("```")
            .next()
            .unwrap();
        let bound = [
            ("since", "2000-01-01 00:00:00"),
            ("until", "2100-01-01 00:00:00"),
            ("key_path", "counts.issues"),
            ("instance", "y-uuid"),
        ]
        .iter()
        .fold(sql.to_string(), |sql, (k, v)| {
            sql.replace(&format!(":{k}"), &format!("'{v}'"))
        });
        queries.insert(format!("analysts {name}"), bound);
    }
    let operators = include_str!("../../docs/operators.md");
    for block in operators.split("```sql\n").skip(1) {
        let sql = block.split("```").next().unwrap();
        if sql.contains("DELETE") {
            continue;
        }
        queries.insert(
            format!("operators {}", sql.lines().next().unwrap()),
            sql.to_string(),
        );
    }
    for table in [
        "usage_data",
        "usage_data_raw",
        "metric_values",
        "usage_ping_errors",
        "usage_ping_metadata",
        "usage_ping_metadata_metrics",
        "hosts",
        "version_checks",
        "version_checks_monthly",
        "metric_keys",
        "version_status",
        "insights_installations",
        "insights_submissions",
        "insights_periods",
        "insights_metric_values",
    ] {
        queries.insert(
            format!("count {table}"),
            format!("SELECT COUNT(*) FROM {table}"),
        );
    }
    queries.insert(
        "total checks".into(),
        "SELECT COALESCE(SUM(count), 0) FROM version_checks".into(),
    );
    queries
        .into_iter()
        .map(|(name, sql)| {
            let answer = query_text(url, sql.trim().trim_end_matches(';'));
            (name, answer)
        })
        .collect()
}

#[tokio::test]
async fn erase_leaves_the_store_as_if_the_installation_never_sent_anything() {
    let fast = |s: &mut version_app::config::Settings| {
        s.check.flush_interval = std::time::Duration::from_millis(100);
    };
    let app = TestApp::spawn_with(fast).await;
    installation_traffic(&app, "y-uuid", "y-unique", "y.example.com", 10).await;
    let db = app.stop().await;
    let url = db.url.clone();
    // The insights rollups hold the installation too: fold everything in before comparing.
    let refresh = |url: &str| {
        let out = run_cli(url, &["insights", "refresh"], &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    refresh(&url);
    let before = aggregates(&url);

    let app = TestApp::spawn_on(db, fast).await;
    installation_traffic(&app, "x-uuid", "x-unique", "X.Example.com", 20).await;
    let db = app.stop().await;
    refresh(&url);
    let with_x = aggregates(&url);
    assert_ne!(
        before, with_x,
        "the second installation changed the aggregates"
    );

    // Without the key nothing happens.
    let refused = run_cli(&url, &["erase", "--uuid", "x-uuid"], &[]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("erasure_key"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(aggregates(&url), with_x);

    let out = run_cli(&url, &["erase", "--uuid", "x-uuid"], &key_env());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    for line in [
        "usage_data: 2 row(s) removed",
        "usage_data_raw: 2 row(s) removed",
        "usage_ping_errors: 2 row(s) removed",
        "usage_ping_metadata: 1 row(s) removed",
        "usage_ping_metadata_metrics: 2 row(s) removed",
        "version_checks: 2 row(s) removed",
        "hosts: 1 row(s) removed",
    ] {
        assert!(printed.contains(line), "`{line}` missing from:\n{printed}");
    }

    let full = dump(&url);
    for identifier in ["x-uuid", "x-unique", "x.example.com"] {
        assert_absent(&full, identifier, "after erasure");
    }
    assert!(
        full.contains("y.example.com"),
        "the other installation stays"
    );
    assert_eq!(
        aggregates(&url),
        before,
        "aggregates as if X had never sent"
    );

    // "Was it erased?" by every identifier, answered with the key only.
    for args in [
        ["--hostname", "x.example.com"],
        ["--uuid", "x-uuid"],
        ["--hostname", "X.EXAMPLE.COM"],
    ] {
        let out = run_cli(&url, &["erase", "--check", args[0], args[1]], &key_env());
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("was erased at"),
            "{}",
            text(&out.stdout)
        );
    }
    let never = run_cli(&url, &["erase", "--check", "--uuid", "y-uuid"], &key_env());
    assert!(!never.status.success());
    assert!(text(&never.stderr).contains("no erasure of uuid y-uuid"));
    let other_key = run_cli(
        &url,
        &["erase", "--check", "--uuid", "x-uuid"],
        &[("VERSION_APP_ERASURE_KEY", "some-other-key-0123456789")],
    );
    assert!(
        !other_key.status.success(),
        "a hash under another key matches nothing"
    );
    drop(db);
}

#[tokio::test]
async fn erasing_an_unknown_installation_says_so_and_changes_nothing() {
    let app =
        TestApp::spawn_with(|s| s.check.flush_interval = std::time::Duration::from_millis(100))
            .await;
    installation_traffic(&app, "y-uuid", "y-unique", "y.example.com", 10).await;
    let db = app.stop().await;
    let before = dump(&db.url);
    for args in [
        ["--hostname", "nobody.example.com"],
        ["--uuid", "no-such-uuid"],
    ] {
        let out = run_cli(&db.url, &["erase", args[0], args[1]], &key_env());
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(
            err.contains("nothing in the store belongs to") && err.contains(args[1]),
            "{err}"
        );
    }
    assert_same_dump(&before, &dump(&db.url), "not even an erasure entry");
}

#[tokio::test]
async fn an_erasure_interrupted_half_way_leaves_everything() {
    let app =
        TestApp::spawn_with(|s| s.check.flush_interval = std::time::Duration::from_millis(100))
            .await;
    installation_traffic(&app, "x-uuid", "x-unique", "x.example.com", 20).await;
    let db = app.stop().await;
    // The last statement of an erasure is the entry's insert: make it fail, after every
    // deletion has run inside the transaction.
    let trigger = if db.is_postgres() {
        "CREATE FUNCTION stop_erasure() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION \
         'interrupted for the test'; END $$ LANGUAGE plpgsql; CREATE TRIGGER stop_erasure \
         BEFORE INSERT ON erasures FOR EACH ROW EXECUTE FUNCTION stop_erasure();"
    } else {
        "CREATE TRIGGER stop_erasure BEFORE INSERT ON erasures BEGIN \
         SELECT RAISE(ABORT, 'interrupted for the test'); END;"
    };
    query_text(&db.url, trigger);
    let before = dump(&db.url);
    let out = run_cli(
        &db.url,
        &["erase", "--hostname", "x.example.com"],
        &key_env(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("interrupted for the test"),
        "{}",
        text(&out.stderr)
    );
    assert_same_dump(&before, &dump(&db.url), "all or nothing");
    let _ = TestDb::new; // the database is dropped with `db`
}
