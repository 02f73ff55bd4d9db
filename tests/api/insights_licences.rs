//! The licences views of `/api/v1/insights/…` and the admin-only raw payloads, over the
//! fleet of `insights_fleet`; expected numbers computed here from the posted payloads.

use crate::console_support::{get_with, login_as};
use crate::helpers::TestApp;
use crate::insights_fleet::{
    arrange, counted, excluded, fleet, get_json, rows, starts_of, Ping, RANGE,
};
use chrono::{Duration, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use version_app::auth::Scope;
use version_app::console::auth::Role;

/// The tier rule, written out again: an expired licence is Free.
fn tier(p: &Ping) -> &'static str {
    if p.expires.is_some_and(|e| e < p.at.date()) {
        return "Free";
    }
    match p.edition {
        "CE" | "EE Free" => "Free",
        "EE" | "EES" => "Starter",
        "EEP" => "Premium",
        "EEU" => "Ultimate",
        _ => "Unknown",
    }
}

#[tokio::test]
async fn licences_utilisation_and_lists() {
    let app =
        TestApp::spawn_with(|s| s.check.flush_interval = std::time::Duration::from_millis(100))
            .await;
    let token = app.token(Scope::InsightsRead);
    arrange(&app).await;
    let pings = fleet();
    for (period, week) in [("month", false), ("week", true)] {
        let mut want: BTreeMap<(String, String), (u64, i64, i64, u64)> = BTreeMap::new();
        for ((p, _), s) in counted(&pings, week) {
            let Some(seats) = s.seats.filter(|n| *n > 0) else {
                continue;
            };
            if s.active < 0 {
                continue;
            }
            let slot = want.entry((p.to_string(), tier(&s).into())).or_default();
            slot.0 += 1;
            slot.1 += s.active;
            slot.2 += seats;
            slot.3 += u64::from(s.active > seats);
        }
        let body = get_json(
            &app,
            &token,
            &format!("/api/v1/insights/licences/utilisation?period={period}&{RANGE}"),
        )
        .await;
        let got: BTreeMap<(String, String), (u64, i64, i64, u64)> = rows(&body)
            .iter()
            .map(|r| {
                let u = r["utilisation"].as_f64().unwrap();
                let (a, s) = (
                    r["active_users"].as_i64().unwrap(),
                    r["seats"].as_i64().unwrap(),
                );
                assert!((u - a as f64 / s as f64).abs() < 1e-12, "{r}");
                (
                    (
                        r["period"].as_str().unwrap().into(),
                        r["tier"].as_str().unwrap().into(),
                    ),
                    (
                        r["installations"].as_u64().unwrap(),
                        a,
                        s,
                        r["over_seats"].as_u64().unwrap(),
                    ),
                )
            })
            .collect();
        assert_eq!(got, want, "{period}");
    }
    // the lists, over each installation's latest submission in the last 28 days
    let today = Utc::now().date_naive();
    let recent: Vec<&Ping> = pings
        .iter()
        .filter(|p| !excluded(p.host) && p.at >= Utc::now().naive_utc() - Duration::days(28))
        .collect();
    let hosts = |f: &dyn Fn(&Ping) -> bool| -> BTreeSet<String> {
        recent
            .iter()
            .filter(|p| f(p))
            .map(|p| p.host.to_string())
            .collect()
    };
    let cases: [(&str, BTreeSet<String>); 4] = [
        (
            "list=over_seats",
            hosts(&|p| p.seats.is_some_and(|s| s > 0 && p.active > s)),
        ),
        (
            "list=expiring&within=30",
            hosts(&|p| {
                p.expires
                    .is_some_and(|e| e >= today && e <= today + Duration::days(30))
            }),
        ),
        (
            "list=expiring",
            hosts(&|p| {
                p.expires
                    .is_some_and(|e| e >= today && e <= today + Duration::days(90))
            }),
        ),
        ("list=trials", hosts(&|p| p.trial)),
    ];
    for (query, want) in cases {
        assert!(!want.is_empty(), "{query}");
        let body = get_json(&app, &token, &format!("/api/v1/insights/licences?{query}")).await;
        let got: BTreeSet<String> = rows(&body)
            .iter()
            .map(|r| r["hostname"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "{query}");
    }
    let body = get_json(&app, &token, "/api/v1/insights/licences?list=over_seats").await;
    let r1 = &rows(&body)[0];
    assert_eq!(
        (
            r1["seats"].as_i64(),
            r1["active_users"].as_i64(),
            r1["over_by"].as_i64()
        ),
        (Some(10), Some(12), Some(2))
    );
    assert_eq!(r1["add_ons"], "GitLab_FileLocks=1");
    assert_eq!(r1["days_to_expiry"].as_i64(), Some(20));
    let expires = fleet()
        .into_iter()
        .find(|p| p.host == r1["hostname"].as_str().unwrap())
        .and_then(|p| p.expires)
        .unwrap();
    assert_eq!(
        r1["starts_at"].as_str(),
        Some(starts_of(expires).to_string().as_str()),
        "license_starts_at is kept (as its UTC date)"
    );
    let body = get_json(&app, &token, "/api/v1/insights/licences?list=trials").await;
    let r4 = rows(&body)
        .iter()
        .find(|r| r["hostname"] == "<b>r4</b>.example")
        .unwrap();
    assert_eq!(
        (r4["tier"].as_str(), r4["seats"].as_i64()),
        (Some("Free"), None),
        "expired, no seat count"
    );
    for bad in ["list=expired", "list=expiring&within=0", "days=9999"] {
        let response = app
            .client
            .get(app.url(&format!("/api/v1/insights/licences?{bad}")))
            .header("PRIVATE-TOKEN", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn raw_payloads_are_for_admins_only_and_escaped() {
    let app =
        TestApp::spawn_with(|s| s.check.flush_interval = std::time::Duration::from_millis(100))
            .await;
    let ids = arrange(&app).await;
    let pings = fleet();
    let (i, _) = pings
        .iter()
        .enumerate()
        .find(|(_, p)| p.host.starts_with("<b>"))
        .unwrap();
    let (id, sent) = ids[i].clone();
    let path = format!("/api/v1/insights/raw/{id}");
    assert_eq!(app.get(&path).await.status(), 401);
    let token = app.token(Scope::InsightsRead);
    let response = app
        .client
        .get(app.url(&path))
        .header("PRIVATE-TOKEN", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert!(body.to_string().contains("admin"), "{body}");
    let analyst = login_as(&app, "ana", Role::Analyst).await;
    assert_eq!(get_with(&app, &analyst.cookie, &path).await.status(), 403);
    assert_eq!(
        get_with(
            &app,
            &analyst.cookie,
            &format!("/console/insights/raw/{id}")
        )
        .await
        .status(),
        403
    );
    let page = get_with(
        &app,
        &analyst.cookie,
        "/console/insights/installation?uuid=ur4&hostname=%3Cb%3Er4%3C/b%3E.example",
    )
    .await;
    assert!(
        !page
            .text()
            .await
            .unwrap()
            .contains("/console/insights/raw/"),
        "no raw links for analysts"
    );
    let admin = login_as(&app, "root", Role::Admin).await;
    let response = get_with(&app, &admin.cookie, &path).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let posted: Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(body["payload"], posted, "the payload as posted");
    let html = get_with(&app, &admin.cookie, &format!("/console/insights/raw/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("&lt;b&gt;r4&lt;/b&gt;.example") || html.contains("&#60;b&#62;r4"),
        "escaped"
    );
    assert!(!html.contains("<b>r4"));
    let page = get_with(
        &app,
        &admin.cookie,
        "/console/insights/installation?uuid=ur4&hostname=%3Cb%3Er4%3C/b%3E.example",
    )
    .await;
    assert!(page
        .text()
        .await
        .unwrap()
        .contains(&format!("/console/insights/raw/{id}")));
    // unknown and malformed ids: JSON errors naming the problem
    let missing = get_with(&app, &admin.cookie, "/api/v1/insights/raw/999999").await;
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("999999"));
    let bad = get_with(&app, &admin.cookie, "/api/v1/insights/raw/x1").await;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("usage_data_id"));
}
