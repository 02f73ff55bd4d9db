//! docs/privacy.md against the real schema, and a full dump of the store after a load of
//! traffic holds no client address.

use std::collections::BTreeSet;

use crate::helpers::{test_settings, TestApp, TestDb};
use crate::store_dump::{assert_absent, dump, query_text};
use crate::usage_data::{minimal_with, FULL};
use serde_json::json;
use version_app::db::Db;

/// `(table, column)` of every row of the column table between `<!-- columns -->` markers.
fn documented_columns() -> BTreeSet<(String, String)> {
    let page = include_str!("../../docs/privacy.md");
    let start = page.find("<!-- columns -->").expect("columns marker");
    let end = page.find("<!-- /columns -->").expect("columns end marker");
    page[start..end]
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let unquote = |c: &str| c.strip_prefix('`')?.strip_suffix('`').map(String::from);
            Some((unquote(cells.get(1)?)?, unquote(cells.get(2)?)?))
        })
        .collect()
}

/// `(table, column)` of every table of the migrated store, from the store's catalogue.
fn schema_columns(url: &str) -> BTreeSet<(String, String)> {
    let sql = if url.starts_with("sqlite") {
        "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
         AND m.name <> '__diesel_schema_migrations'"
    } else {
        // Tables only: views (metric_values) hold nothing of their own.
        "SELECT c.table_name, c.column_name FROM information_schema.columns c \
         JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' \
           AND c.table_name <> '__diesel_schema_migrations'"
    };
    query_text(url, sql)
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(t, c)| (t.to_string(), c.to_string()))
        .collect()
}

#[test]
fn privacy_page_lists_every_column_of_the_schema() {
    let db = TestDb::new();
    let store = Db::connect(&test_settings(&db).store).unwrap();
    store.migrate().unwrap();
    let documented = documented_columns();
    let actual = schema_columns(&db.url);
    assert!(actual.len() > 100, "catalogue read: {actual:?}");
    let missing: Vec<String> = actual
        .difference(&documented)
        .map(|(t, c)| format!("| `{t}` | `{c}` |"))
        .collect();
    let stale: Vec<String> = documented
        .difference(&actual)
        .map(|(t, c)| format!("{t}.{c}"))
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/privacy.md does not match the schema of this store.\n\
         Add a row to its column table for each of these columns (what it is, where it comes \
         from, how long it is kept, how `erase` removes it):\n{}\n\
         Remove these rows, which no table has: {}",
        missing.join("\n"),
        stale.join(", ")
    );
}

const FORWARDED: &str = "198.51.100.7";

/// Checks (every route, with and without Referer, IP-address Referers), a Service Ping, an
/// upload and both reports, each also with `X-Forwarded-For`, sent to `base`.
async fn traffic(client: &reqwest::Client, base: &str, tag: &str) {
    let svg = crate::check::check_path("check.svg", "18.9.0");
    let png = crate::check::check_path("check.png", "17.0.0");
    let json = crate::check::check_path("check.json", "16.0.0");
    for path in [&svg, &png, &json] {
        for referer in [
            Some(format!("https://{tag}.privacy.example/help")),
            Some("http://127.0.0.1/admin".to_string()),
            Some("http://[::1]:8080/admin".to_string()),
            Some(format!("http://{FORWARDED}/")),
            None,
        ] {
            let mut request = client
                .get(format!("{base}{path}"))
                .header("X-Forwarded-For", format!("{FORWARDED}, 10.0.0.1"));
            if let Some(referer) = referer {
                request = request.header("Referer", referer);
            }
            assert!(request.send().await.unwrap().status().as_u16() < 500);
        }
    }
    let ping = minimal_with(
        json!({"uuid": format!("{tag}-uuid"), "hostname": format!("{tag}.privacy.example")}),
    );
    // A loaded machine may answer 503 + Retry-After; GitLab retries, so do we.
    let mut tries = 0;
    let answer = loop {
        let answer = client
            .post(format!("{base}/usage_data"))
            .header("Content-Type", "application/json")
            .header("X-Forwarded-For", FORWARDED)
            .body(ping.clone())
            .send()
            .await
            .unwrap();
        tries += 1;
        if answer.status() != 503 || tries == 5 {
            break answer;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    };
    let status = answer.status();
    assert_eq!(status, 201, "{}", answer.text().await.unwrap());
    let part = reqwest::multipart::Part::bytes(FULL.to_vec())
        .file_name("usage.json")
        .mime_str("application/json")
        .unwrap();
    let upload = client
        .post(format!("{base}/usage_data"))
        .header("X-Forwarded-For", FORWARDED)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert!(upload.status().is_success(), "{}", upload.status());
    for (path, body) in [
        (
            "/usage_ping_errors",
            json!({"error": {"uuid": format!("{tag}-uuid"), "hostname": format!("{tag}.privacy.example"),
                "version": "18.9.0", "message": "timeout", "elapsed": 1.5, "time": "2026-01-08T21:54:39.000Z"}}),
        ),
        (
            "/usage_ping_metadata",
            json!({"metadata": {"uuid": format!("{tag}-uuid"), "metrics": [{"name": "counts.issues", "time_elapsed": 0.1}]}}),
        ),
    ] {
        let answer = client
            .post(format!("{base}{path}"))
            .header("Content-Type", "application/json")
            .header("X-Forwarded-For", FORWARDED)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201, "{path}");
    }
}

fn port_of(app: &TestApp) -> &str {
    app.address.rsplit(':').next().unwrap()
}

#[tokio::test]
async fn a_full_dump_after_a_load_of_traffic_holds_no_client_address() {
    let geoip = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/geoip-test.mmdb"
    );
    // From 127.0.0.1, not trusting X-Forwarded-For.
    let app = TestApp::spawn_with(|s| {
        s.check.flush_interval = std::time::Duration::from_millis(100);
        s.geoip.path = Some(geoip.into());
    })
    .await;
    traffic(&app.client, &app.address, "direct").await;
    let db = app.stop().await;
    // From ::1, trusting X-Forwarded-For (the forwarded address gives the country).
    let app = TestApp::spawn_on(db, |s| {
        s.server.listen = "[::1]:0".parse().unwrap();
        s.check.flush_interval = std::time::Duration::from_millis(100);
        s.geoip.path = Some(geoip.into());
        s.server.trust_forwarded_for = true;
    })
    .await;
    let base = format!("http://[::1]:{}", port_of(&app));
    traffic(&app.client, &base, "proxied").await;
    let db = app.stop().await;

    let text = dump(&db.url);
    // The traffic was stored: the dump is not trivially empty.
    for stored in [
        "direct.privacy.example",
        "proxied.privacy.example",
        "proxied-uuid",
        "timeout",
    ] {
        assert!(text.contains(stored), "`{stored}` should be in the dump");
    }
    let countries = query_text(
        &db.url,
        "SELECT DISTINCT country FROM version_checks ORDER BY 1",
    );
    assert!(
        countries.contains("FR"),
        "the forwarded address was looked up: {countries}"
    );
    for address in ["127.0.0.1", "::1", FORWARDED, "10.0.0.1"] {
        assert_absent(&text, address, "client address");
    }
}
