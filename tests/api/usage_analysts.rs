//! Every query of docs/analysts.md, read out of the doc and run on the store under test
//! (SQLite, or PostgreSQL with TEST_DATABASE_URL) against payloads posted over HTTP.

use crate::helpers::TestApp;
use crate::usage_data::{minimal_with, post_json};
use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Double, Nullable, Text, Timestamp};
use serde_json::json;
use std::collections::BTreeMap;

/// The `sql` block following each `<!-- query: NAME -->` marker in docs/analysts.md.
fn doc_queries() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/analysts.md"))
        .expect("docs/analysts.md");
    let mut queries = BTreeMap::new();
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("<!-- query: ") {
        rest = &rest[start + "<!-- query: ".len()..];
        let name_end = rest.find(" -->").expect("marker closes");
        let name = rest[..name_end].to_string();
        let block = rest.find("```sql\n").expect("sql block after marker") + "```sql\n".len();
        let end = rest[block..].find("```").expect("sql block closes");
        queries.insert(name, rest[block..block + end].to_string());
        rest = &rest[block + end..];
    }
    queries
}

/// Fills `:name` parameters with SQL literals, as the doc tells analysts to.
fn bind(sql: &str, params: &[(&str, &str)]) -> String {
    params.iter().fold(sql.to_string(), |sql, (name, value)| {
        sql.replace(
            &format!(":{name}"),
            &format!("'{}'", value.replace('\'', "''")),
        )
    })
}

#[derive(QueryableByName, Debug, PartialEq)]
struct ByVersion {
    #[diesel(sql_type = Nullable<Text>)]
    version: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    edition: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    installation_type: Option<String>,
    #[diesel(sql_type = BigInt)]
    instances: i64,
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Weekly {
    #[diesel(sql_type = Date)]
    week: NaiveDate,
    #[diesel(sql_type = Nullable<Text>)]
    edition: Option<String>,
    #[diesel(sql_type = BigInt)]
    submissions: i64,
    #[diesel(sql_type = Double)]
    total: f64,
    #[diesel(sql_type = Nullable<Double>)]
    median: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    p90: Option<f64>,
}

#[derive(QueryableByName, Debug)]
struct History {
    #[diesel(sql_type = Text)]
    uuid: String,
    #[diesel(sql_type = Timestamp)]
    recorded_at: NaiveDateTime,
    #[diesel(sql_type = Text)]
    source: String,
}

#[derive(QueryableByName, Debug, PartialEq)]
struct MetricPoint {
    #[diesel(sql_type = Timestamp)]
    recorded_at: NaiveDateTime,
    #[diesel(sql_type = Double)]
    value: f64,
}

#[derive(QueryableByName, Debug)]
struct Vulnerable {
    #[diesel(sql_type = Text)]
    uuid: String,
}

async fn send(
    app: &TestApp,
    uuid: &str,
    edition: &str,
    version: &str,
    install: &str,
    at: &str,
    issues: i64,
) {
    let body = minimal_with(json!({
        "uuid": uuid, "hostname": format!("{uuid}.example.com"), "edition": edition,
        "version": version, "installation_type": install, "recorded_at": at,
        "counts": {"issues": issues}
    }));
    let response = post_json(app, body).await;
    assert_eq!(response.status(), 201);
}

/// What `check.json` says of a version, the reference for the vulnerable-instances query.
async fn check_severity(app: &TestApp, version: &str) -> String {
    use base64::Engine;
    let info =
        base64::engine::general_purpose::URL_SAFE.encode(format!("{{\"version\":\"{version}\"}}"));
    let verdict: serde_json::Value = app
        .get(&format!("/check.json?gitlab_info={info}"))
        .await
        .json()
        .await
        .unwrap();
    verdict["severity"].as_str().unwrap().to_string()
}

fn ts(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
}

#[tokio::test]
async fn every_query_in_the_analysts_doc_runs_and_answers_correctly() {
    let queries = doc_queries();
    let names: Vec<&str> = queries.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "instance_history",
            "instance_metric_history",
            "instances_by_version",
            "vulnerable_instances",
            "weekly_series"
        ]
    );
    let app = TestApp::spawn().await;
    send(
        &app,
        "inst-a",
        "CE",
        "18.9.0",
        "omnibus-gitlab",
        "2026-02-02T10:00:00Z",
        100,
    )
    .await;
    send(
        &app,
        "inst-a",
        "CE",
        "18.9.0",
        "omnibus-gitlab",
        "2026-02-09T10:00:00Z",
        130,
    )
    .await;
    send(
        &app,
        "inst-b",
        "EE",
        "18.8.1-ee",
        "gitlab-helm-chart",
        "2026-02-03T10:00:00Z",
        50,
    )
    .await;
    send(
        &app,
        "inst-b",
        "EE",
        "18.8.1-ee",
        "gitlab-helm-chart",
        "2026-02-10T10:00:00Z",
        -1,
    )
    .await;
    send(
        &app,
        "inst-c",
        "EE",
        "18.9.0-ee",
        "omnibus-gitlab",
        "2026-01-05T10:00:00Z",
        10,
    )
    .await;
    send(
        &app,
        "inst-d",
        "EE",
        "18.9.0-ee",
        "omnibus-gitlab",
        "2026-02-04T10:00:00Z",
        70,
    )
    .await;

    let db = app.store();
    let mut conn = db.get().unwrap();
    version_app::with_conn!(&mut conn, |c| {
        let since = [("since", "2026-01-20 00:00:00")];
        let by_version: Vec<ByVersion> =
            diesel::sql_query(bind(&queries["instances_by_version"], &since))
                .load(c)
                .unwrap();
        let row = |v: &str, e: &str, i: &str, n| ByVersion {
            version: Some(v.into()),
            edition: Some(e.into()),
            installation_type: Some(i.into()),
            instances: n,
        };
        assert_eq!(
            by_version,
            vec![
                row("18.9.0", "CE", "omnibus-gitlab", 1),
                row("18.9.0", "EE", "omnibus-gitlab", 1),
                row("18.8.1", "EE", "gitlab-helm-chart", 1),
            ]
        );

        let params = [
            ("key_path", "counts.issues"),
            ("since", "2026-01-01 00:00:00"),
            ("until", "2026-03-01 00:00:00"),
        ];
        let weekly: Vec<Weekly> = diesel::sql_query(bind(&queries["weekly_series"], &params))
            .load(c)
            .unwrap();
        let week = |d: &str, e: &str, n, total, median, p90| Weekly {
            week: NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap(),
            edition: Some(e.into()),
            submissions: n,
            total,
            median: Some(median),
            p90: Some(p90),
        };
        assert_eq!(
            weekly,
            vec![
                week("2026-01-05", "EE", 1, 10.0, 10.0, 10.0),
                week("2026-02-02", "CE", 1, 100.0, 100.0, 100.0),
                week("2026-02-02", "EE", 2, 120.0, 50.0, 70.0),
                week("2026-02-09", "CE", 1, 130.0, 130.0, 130.0),
                // inst-b's -1 (a failed query) is data, but not a measurement
            ]
        );

        for instance in ["inst-a", "inst-a.example.com"] {
            let history: Vec<History> = diesel::sql_query(bind(
                &queries["instance_history"],
                &[("instance", instance)],
            ))
            .load(c)
            .unwrap();
            assert_eq!(history.len(), 2);
            assert!(history
                .iter()
                .all(|h| h.uuid == "inst-a" && h.source == "automatic"));
            assert!(history[0].recorded_at < history[1].recorded_at);
        }
        let points: Vec<MetricPoint> = diesel::sql_query(bind(
            &queries["instance_metric_history"],
            &[("key_path", "counts.issues"), ("instance", "inst-b")],
        ))
        .load(c)
        .unwrap();
        assert_eq!(
            points,
            vec![
                MetricPoint {
                    recorded_at: ts("2026-02-03 10:00:00"),
                    value: 50.0
                },
                MetricPoint {
                    recorded_at: ts("2026-02-10 10:00:00"),
                    value: -1.0
                },
            ]
        );
    });

    // An instance on the newest release: never vulnerable.
    send(
        &app,
        "inst-e",
        "CE",
        "19.1.1",
        "omnibus-gitlab",
        "2026-02-05T10:00:00Z",
        5,
    )
    .await;
    let mut expected_vulnerable = Vec::new();
    for (uuid, version) in [
        ("inst-a", "18.9.0"),
        ("inst-b", "18.8.1"),
        ("inst-d", "18.9.0"),
        ("inst-e", "19.1.1"),
    ] {
        if check_severity(&app, version).await == "danger" {
            expected_vulnerable.push(uuid);
        }
    }
    assert!(!expected_vulnerable.is_empty() && !expected_vulnerable.contains(&"inst-e"));

    version_app::with_conn!(&mut conn, |c| {
        let since = [("since", "2026-01-20 00:00:00")];
        // The join to the version-check side: exactly the instances whose latest version the
        // check path itself calls `danger`.
        let vulnerable: Vec<Vulnerable> =
            diesel::sql_query(bind(&queries["vulnerable_instances"], &since))
                .load(c)
                .unwrap();
        let mut got: Vec<&str> = vulnerable.iter().map(|r| r.uuid.as_str()).collect();
        got.sort();
        assert_eq!(got, expected_vulnerable, "{vulnerable:?}");
    });
}

