//! The metrics page's data: `metrics import` (a definition's time frame decides the rule, a
//! re-import replaces, a malformed file changes nothing), the catalogue (first and last
//! version, installations last month, search and paging) and the top lists. Expected numbers
//! come from the independent model in `insights_model.rs`, never from the server's code.

use crate::console_support::{get_page, login_as};
use crate::helpers::{run_cli, TestApp};
use crate::insights::{fleet, post_all, refresh, Sub, RANGE};
use crate::insights_model::{counted, expected_metric, get_json, metric_rows, month_of};
use chrono::{Duration, Months, NaiveDateTime, Utc};
use secrecy::ExposeSecret;
use serde_json::Value;
use std::collections::BTreeMap;
use version_app::auth::Scope;
use version_app::console::auth::Role;

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, String) {
    let response = app
        .client
        .get(app.url(path))
        .header("PRIVATE-TOKEN", token)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Runs `metrics import` on a file holding `yaml`.
fn import(app: &TestApp, yaml: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("definitions.yml");
    std::fs::write(&file, yaml).unwrap();
    run_cli(
        app.settings.store.url.expose_secret(),
        &["metrics", "import", file.to_str().unwrap()],
        &[],
    )
}

/// The catalogue row of one key path.
async fn catalogue_row(app: &TestApp, token: &str, key: &str) -> Value {
    let body = get_json(
        app,
        token,
        &format!("/api/v1/insights/metrics?q={key}&per_page=5000"),
    )
    .await;
    body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key_path"] == key)
        .cloned()
        .unwrap_or_else(|| panic!("{key} not in {body}"))
}

/// Both metrics' monthly and weekly series against the model, with the given time frames.
async fn assert_series(
    app: &TestApp,
    token: &str,
    subs: &[Sub],
    issues_cumulative: bool,
    deploys_cumulative: bool,
    received: NaiveDateTime,
) {
    for (period, week) in [("month", false), ("week", true)] {
        let placed = counted(subs, received, week, false);
        let issues = get_json(
            app,
            token,
            &format!("/api/v1/insights/metrics/counts.issues?period={period}&{RANGE}"),
        )
        .await;
        assert_eq!(
            metric_rows(&issues),
            expected_metric(&placed, issues_cumulative, |s| s.issues, false),
            "{period} counts.issues"
        );
        let deploys = get_json(
            app,
            token,
            &format!("/api/v1/insights/metrics/counts_monthly.deployments?period={period}&by=tier&{RANGE}"),
        )
        .await;
        assert_eq!(
            metric_rows(&deploys),
            expected_metric(&placed, deploys_cumulative, |s| s.deploys, true),
            "{period} counts_monthly.deployments"
        );
    }
}

const DEFINITIONS: &str = r#"
- key_path: counts_monthly.deployments
  description: Deployments, as a <b>running</b> total here
  product_group: environments
  value_type: number
  status: active
  time_frame: all
  data_source: database
  tier: [free, premium, ultimate]
- key_path: counts.issues
  description: Issues created
  product_group: project_management
  value_type: number
  status: active
  time_frame: none
  data_source: database
  tier: free
"#;

#[tokio::test]
async fn imported_time_frames_decide_the_series_and_a_bad_file_changes_nothing() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::InsightsRead);
    let subs = fleet();
    post_all(&app, &subs).await;
    let received = Utc::now().naive_utc();
    refresh(&app);
    // Before: the key-path rule (counts.* all-time, counts_monthly.* 28 days).
    assert_series(&app, &token, &subs, true, false, received).await;
    let row = catalogue_row(&app, &token, "counts.issues").await;
    assert_eq!(
        (
            row["time_frame"].as_str(),
            row["time_frame_source"].as_str()
        ),
        (Some("all"), Some("key_path"))
    );

    // The import swaps the two rules; the series follow at once, with no rebuild.
    let out = import(&app, DEFINITIONS);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 definition(s) stored"), "{stdout}");
    assert!(
        stdout.contains("2 received key path(s) changed"),
        "{stdout}"
    );
    assert!(stdout.contains("apply at once"), "{stdout}");
    assert_series(&app, &token, &subs, false, true, received).await;
    let issues = get_json(
        &app,
        &token,
        &format!("/api/v1/insights/metrics/counts.issues?{RANGE}"),
    )
    .await;
    assert_eq!(
        (
            issues["time_frame"].as_str(),
            issues["time_frame_source"].as_str()
        ),
        (Some("none"), Some("definition"))
    );
    let row = catalogue_row(&app, &token, "counts_monthly.deployments").await;
    assert_eq!(row["time_frame"], "all");
    assert_eq!(row["time_frame_source"], "definition");
    assert_eq!(row["product_group"], "environments");
    assert_eq!(row["status"], "active");
    assert_eq!(row["tier"], "free, premium, ultimate");
    assert_eq!(
        row["description"],
        "Deployments, as a <b>running</b> total here"
    );
    // Searching finds descriptions too, and the time-frame filter narrows.
    let found = get_json(
        &app,
        &token,
        "/api/v1/insights/metrics?q=RUNNING&source=definition",
    )
    .await;
    assert_eq!(found["total"], 1, "{found}");
    let none = get_json(
        &app,
        &token,
        "/api/v1/insights/metrics?q=counts.&time_frame=none",
    )
    .await;
    assert!(none["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["time_frame"] == "none"));
    assert!(none["rows"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["key_path"] == "counts.issues"));

    // A malformed file (entry 1's time frame) changes nothing and names the entry.
    let bad = "- key_path: counts.issues\n  time_frame: all\n- key_path: counts_monthly.deployments\n  time_frame: 30d\n";
    let out = import(&app, bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("entry 1")
            && stderr.contains("counts_monthly.deployments")
            && stderr.contains("30d"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    assert_series(&app, &token, &subs, false, true, received).await;
    assert_eq!(
        catalogue_row(&app, &token, "counts.issues").await["time_frame_source"],
        "definition"
    );
    let out = import(&app, "not: [a, list");
    assert!(!out.status.success());

    // A re-import replaces: deployments has no definition any more, so the key-path rule is back.
    let out = import(&app, "- key_path: counts.issues\n  time_frame: none\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_series(&app, &token, &subs, false, false, received).await;
    let row = catalogue_row(&app, &token, "counts_monthly.deployments").await;
    assert_eq!(
        (
            row["time_frame"].as_str(),
            row["time_frame_source"].as_str()
        ),
        (Some("28d"), Some("key_path"))
    );
    assert_eq!(row["description"], Value::Null);
    // The incremental rollups after an import still equal a rebuild.
    let before = get_json(
        &app,
        &token,
        &format!("/api/v1/insights/metrics/counts.issues?period=week&{RANGE}"),
    )
    .await;
    let out = run_cli(
        app.settings.store.url.expose_secret(),
        &["insights", "rebuild"],
        &[],
    );
    assert!(out.status.success());
    assert_eq!(
        before,
        get_json(
            &app,
            &token,
            &format!("/api/v1/insights/metrics/counts.issues?period=week&{RANGE}")
        )
        .await
    );
}

/// A fleet in the last two complete months: versions that sort differently as text and as
/// numbers, a key only newer versions send, growth and decline, an internal host, a special value.
fn recent_fleet() -> (Vec<Sub>, Vec<&'static str>) {
    let today = Utc::now().date_naive();
    let last = month_of(today) - Months::new(1);
    let before = last - Months::new(1);
    let at = |month: chrono::NaiveDate, day: i64| {
        (month + Duration::days(day)).and_hms_opt(9, 0, 0).unwrap()
    };
    let s = |uuid, host, recorded_at, version, issues, deploys| Sub {
        uuid,
        host,
        recorded_at,
        edition: "EE",
        expires: None,
        version,
        issues,
        deploys,
        tier: "Starter",
    };
    // Keys that carry `usage_activity_by_stage_monthly.plan.notes` (marked by the version).
    let with_notes = vec!["18.10.0", "18.9.1"];
    let subs = vec![
        s("r-1", "one.example", at(before, 3), "17.11.2", 10.0, 5.0),
        s("r-1", "one.example", at(last, 3), "18.9.1", 30.0, 25.0),
        s("r-2", "two.example", at(before, 4), "18.7.0", 10.0, 40.0),
        s("r-2", "two.example", at(last, 4), "18.10.0", 11.0, 12.0),
        s("r-3", "three.example", at(last, 5), "18.8.2", 12.0, 25.0),
        s("r-4", "four.example", at(before, 6), "18.8.0", 10.0, 7.0),
        s("r-4", "four.example", at(last, 6), "18.8.0", 11.0, 8.0),
        s("r-5", "five.example", at(last, 7), "18.8.0", 1.0, -1.0),
        s(
            "r-6",
            "staging.six.example",
            at(last, 8),
            "18.11.0",
            1.0,
            999.0,
        ),
        s(
            "r-6",
            "staging.six.example",
            at(before, 8),
            "16.0.0",
            1.0,
            1.0,
        ),
    ];
    (subs, with_notes)
}

fn version_key(v: &str) -> (u64, u64, u64) {
    let p: Vec<u64> = v.split('.').map(|x| x.parse().unwrap()).collect();
    (p[0], p[1], p[2])
}

#[tokio::test]
async fn catalogue_versions_counts_and_top_lists() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::InsightsRead);
    let (subs, with_notes) = recent_fleet();
    for s in &subs {
        let mut payload: Value = serde_json::from_slice(&crate::insights::payload(s)).unwrap();
        if with_notes.contains(&s.version) {
            payload["usage_activity_by_stage_monthly"] = serde_json::json!({"plan": {"notes": 3}});
        }
        let response =
            crate::usage_data::post_json(&app, serde_json::to_vec(&payload).unwrap()).await;
        assert_eq!(response.status(), 201);
    }
    let received = Utc::now().naive_utc();
    refresh(&app);

    // First and last version per key, over every submission (internal hosts too).
    let range_of = |keep: &dyn Fn(&Sub) -> bool| {
        let versions: Vec<&str> = subs.iter().filter(|s| keep(s)).map(|s| s.version).collect();
        let min = versions
            .iter()
            .min_by_key(|v| version_key(v))
            .unwrap()
            .to_string();
        let max = versions
            .iter()
            .max_by_key(|v| version_key(v))
            .unwrap()
            .to_string();
        (min, max)
    };
    let placed = counted(&subs, received, false, false);
    let last_month = month_of(Utc::now().date_naive()) - Months::new(1);
    for (key, keep) in [
        ("counts.issues", &(|_: &Sub| true) as &dyn Fn(&Sub) -> bool),
        ("usage_activity_by_stage_monthly.plan.notes", &|s: &Sub| {
            with_notes.contains(&s.version)
        }),
    ] {
        let row = catalogue_row(&app, &token, key).await;
        let (first, last) = range_of(keep);
        assert_eq!(
            row["first_version"].as_str(),
            Some(first.as_str()),
            "{key}: {row}"
        );
        assert_eq!(
            row["last_version"].as_str(),
            Some(last.as_str()),
            "{key}: {row}"
        );
        let reporting = placed
            .iter()
            .filter(|p| p.period == last_month && keep(&p.sub))
            .count();
        assert_eq!(
            row["installations_last_month"].as_u64(),
            Some(reporting as u64),
            "{key}"
        );
    }
    // Spot check by hand: 16.0.0 (staging) to 18.11.0; 5 non-internal installations last month.
    let row = catalogue_row(&app, &token, "counts.issues").await;
    assert_eq!(
        (row["first_version"].as_str(), row["last_version"].as_str()),
        (Some("16.0.0"), Some("18.11.0"))
    );
    assert_eq!(row["installations_last_month"], 5);

    // Paging: the pages of a search are the sorted list cut in pieces.
    let all = get_json(
        &app,
        &token,
        "/api/v1/insights/metrics?q=counts&per_page=5000",
    )
    .await;
    let names: Vec<&str> = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key_path"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(names.iter().all(|n| n.to_lowercase().contains("counts")));
    let second = get_json(
        &app,
        &token,
        "/api/v1/insights/metrics?q=counts&per_page=2&page=2",
    )
    .await;
    let got: Vec<&str> = second["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key_path"].as_str().unwrap())
        .collect();
    assert_eq!(got, names[2..4.min(names.len())].to_vec());
    assert_eq!(second["total"].as_u64(), Some(names.len() as u64));
    let (status, csv) = get(
        &app,
        &token,
        "/api/v1/insights/metrics?q=counts.issues&format=csv",
    )
    .await;
    assert_eq!(status, 200);
    assert!(csv.starts_with("key_path,time_frame,time_frame_source,first_version,last_version,installations_last_month,description,product_group,status,tier\n"), "{csv}");
    for bad in [
        "page=0",
        "per_page=9999999",
        "time_frame=1y",
        "source=guess",
        "colour=red",
    ] {
        let (status, body) = get(&app, &token, &format!("/api/v1/insights/metrics?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body.contains(bad.split('=').next().unwrap()),
            "{bad}: {body}"
        );
    }

    // Top lists of the 28-day metric for last month against the month before, from the model.
    let values = |month| -> BTreeMap<(String, String), f64> {
        placed
            .iter()
            .filter(|p| p.period == month && ![-1.0, -2.0, -3.0, -1000.0].contains(&p.sub.deploys))
            .map(|p| (p.installation.clone(), p.sub.deploys))
            .collect()
    };
    let (now, before) = (values(last_month), values(last_month - Months::new(1)));
    let mut top: Vec<(f64, String)> = now.iter().map(|((_, h), v)| (*v, h.clone())).collect();
    top.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut changes: Vec<(f64, String)> = now
        .iter()
        .filter_map(|(k, v)| before.get(k).map(|p| (v - p, k.1.clone())))
        .collect();
    let mut growing: Vec<_> = changes.iter().filter(|c| c.0 > 0.0).cloned().collect();
    growing.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    changes.retain(|c| c.0 < 0.0);
    changes.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let body = get_json(
        &app,
        &token,
        "/api/v1/insights/metrics/counts_monthly.deployments/top",
    )
    .await;
    assert_eq!(body["period_start"], last_month.to_string());
    let list = |name: &str, field: &str| -> Vec<(f64, String)> {
        body["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["list"] == name)
            .map(|r| {
                (
                    r[field].as_f64().unwrap(),
                    r["hostname"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(list("top", "value"), top);
    assert_eq!(list("growing", "change"), growing);
    assert_eq!(list("declining", "change"), changes);
    // By hand: one grew 5 → 25 (+20), four 7 → 8 (+1); two fell 40 → 12 (-28).
    assert_eq!(
        growing,
        vec![(20.0, "one.example".into()), (1.0, "four.example".into())]
    );
    assert_eq!(changes, vec![(-28.0, "two.example".into())]);
    assert_eq!(top[0], (25.0, "one.example".into()));
    let declining = get_json(
        &app,
        &token,
        "/api/v1/insights/metrics/counts_monthly.deployments/top?list=declining&format=json",
    )
    .await;
    assert_eq!(declining["rows"].as_array().unwrap().len(), 1);
    let (status, body) = get(&app, &token, "/api/v1/insights/metrics/no.such.key/top").await;
    assert_eq!(status, 404);
    assert!(body.contains("no.such.key"));
    let (status, body) = get(
        &app,
        &token,
        "/api/v1/insights/metrics/counts.issues/top?at=yesterday",
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("`at`"));

    // The page shows the lists, linking to each installation's page, and the catalogue.
    let session = login_as(&app, "ana", Role::Analyst).await;
    let page = get_page(
        &app,
        &session.cookie,
        "/console/insights/metrics?key=counts_monthly.deployments&q=deployments",
    )
    .await;
    for key in [
        "data-section=\"top\"",
        "data-section=\"growing\"",
        "data-section=\"declining\"",
        "data-section=\"catalogue\"",
    ] {
        assert!(page.contains(key), "{key}");
    }
    assert!(
        page.contains("/console/insights/installation?uuid=r-2&#38;hostname=two.example"),
        "link: {}",
        &page[page.find("data-section=\"declining\"").unwrap_or(0)..][..1500]
    );
    assert!(
        page.contains("/api/v1/insights/metrics/counts%5Fmonthly%2Edeployments/top?"),
        "data link"
    );
}
