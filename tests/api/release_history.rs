//! The audited release table: every write path leaves history entries, security batches
//! with a dry run and its impact, revert, export/import round trip, append-only entries.

use base64::Engine;
use chrono::{Duration, Utc};
use diesel::prelude::*;
use serde_json::{json, Value};

use crate::helpers::{run_cli, TestApp};
use crate::usage_data::minimal_with;
use version_app::auth::Scope;
use version_app::db::schema::hosts;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let response = app
        .client
        .get(app.url(path))
        .header("PRIVATE-TOKEN", token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// `check.json`'s answer for a version (what an instance is told).
pub async fn check(app: &TestApp, version: &str) -> Value {
    let info =
        base64::engine::general_purpose::URL_SAFE.encode(json!({ "version": version }).to_string());
    app.get(&format!("/check.json?gitlab_info={info}"))
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn api_and_cli_writes_are_audited_with_who_when_via_old_and_new() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::ReleasesWrite);
    let created = app
        .client
        .post(app.url("/api/v1/versions"))
        .form(&[
            ("private_token", token.as_str()),
            ("version", "97.0.0"),
            ("released_on", "2030-01-02"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let patched = app
        .client
        .patch(app.url("/api/v1/versions/97.0.0"))
        .bearer_auth(&token)
        .json(&json!({"security": "critical", "details": "RCE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);

    let (status, entries) = get_json(&app, "/api/v1/versions/97.0.0/history", &token).await;
    assert_eq!(status, 200);
    let entries = entries.as_array().unwrap();
    // Newest first: the patch (security, details), then the creation (version, released_on,
    // security, details; no advisory given, so none recorded).
    let fields: Vec<(&str, Option<&str>, Option<&str>)> = entries
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap(),
                e["old"].as_str(),
                e["new"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        fields,
        vec![
            ("details", Some(""), Some("RCE")),
            ("security", Some("none"), Some("critical")),
            ("details", None, Some("")),
            ("security", None, Some("none")),
            ("released_on", None, Some("2030-01-02")),
            ("version", None, Some("97.0.0")),
        ]
    );
    for e in entries {
        assert_eq!(e["actor"], "token:test");
        assert_eq!(e["via"], "api");
        assert_eq!(e["version"], "97.0.0");
        assert!(e["at"].as_str().unwrap().ends_with('Z'));
        assert!(e["id"].as_i64().unwrap() > 0);
    }

    // The CLI, and an import that changes one release of two.
    let out = run_cli(
        &app.db.url,
        &["releases", "set-security", "97.0.0", "non_critical"],
        &[("USER", "rel-eng")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("r.csv");
    std::fs::write(
        &csv,
        "version,released_on,security,advisory,details\n97.0.0,2030-01-02,non_critical,,RCE\n97.0.1,2030-02-01,none,,\n",
    )
    .unwrap();
    let out = run_cli(
        &app.db.url,
        &["releases", "import", csv.to_str().unwrap()],
        &[("USER", "rel-eng")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("imported 2 release(s)") && stdout(&out).contains("1 changed"),
        "{}",
        stdout(&out)
    );

    let (_, all) = get_json(&app, "/api/v1/releases/history?limit=5", &token).await;
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 5);
    assert!(all
        .iter()
        .take(4)
        .all(|e| e["via"] == "import" && e["version"] == "97.0.1"));
    assert_eq!(all[4]["via"], "cli");
    assert_eq!(all[4]["actor"], "cli:rel-eng");
    assert_eq!(
        (all[4]["old"].as_str(), all[4]["new"].as_str()),
        (Some("critical"), Some("non_critical"))
    );
    // Paging back with `before`.
    let before = all[4]["id"].as_i64().unwrap();
    let (_, older) = get_json(
        &app,
        &format!("/api/v1/releases/history?before={before}&limit=1"),
        &token,
    )
    .await;
    assert_eq!(older[0]["field"], "details");
    assert_eq!(older[0]["via"], "api");

    let printed = stdout(&run_cli(
        &app.db.url,
        &["releases", "history", "--version", "97.0.0"],
        &[],
    ));
    assert!(
        printed.contains("cli:rel-eng") && printed.contains("token:test"),
        "{printed}"
    );
    assert!(!printed.contains("97.0.1"));

    // Reading the history needs credentials; bad parameters are named.
    assert_eq!(app.get("/api/v1/releases/history").await.status(), 401);
    let (status, body) = get_json(&app, "/api/v1/releases/history?limit=0", &token).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("limit"));
}

#[tokio::test]
async fn audit_entries_cannot_be_changed_even_with_sql() {
    let app = TestApp::spawn().await;
    let out = run_cli(&app.db.url, &["releases", "add", "97.1.0"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let db = app.store();
    let mut conn = db.get().unwrap();
    let update = version_app::with_conn!(&mut conn, |c| diesel::sql_query(
        "UPDATE release_changes SET actor = 'someone else'"
    )
    .execute(c));
    assert!(update.is_err());
    let delete = version_app::with_conn!(&mut conn, |c| diesel::sql_query(
        "DELETE FROM release_changes"
    )
    .execute(c));
    assert!(delete.is_err());
    let printed = stdout(&run_cli(&app.db.url, &["releases", "history"], &[]));
    assert!(printed.contains("97.1.0") && !printed.contains("someone else"));
}

/// Active instances for the impact count: hosts seen by version checks, and Service Pings.
async fn arrange_population(app: &TestApp) {
    let now = Utc::now().naive_utc();
    let db = app.store();
    let mut conn = db.get().unwrap();
    let rows = [
        ("a.example", "19.1.1", now),
        ("b.example", "19.0.3", now),
        ("c.example", "18.10.0", now - Duration::days(3)),
        ("d.example", "19.1.1", now - Duration::days(40)),
    ];
    version_app::with_conn!(&mut conn, |c| {
        for (host, version, seen) in rows {
            diesel::insert_into(hosts::table)
                .values((
                    hosts::hostname.eq(host),
                    hosts::first_seen.eq(seen),
                    hosts::last_seen.eq(seen),
                    hosts::last_version.eq(version),
                ))
                .execute(c)
                .unwrap();
        }
    });
    for (uuid, host, version) in [
        (
            "11111111-1111-1111-1111-111111111111",
            "e.example",
            "18.11.6",
        ),
        (
            "22222222-2222-2222-2222-222222222222",
            "a.example",
            "19.1.1",
        ),
    ] {
        let body = minimal_with(json!({"uuid": uuid, "hostname": host, "version": version}));
        let response = app
            .client
            .post(app.url("/usage_data"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
}

const BATCH: &str = r#"{"versions": ["19.1.2", "19.0.4", "18.11.7"], "security": "critical",
  "advisory": "2026-12-01-critical", "details": "Remote code execution in the importer"}"#;

#[tokio::test]
async fn a_security_batch_dry_run_shows_its_impact_and_changes_nothing_then_applies() {
    let app = TestApp::spawn().await;
    arrange_population(&app).await;
    let token = app.token(Scope::ReleasesWrite);
    let active = ["19.1.1", "19.0.3", "18.10.0", "18.11.6"];
    let mut before = Vec::new();
    for v in active {
        before.push(check(&app, v).await);
    }

    let response = app
        .client
        .post(app.url("/api/v1/security_releases?dry_run=true"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(BATCH)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let dry: Value = response.json().await.unwrap();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        check(&app, "19.1.1").await,
        before[0],
        "a dry run changes nothing"
    );
    let (_, history) = get_json(&app, "/api/v1/releases/history", &token).await;
    assert!(history.as_array().unwrap().is_empty());

    let response = app
        .client
        .post(app.url("/api/v1/security_releases"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(BATCH)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let applied: Value = response.json().await.unwrap();
    let changes = applied["changes"].as_array().unwrap();
    assert!(changes
        .iter()
        .all(|c| c["via"] == "api" && c["actor"] == "token:test"));
    assert_eq!(
        changes.iter().filter(|c| c["field"] == "version").count(),
        3,
        "three new releases"
    );
    assert_eq!(dry["changes"].as_array().unwrap().len(), changes.len());

    // Independent count: what check.json told each active instance before and after.
    let mut after = Vec::new();
    for v in active {
        after.push(check(&app, v).await);
    }
    let changing = (0..4).filter(|&i| {
        before[i]["severity"] != after[i]["severity"]
            || before[i]["critical_vulnerability"] != after[i]["critical_vulnerability"]
    });
    let changing: Vec<usize> = changing.collect();
    let to_danger = changing
        .iter()
        .filter(|&&i| before[i]["severity"] != "danger" && after[i]["severity"] == "danger")
        .count();
    let to_critical = changing
        .iter()
        .filter(|&&i| {
            before[i]["critical_vulnerability"] == false
                && after[i]["critical_vulnerability"] == true
        })
        .count();
    let impact = &dry["impact"];
    assert_eq!(impact["active_installations"], 4, "{impact}");
    assert_eq!(
        impact["installations_changing"],
        changing.len() as u64,
        "{impact}"
    );
    assert_eq!(impact["to_danger"], to_danger as u64);
    assert_eq!(impact["to_critical"], to_critical as u64);
    assert_eq!(
        (changing.len(), to_danger, to_critical),
        (4, 3, 4),
        "the scenario as designed"
    );
    let lines: Vec<&str> = impact["per_line"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    assert_eq!(lines, vec!["19.1", "19.0", "18.11", "18.10"]);
    for answer in &after {
        assert_eq!(answer["severity"], "danger");
        assert_eq!(answer["critical_vulnerability"], true);
        assert_eq!(answer["details"], "Remote code execution in the importer");
    }
    assert_eq!(check(&app, "19.1.2").await["severity"], "success");
}

#[tokio::test]
async fn bad_batches_are_refused_by_name_and_change_nothing() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::ReleasesWrite);
    let cases = [
        (
            json!({"versions": [], "security": "critical", "advisory": "a"}),
            "no versions",
        ),
        (
            json!({"versions": ["19.x"], "security": "critical", "advisory": "a"}),
            "19.x",
        ),
        (
            json!({"versions": ["19.2.0", "19.2.0"], "security": "critical", "advisory": "a"}),
            "twice",
        ),
        (
            json!({"versions": ["19.2.0"], "security": "severe", "advisory": "a"}),
            "severe",
        ),
        (
            json!({"versions": ["19.2.0"], "security": "none", "advisory": "a"}),
            "non_critical or critical",
        ),
        (
            json!({"versions": ["19.2.0"], "security": "critical", "advisory": ""}),
            "advisory id",
        ),
        (
            json!({"versions": ["19.2.0", "19.1.1"], "security": "critical", "advisory": "2026-12-01-critical"}),
            "already belongs to the advisory 2026-06-23-non_critical",
        ),
    ];
    for (body, needle) in cases {
        let response = app
            .client
            .post(app.url("/api/v1/security_releases"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{body}");
        let err: Value = response.json().await.unwrap();
        assert!(
            err["message"].as_str().unwrap().contains(needle),
            "{needle}: {err}"
        );
    }
    let no_token = app
        .client
        .post(app.url("/api/v1/security_releases"))
        .body(BATCH)
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    let wrong_scope = app
        .client
        .post(app.url("/api/v1/security_releases"))
        .bearer_auth(app.token(Scope::InsightsRead))
        .body(BATCH)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_scope.status(), 403);
    let (_, history) = get_json(&app, "/api/v1/releases/history", &token).await;
    assert!(history.as_array().unwrap().is_empty());
    assert_eq!(check(&app, "19.1.1").await["severity"], "success");
}

#[tokio::test]
async fn a_revert_restores_the_previous_answers_and_is_itself_audited() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::ReleasesWrite);
    let before = check(&app, "19.0.3").await;
    let response = app
        .client
        .post(app.url("/api/v1/security_releases"))
        .bearer_auth(&token)
        .body(BATCH)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let applied: Value = response.json().await.unwrap();
    let first = applied["changes"][0]["id"].as_i64().unwrap();
    assert_eq!(check(&app, "19.0.3").await["critical_vulnerability"], true);

    let dry = run_cli(
        &app.db.url,
        &[
            "releases",
            "revert",
            &first.to_string(),
            "--batch",
            "--dry-run",
        ],
        &[],
    );
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(stdout(&dry).contains("nothing was saved"));
    assert_eq!(check(&app, "19.0.3").await["critical_vulnerability"], true);

    let out = run_cli(
        &app.db.url,
        &["releases", "revert", &first.to_string(), "--batch"],
        &[("USER", "ops")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("revert of batch"), "{}", stdout(&out));
    // The mirror of the snapshot notices the CLI's change within release_refresh_secs.
    let mut restored = Value::Null;
    for _ in 0..50 {
        restored = check(&app, "19.0.3").await;
        if restored == before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(restored, before);
    let exported = stdout(&run_cli(&app.db.url, &["releases", "export"], &[]));
    assert!(
        !exported.contains("19.1.2"),
        "created releases are removed again"
    );

    let (_, history) = get_json(&app, "/api/v1/releases/history?limit=1000", &token).await;
    let history = history.as_array().unwrap();
    let reverts: Vec<&Value> = history
        .iter()
        .filter(|e| {
            e["note"]
                .as_str()
                .is_some_and(|n| n.starts_with("revert of batch"))
        })
        .collect();
    assert_eq!(reverts.len(), applied["changes"].as_array().unwrap().len());
    assert!(reverts
        .iter()
        .all(|e| e["actor"] == "cli:ops" && e["via"] == "cli"));
    // Reverting again finds the fields changed since: refused, nothing changes.
    let again = run_cli(
        &app.db.url,
        &["releases", "revert", &first.to_string(), "--batch"],
        &[],
    );
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("changed since"),
        "{}",
        stderr(&again)
    );
}

#[tokio::test]
async fn export_is_taken_back_by_import_unchanged() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::ReleasesWrite);
    let response = app
        .client
        .patch(app.url("/api/v1/versions/19.1.1"))
        .bearer_auth(&token)
        .json(&json!({"security": "critical", "advisory": "x-1", "details": "quote \" comma , and\nnewline"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = run_cli(&app.db.url, &["releases", "export"], &[]);
    assert!(first.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.csv");
    std::fs::write(&file, &first.stdout).unwrap();
    let out = run_cli(
        &app.db.url,
        &["releases", "import", file.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("0 changed"), "{}", stdout(&out));
    let second = run_cli(&app.db.url, &["releases", "export"], &[]);
    assert_eq!(first.stdout, second.stdout);
    assert!(stdout(&first).starts_with("version,released_on,security,advisory,details\n"));

    // Into an empty store, the file recreates the same table.
    let other = TestApp::spawn_with(|s| s.releases.seed = false).await;
    let out = run_cli(
        &other.db.url,
        &["releases", "import", file.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        run_cli(&other.db.url, &["releases", "export"], &[]).stdout,
        first.stdout
    );
}
