//! The window lists (backport, vulnerable, licence lists) are computed from latest reports
//! each process keeps and updates week by week (`insights::window_cache`). They must follow
//! every write: a later submission of a known installation, a new installation, version
//! checks from a new host and a newer one from a known host, an erasure. A second server on
//! the same store with the cache off reads everything at every ask; both must answer the
//! same before and after each change, and each change must show.

use crate::check_recording::wait_for_total;
use crate::helpers::TestApp;
use crate::insights::refresh;
use crate::insights_cache::{changed, erase_by_cli, outcome_count, same_answers, uncached_beside};
use crate::insights_fleet::{arrange, check_from, payload, Ping, CHECKS};
use crate::usage_data::post_json;
use chrono::{Duration, Utc};
use serde_json::Value;
use version_app::auth::Scope;

/// Every window list, over windows asked narrowest first (so the kept reports must reach
/// further back at the second and third), with and without internal hosts.
fn list_paths() -> Vec<String> {
    let mut out = Vec::new();
    for days in [7, 28, 365] {
        for internal in ["", "&include_internal=true"] {
            let q = format!("days={days}{internal}");
            for path in [
                format!("backport?{q}"),
                format!("backport?{q}&affected_from=18.0.0&affected_to=18.6.9"),
                format!("vulnerable?{q}"),
                format!("vulnerable?{q}&critical=true"),
                format!("licences?list=over_seats&{q}"),
                format!("licences?list=expiring&within=90&{q}"),
                format!("licences?list=trials&{q}"),
            ] {
                out.push(format!("/api/v1/insights/{path}"));
            }
        }
    }
    out
}

async fn answers(app: &TestApp, uncached: &str, token: &str) -> Vec<Value> {
    same_answers(app, uncached, token, &list_paths()).await
}

/// `version_app_insights_window_asks_total{outcome}` of the caching server.
async fn asks(app: &TestApp, outcome: &str) -> f64 {
    outcome_count(app, "version_app_insights_window_asks_total", outcome).await
}

fn recent(uuid: &'static str, host: &'static str, days_ago: i64, version: &'static str) -> Ping {
    Ping {
        uuid,
        host,
        at: Utc::now().naive_utc() - Duration::days(days_ago),
        version,
        edition: "EEP",
        active: 30,
        seats: Some(20),
        expires: Some(Utc::now().date_naive() + Duration::days(45)),
        trial: days_ago > 5,
        add_on: None,
    }
}

#[tokio::test]
async fn kept_window_lists_follow_submissions_checks_and_erasures() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::InsightsRead);
    arrange(&app).await;
    // An installation seen 20 days ago only (in the 28-day window, not the 7-day one).
    assert_eq!(
        post_json(&app, payload(&recent("uw", "w.example", 20, "17.0.0")))
            .await
            .status(),
        201
    );
    refresh(&app);
    let uncached = uncached_beside(&app).await;

    let first = answers(&app, &uncached, &token).await;
    assert!(
        asks(&app, "read_in_full").await >= 2.0,
        "wider windows read again"
    );
    let full = asks(&app, "read_in_full").await;
    // asked again: the same, and nothing read (the narrower windows' answers were computed
    // before the wider ones read the reports again, so they are computed once more)
    assert_eq!(first, answers(&app, &uncached, &token).await);
    assert_eq!(asks(&app, "read_in_full").await, full);
    assert_eq!(asks(&app, "weeks_read").await, 0.0);
    // and a third time every answer is a kept one
    let reused = asks(&app, "answer_reused").await;
    assert_eq!(first, answers(&app, &uncached, &token).await);
    assert_eq!(
        asks(&app, "answer_reused").await,
        reused + list_paths().len() as f64
    );

    // A later submission of w.example on another version, a new installation, a check from
    // a new host and a newer version from a known one.
    for ping in [
        recent("uw", "w.example", 1, "18.7.0"),
        recent("un", "n.example", 2, "16.1.0"),
    ] {
        assert_eq!(post_json(&app, payload(&ping)).await.status(), 201);
    }
    check_from(&app, "new-host.example", "16.5.0").await;
    check_from(&app, "y.example", "18.9.0").await;
    wait_for_total(&app.store(), CHECKS.len() as i64 + 2).await;
    refresh(&app);

    let second = answers(&app, &uncached, &token).await;
    for view in ["backport", "vulnerable", "list=over_seats", "list=trials"] {
        assert!(
            changed(&list_paths(), &first, &second, view),
            "{view} did not change"
        );
    }
    // only the changed weeks were read again
    assert_eq!(asks(&app, "read_in_full").await, full);
    assert!(asks(&app, "weeks_read").await >= 1.0);

    // An erasure (the CLI, another process) removes an installation from every list.
    erase_by_cli(&app, "un");
    let third = answers(&app, &uncached, &token).await;
    assert!(changed(&list_paths(), &second, &third, "vulnerable"));
    assert!(asks(&app, "read_in_full").await > full);
}