#[derive(QueryableByName, Debug, PartialEq)]
struct ExactPoint {
    #[diesel(sql_type = Double)]
    value: f64,
    #[diesel(sql_type = Nullable<BigInt>)]
    value_int: Option<i64>,
}

#[tokio::test]
async fn the_metric_history_query_gives_integers_exactly_and_floats_as_floats() {
    let queries = doc_queries();
    let app = TestApp::spawn().await;
    // 2^53 + 1 is the first integer a double cannot hold.
    let big: i64 = (1 << 53) + 1;
    for (at, id, ratio) in [
        ("2026-02-02T10:00:00Z", big, 0.5),
        ("2026-02-09T10:00:00Z", i64::MAX, 0.25),
    ] {
        let body = minimal_with(json!({
            "uuid": "exact", "recorded_at": at,
            "database": {"pg_system_id": id}, "topology": {"query_apdex_weekly_average": ratio}
        }));
        assert_eq!(post_json(&app, body).await.status(), 201);
    }
    let db = app.store();
    let mut conn = db.get().unwrap();
    version_app::with_conn!(&mut conn, |c| {
        let load = |c: &mut _, key: &str| -> Vec<ExactPoint> {
            diesel::sql_query(bind(
                &queries["instance_metric_history"],
                &[("key_path", key), ("instance", "exact")],
            ))
            .load(c)
            .unwrap()
        };
        let ids = load(c, "database.pg_system_id");
        assert_eq!(
            ids.iter().map(|p| p.value_int).collect::<Vec<_>>(),
            [Some(big), Some(i64::MAX)]
        );
        // The double beside it is the nearest one, not the exact value.
        assert_eq!(ids[0].value, big as f64);
        assert_ne!(ids[0].value as i64, big);
        let ratios = load(c, "topology.query_apdex_weekly_average");
        assert_eq!(
            ratios,
            [
                ExactPoint {
                    value: 0.5,
                    value_int: None
                },
                ExactPoint {
                    value: 0.25,
                    value_int: None
                }
            ]
        );
    });
}
