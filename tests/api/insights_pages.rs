//! The insights pages: behind an analyst's login, friendly when empty, escaped, and (in
//! headless Chromium) every chart drawn with marks and every table equal to the API.

use crate::check::check_path;
use crate::check_recording::wait_for_total;
use crate::console_support::{add_user, get_with, login_as};
use crate::helpers::TestApp;
use crate::insights::{fleet, post_all, refresh, RANGE};
use crate::usage_data::{minimal_with, post_json};
use chrono::{Duration, Utc};
use serde_json::{json, Value};
use version_app::auth::Scope;
use version_app::console::auth::Role;

const PAGES: [&str; 7] = [
    "/console/insights",
    "/console/insights/licences",
    "/console/insights/versions",
    "/console/insights/backport",
    "/console/insights/metrics",
    "/console/insights/vulnerable",
    "/console/insights/installation?uuid=u-a&hostname=git.alpha.example",
];

/// The fleet, a recent submission on an old (vulnerable) version from a hostname with
/// markup, and a version check from another host.
async fn arrange(app: &TestApp) {
    post_all(app, &fleet()).await;
    let recent = (Utc::now().naive_utc() - Duration::days(2)).format("%Y-%m-%d %H:%M:%S");
    let body = minimal_with(json!({
        "uuid": "u-vuln", "hostname": "<i>vuln</i>.example", "version": "17.0.0",
        "recorded_at": format!("{recent} UTC"),
    }));
    assert_eq!(post_json(app, body).await.status(), 201);
    let response = app
        .client
        .get(app.url(&check_path("check.json", "16.0.0")))
        .header("Referer", "https://checker.example/admin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    wait_for_total(&app.store(), 1).await;
    refresh(app);
}

#[tokio::test]
async fn pages_need_an_analyst_are_escaped_and_friendly_when_empty() {
    let app =
        TestApp::spawn_with(|s| s.check.flush_interval = std::time::Duration::from_millis(100))
            .await;
    for page in PAGES {
        let response = app.get(page).await;
        assert_eq!(response.status(), 303, "{page} without a session");
        assert!(response.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login"));
    }
    let session = login_as(&app, "ana", Role::Analyst).await;
    // An empty store: friendly empty states, never an error.
    for page in PAGES {
        let response = get_with(&app, &session.cookie, page).await;
        assert_eq!(response.status(), 200, "{page}");
        let html = response.text().await.unwrap();
        assert!(
            html.contains("Nothing here yet")
                || html.contains("No ")
                || html.contains("Nothing is known"),
            "{page} has no empty state"
        );
    }
    arrange(&app).await;
    let vulnerable = get_with(&app, &session.cookie, "/console/insights/vulnerable").await;
    let html = vulnerable.text().await.unwrap();
    assert!(
        html.contains("&#60;i&#62;vuln&#60;") || html.contains("&lt;i&gt;vuln&lt;"),
        "hostname escaped"
    );
    assert!(!html.contains("<i>vuln"), "no markup from a payload");
    assert!(
        html.contains("checker.example"),
        "version-check hosts are listed too"
    );
    // filters in the URL; a bad one re-renders the page naming it
    let bad = get_with(
        &app,
        &session.cookie,
        "/console/insights?from=2026-05-01&to=2026-04-01",
    )
    .await;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("`from`"));
    let unknown = get_with(
        &app,
        &session.cookie,
        "/console/insights/metrics?key=no.such.key",
    )
    .await;
    assert!(unknown
        .text()
        .await
        .unwrap()
        .contains("unknown metric key path `no.such.key`"));
    // the API answers an analyst's session too (session or token)
    let api = get_with(&app, &session.cookie, "/api/v1/insights/vulnerable").await;
    assert_eq!(api.status(), 200);
    let body: Value = api.json().await.unwrap();
    assert!(body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["hostname"] == "<i>vuln</i>.example"));
}

