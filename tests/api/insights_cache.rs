//! The insights series are kept per period by each process (`insights_cache_entries`) and
//! must follow every write: a late submission placed in an earlier period, a new
//! installation, a version check, an erasure. A second server on the same store with the
//! cache turned off answers every series from scratch; both must give the same JSON before
//! and after each change, and a change must show.

use crate::check_recording::wait_for_total;
use crate::helpers::{run_cli, TestApp};
use crate::insights::{refresh, RANGE};
use crate::insights_fleet::{arrange, check_from, get_json, CHECKS};
use crate::release_sync::sample;
use crate::usage_data::{minimal_with, post_json};
use serde_json::{json, Value};
use version_app::auth::Scope;
use version_app::startup::Application;

/// A second server on `app`'s store, with the cache off; returns its address.
pub(crate) async fn uncached_beside(app: &TestApp) -> String {
    let mut settings = app.settings.clone();
    settings.insights.cache_rows = 0;
    let server = Application::build(settings).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", server.port());
    tokio::spawn(server.run_until_stopped());
    address
}

/// Every cached series, weekly and monthly, with and without internal hosts, over the
/// fixed range and over the default one (which ends tomorrow, inside the current period).
fn series_paths() -> Vec<String> {
    let mut out = Vec::new();
    for period in ["week", "month"] {
        for range in [RANGE.to_string(), String::new()] {
            for internal in ["", "&include_internal=true"] {
                let q = format!("period={period}&{range}{internal}");
                for path in [
                    "installations",
                    "installations?by=tier",
                    "metrics/counts.issues",
                    "metrics/counts.issues?by=edition",
                    "versions",
                    "overview/activity",
                    "overview/sources",
                    "versions/penetration?version=18.0",
                    "versions/behind",
                    "versions/days_behind",
                    "versions/vulnerable_share",
                    "versions/sources",
                    "licences/utilisation",
                ] {
                    let sep = if path.contains('?') { '&' } else { '?' };
                    out.push(format!("/api/v1/insights/{path}{sep}{q}"));
                }
            }
        }
        // top lists: the latest complete period, and the changed February ones
        for at in ["", "&at=2026-02-11", "&at=2026-03-02"] {
            for internal in ["", "&include_internal=true"] {
                out.push(format!(
                    "/api/v1/insights/metrics/counts.issues/top?period={period}{at}{internal}"
                ));
            }
        }
    }
    out
}

/// Each series from the caching server, checked against the uncaching one.
async fn answers(app: &TestApp, uncached: &str, token: &str) -> Vec<Value> {
    same_answers(app, uncached, token, &series_paths()).await
}

/// Each of `paths` from the caching server, checked against the uncaching one.
pub(crate) async fn same_answers(
    app: &TestApp,
    uncached: &str,
    token: &str,
    paths: &[String],
) -> Vec<Value> {
    let mut out = Vec::new();
    for path in paths {
        let cached = get_json(app, token, path).await;
        let fresh: Value = app
            .client
            .get(format!("{uncached}{path}"))
            .header("PRIVATE-TOKEN", token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(cached, fresh, "{path}: the cached answer differs");
        out.push(cached);
    }
    out
}

/// `series{outcome="…"}` on the caching server's `/metrics`.
pub(crate) async fn outcome_count(app: &TestApp, series: &str, outcome: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    sample(&text, &format!("{series}{{outcome=\"{outcome}\"}}"))
}

/// `version_app_insights_cache_periods_total{outcome}` of the caching server.
async fn periods_served(app: &TestApp, outcome: &str) -> f64 {
    outcome_count(app, "version_app_insights_cache_periods_total", outcome).await
}

/// Erases the installations of `uuid` with the CLI (another process than the server).
pub(crate) fn erase_by_cli(app: &TestApp, uuid: &str) {
    let out = run_cli(
        &app.db.url,
        &["erase", "--uuid", uuid],
        &crate::privacy_erase::key_env(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether an answer of a path containing `needle` differs between `before` and `after`.
pub(crate) fn changed(paths: &[String], before: &[Value], after: &[Value], needle: &str) -> bool {
    paths
        .iter()
        .zip(before.iter().zip(after))
        .any(|(path, (b, a))| path.contains(needle) && b != a)
}

#[tokio::test]
async fn cached_series_follow_late_submissions_checks_and_erasures() {
    follows_every_write(TestApp::spawn().await, true).await;
}

/// With room for a few rows only, the cache is emptied again and again while answering.
#[tokio::test]
async fn a_full_cache_is_emptied_and_answers_stay_right() {
    follows_every_write(
        TestApp::spawn_with(|s| s.insights.cache_rows = 5).await,
        false,
    )
    .await;
}

/// `keeps_all`: the cache has room for every period asked (so a second ask computes nothing).
async fn follows_every_write(app: TestApp, keeps_all: bool) {
    let token = app.token(Scope::InsightsRead);
    arrange(&app).await;
    let uncached = uncached_beside(&app).await;

    let first = answers(&app, &uncached, &token).await;
    let computed = periods_served(&app, "computed").await;
    // asked again: served from the cache, still the same, nothing computed
    assert_eq!(first, answers(&app, &uncached, &token).await);
    if keeps_all {
        assert_eq!(periods_served(&app, "computed").await, computed);
        assert!(periods_served(&app, "reused").await > 0.0);
    }

    // A late upload into February (a new installation, and a later submission of a.example
    // in a week and month that already had one, on another version and metric value), and a
    // version check from a host never seen.
    for (uuid, host, at, version, issues) in [
        ("ulate", "late.example", "2026-02-11", "17.0.0", 7),
        ("ua", "a.example", "2026-02-12", "18.1.0", 5000),
    ] {
        let body = minimal_with(json!({
            "uuid": uuid, "hostname": host, "version": version, "edition": "EEP",
            "recorded_at": format!("{at} 12:00:00 UTC"), "active_user_count": 3,
            "license_user_count": 10, "counts": {"issues": issues},
        }));
        assert_eq!(post_json(&app, body).await.status(), 201);
    }
    check_from(&app, "new-host.example", "16.5.0").await;
    wait_for_total(&app.store(), CHECKS.len() as i64 + 1).await;
    refresh(&app);

    let second = answers(&app, &uncached, &token).await;
    for view in [
        "installations",
        "metrics/counts.issues",
        "versions?",
        "overview/activity",
        "overview/sources",
        "versions/sources",
        "licences/utilisation",
        "top?period=week&at=2026-02-11",
        "top?period=month&at=2026-02-11",
    ] {
        assert!(
            changed(&series_paths(), &first, &second, view),
            "{view} did not change"
        );
    }

    // An erasure (the CLI, another process) removes an installation from every period.
    erase_by_cli(&app, "ulate");
    let third = answers(&app, &uncached, &token).await;
    assert!(changed(&series_paths(), &second, &third, "installations"));
}