async fn api(app: &TestApp, token: &str, path: &str) -> Value {
    app.client
        .get(app.url(path))
        .header("PRIVATE-TOKEN", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The text of every cell of a page table, row by row.
async fn table(browser: &fantoccini::Client, section: &str) -> Vec<Vec<String>> {
    let value = browser
        .execute(
            "return [...document.querySelectorAll(`table[data-section='${arguments[0]}'] tbody tr`)]\
             .map(tr => [...tr.cells].map(td => td.textContent.trim()))",
            vec![json!(section)],
        )
        .await
        .unwrap();
    serde_json::from_value(value).unwrap()
}

/// Drawn marks per chart on the page.
async fn marks(browser: &fantoccini::Client) -> Vec<u64> {
    let value = browser
        .execute(
            "return [...document.querySelectorAll('figure[data-chart]')]\
             .map(f => [...f.querySelectorAll('rect.mark')].filter(r => r.getBBox().height > 0).length)",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(value).unwrap()
}

#[tokio::test]
async fn chromium_shows_every_insights_page_with_charts_matching_the_api() {
    use fantoccini::Locator;
    let Some(driver) = crate::usage_upload::start_driver() else {
        return;
    };
    let app =
        TestApp::spawn_with(|s| s.check.flush_interval = std::time::Duration::from_millis(100))
            .await;
    arrange(&app).await;
    add_user(&app, "ana", Role::Analyst);
    let token = app.token(Scope::InsightsRead);
    let browser = crate::console_auth::browser(&driver).await;
    browser.goto(&app.url("/console/insights")).await.unwrap();
    crate::console_support::log_in_in_browser(&browser, "ana").await;
    browser
        .wait()
        .for_element(Locator::Id("signed-in-as"))
        .await
        .unwrap();
    let shot = |name: &'static str| {
        let browser = browser.clone();
        async move {
            let png = browser.screenshot().await.unwrap();
            std::fs::write(format!("/tmp/insights-{name}.png"), png).unwrap();
            if let Ok(figure) = browser.find(fantoccini::Locator::Css("figure")).await {
                let png = figure.screenshot().await.unwrap();
                std::fs::write(format!("/tmp/insights-{name}-chart.png"), png).unwrap();
            }
        }
    };

    // Overview: installations per month by tier.
    browser
        .goto(&app.url(&format!("/console/insights?period=month&by=tier&{RANGE}")))
        .await
        .unwrap();
    let expected = api(
        &app,
        &token,
        &format!("/api/v1/insights/installations?period=month&by=tier&{RANGE}"),
    )
    .await;
    let rows = table(&browser, "installations").await;
    let want: Vec<Vec<String>> = expected["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            vec![
                r["period"].as_str().unwrap().into(),
                r["group"].as_str().unwrap().into(),
                r["installations"].to_string(),
            ]
        })
        .collect();
    assert_eq!(
        rows.iter().map(|r| r[..3].to_vec()).collect::<Vec<_>>(),
        want
    );
    let drawn = marks(&browser).await;
    assert_eq!(drawn.len(), 4, "installations, activity, churned, sources");
    assert_eq!(
        drawn[0] as usize,
        want.len(),
        "one mark per (period, tier) with installations"
    );
    shot("overview").await;

    // Versions: per minor line, and the vulnerable share.
    browser
        .goto(&app.url(&format!("/console/insights/versions?period=month&{RANGE}")))
        .await
        .unwrap();
    let expected = api(
        &app,
        &token,
        &format!("/api/v1/insights/versions?period=month&{RANGE}"),
    )
    .await;
    let want: Vec<Vec<String>> = expected["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            vec![
                r["period"].as_str().unwrap().into(),
                r["minor"].as_str().unwrap().into(),
                r["installations"].to_string(),
            ]
        })
        .collect();
    let rows = table(&browser, "versions").await;
    assert_eq!(
        rows.iter().map(|r| r[..3].to_vec()).collect::<Vec<_>>(),
        want
    );
    let drawn = marks(&browser).await;
    assert_eq!(
        drawn.len(),
        5,
        "adoption, penetration, versions behind, vulnerable share, both sources"
    );
    assert!(drawn.iter().all(|n| *n > 0), "{drawn:?}");
    shot("versions").await;

    // Backport report with a what-if range.
    browser
        .goto(
            &app.url("/console/insights/backport?days=28&affected_from=16.0.0&affected_to=17.0.0"),
        )
        .await
        .unwrap();
    let expected = api(
        &app,
        &token,
        "/api/v1/insights/backport?days=28&affected_from=16.0.0&affected_to=17.0.0",
    )
    .await;
    let want: Vec<Vec<String>> = expected["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            vec![
                r["minor"].as_str().unwrap().into(),
                r["installations"].to_string(),
                r["hosts"].to_string(),
                r["active"].to_string(),
                r["affected"].to_string(),
            ]
        })
        .collect();
    let rows = table(&browser, "backport").await;
    assert_eq!(
        rows.iter()
            .map(|r| vec![
                r[0].clone(),
                r[1].clone(),
                r[2].clone(),
                r[3].clone(),
                r[7].clone()
            ])
            .collect::<Vec<_>>(),
        want
    );
    assert!(
        want.iter().any(|r| r[0] == "17.0" && r[4] == "1"),
        "{want:?}"
    );
    let with_active = want.iter().filter(|r| r[3] != "0").count() as u64;
    assert_eq!(marks(&browser).await, vec![with_active]);
    shot("backport").await;

    // Metrics: the catalogue searched, and one metric's weekly series.
    browser
        .goto(&app.url(&format!(
            "/console/insights/metrics?q=counts.issues&key=counts.issues&period=week&{RANGE}"
        )))
        .await
        .unwrap();
    let expected = api(
        &app,
        &token,
        &format!("/api/v1/insights/metrics/counts.issues?period=week&{RANGE}"),
    )
    .await;
    let want: Vec<Vec<String>> = expected["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            vec![
                r["period"].as_str().unwrap().into(),
                r["installations_reporting"].to_string(),
                r["sum"].to_string(),
                r["excluded_special"].to_string(),
            ]
        })
        .collect();
    let rows = table(&browser, "metric").await;
    let got: Vec<Vec<String>> = rows
        .iter()
        .map(|r| vec![r[0].clone(), r[2].clone(), r[4].clone(), r[7].clone()])
        .collect();
    // JSON writes sums as floats (8.0), the page as numbers (8)
    let normalise = |rows: Vec<Vec<String>>| -> Vec<Vec<f64>> {
        rows.iter()
            .map(|r| r[1..].iter().map(|c| c.parse::<f64>().unwrap()).collect())
            .collect()
    };
    assert_eq!(
        got.iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
        want.iter().map(|r| r[0].clone()).collect::<Vec<_>>()
    );
    assert_eq!(normalise(got), normalise(want.clone()));
    let catalogue = table(&browser, "catalogue").await;
    assert!(
        catalogue
            .iter()
            .any(|r| r[0] == "counts.issues" && r[1] == "all"),
        "{catalogue:?}"
    );
    let drawn = marks(&browser).await;
    assert_eq!(drawn.len(), 1);
    assert!(drawn[0] > 0, "weeks with a positive sum are drawn");
    shot("metrics").await;

    // Vulnerable installations: each links to its installation page.
    browser
        .goto(&app.url("/console/insights/vulnerable"))
        .await
        .unwrap();
    let expected = api(&app, &token, "/api/v1/insights/vulnerable").await;
    let want: Vec<String> = expected["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["hostname"].as_str().unwrap().to_string())
        .collect();
    let rows = table(&browser, "vulnerable").await;
    assert_eq!(rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>(), want);
    assert!(want.contains(&"<i>vuln</i>.example".to_string()));
    shot("vulnerable").await;
    browser
        .find(Locator::LinkText("<i>vuln</i>.example"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let heading = browser
        .wait()
        .for_element(Locator::Css("main h1"))
        .await
        .unwrap();
    assert!(heading
        .text()
        .await
        .unwrap()
        .contains("<i>vuln</i>.example"));

    // Installation page.
    browser
        .goto(&app.url("/console/insights/installation?uuid=u-a&hostname=git.alpha.example"))
        .await
        .unwrap();
    let expected = api(
        &app,
        &token,
        "/api/v1/insights/installation?uuid=u-a&hostname=git.alpha.example",
    )
    .await;
    let rows = table(&browser, "submissions").await;
    let versions: Vec<String> = rows.iter().map(|r| r[1].clone()).collect();
    let want: Vec<String> = expected["submissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["version"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(versions, want);
    assert_eq!(marks(&browser).await, vec![want.len() as u64]);
    shot("installation").await;
    browser.close().await.unwrap();
}
