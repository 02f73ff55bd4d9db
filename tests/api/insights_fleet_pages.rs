//! The overview, versions, licences and installation pages' fleet sections in headless
//! Chromium: every chart has drawn marks, every table equals its API endpoint, and an admin
//! follows an installation's raw-payload link. Screenshots go to /tmp/insights-fleet-*.png.

use crate::console_support::{add_user, log_in_in_browser};
use crate::helpers::TestApp;
use crate::insights_fleet::arrange;
use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use version_app::auth::Scope;
use version_app::console::auth::Role;

const RANGE: &str = "from=2025-12-01&to=2027-01-01";

async fn api(app: &TestApp, token: &str, path: &str) -> Value {
    let response = app
        .client
        .get(app.url(path))
        .header("PRIVATE-TOKEN", token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// The text of every cell of a page table, row by row.
async fn table(browser: &Client, section: &str) -> Vec<Vec<String>> {
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

/// Drawn marks of one section's chart (0 when it has none).
async fn marks(browser: &Client, section: &str) -> u64 {
    let value = browser
        .execute(
            "const f = document.querySelector(`figure[data-chart='${arguments[0]}']`);\
             return f ? [...f.querySelectorAll('rect.mark')].filter(r => r.getBBox().height > 0).length : 0",
            vec![json!(section)],
        )
        .await
        .unwrap();
    value.as_u64().unwrap()
}

/// A full-page screenshot and one per chart.
async fn shots(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    std::fs::write(format!("/tmp/insights-fleet-{name}.png"), png).unwrap();
    let figures = browser
        .find_all(Locator::Css("figure[data-chart]"))
        .await
        .unwrap();
    for figure in figures {
        let key = figure.attr("data-chart").await.unwrap().unwrap_or_default();
        browser
            .execute(
                "arguments[0].scrollIntoView()",
                vec![serde_json::to_value(&figure).unwrap()],
            )
            .await
            .unwrap();
        let png = figure.screenshot().await.unwrap();
        std::fs::write(format!("/tmp/insights-fleet-{name}-{key}.png"), png).unwrap();
    }
}

/// The API rows' `fields`, as the page writes them (numbers as text, shares as percentages).
fn cells(body: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            fields
                .iter()
                .map(|f| match &r[*f] {
                    Value::String(s) => s.clone(),
                    Value::Null => "–".into(),
                    v if f.ends_with("share") || *f == "utilisation" => {
                        format!("{:.1}%", 100.0 * v.as_f64().unwrap())
                    }
                    v => v.to_string(),
                })
                .collect()
        })
        .collect()
}

/// Checks a page table's first columns against the API, and that its chart has marks.
async fn check(
    browser: &Client,
    app: &TestApp,
    token: &str,
    section: &str,
    path: &str,
    fields: &[&str],
) {
    let want = cells(&api(app, token, path).await, fields);
    assert!(!want.is_empty(), "{path} has rows");
    let got: Vec<Vec<String>> = table(browser, section)
        .await
        .into_iter()
        .map(|r| r[..fields.len()].to_vec())
        .collect();
    assert_eq!(got, want, "{section} vs {path}");
}

#[tokio::test]
async fn chromium_shows_the_fleet_views_with_charts_matching_the_api() {
    let Some(driver) = crate::usage_upload::start_driver() else {
        return;
    };
    let app =
        TestApp::spawn_with(|s| s.check.flush_interval = std::time::Duration::from_millis(100))
            .await;
    let ids = arrange(&app).await;
    add_user(&app, "root", Role::Admin);
    let token = app.token(Scope::InsightsRead);
    let browser = crate::console_auth::browser(&driver).await;
    browser.goto(&app.url("/console/insights")).await.unwrap();
    log_in_in_browser(&browser, "root").await;
    browser
        .wait()
        .for_element(Locator::Id("signed-in-as"))
        .await
        .unwrap();

    // Overview
    browser
        .goto(&app.url(&format!("/console/insights?period=month&{RANGE}")))
        .await
        .unwrap();
    let q = format!("period=month&{RANGE}");
    check(
        &browser,
        &app,
        &token,
        "activity",
        &format!("/api/v1/insights/overview/activity?{q}"),
        &[
            "period",
            "active",
            "new",
            "returning",
            "reactivated",
            "churned",
        ],
    )
    .await;
    check(
        &browser,
        &app,
        &token,
        "churned",
        &format!("/api/v1/insights/overview/activity?{q}"),
        &["period", "churned"],
    )
    .await;
    check(
        &browser,
        &app,
        &token,
        "sources",
        &format!("/api/v1/insights/overview/sources?{q}"),
        &[
            "period",
            "service_ping",
            "version_check_only",
            "never_pinged",
            "total",
            "service_ping_share",
        ],
    )
    .await;
    for section in ["installations", "activity", "churned", "sources"] {
        assert!(marks(&browser, section).await > 0, "{section} chart drawn");
    }
    shots(&browser, "overview").await;

    // Versions, weekly
    let q = format!("period=week&{RANGE}");
    browser
        .goto(&app.url(&format!("/console/insights/versions?{q}&version=18.8")))
        .await
        .unwrap();
    check(
        &browser,
        &app,
        &token,
        "penetration",
        &format!("/api/v1/insights/versions/penetration?{q}&version=18.8"),
        &["period", "installations", "at_or_above", "share"],
    )
    .await;
    check(
        &browser,
        &app,
        &token,
        "behind",
        &format!("/api/v1/insights/versions/behind?{q}"),
        &["period", "minors_behind", "installations"],
    )
    .await;
    check(
        &browser,
        &app,
        &token,
        "vulnerable_share",
        &format!("/api/v1/insights/versions/vulnerable_share?{q}"),
        &["period", "installations", "danger", "critical"],
    )
    .await;
    check(
        &browser,
        &app,
        &token,
        "version_sources",
        &format!("/api/v1/insights/versions/sources?{q}"),
        &[
            "period",
            "minor",
            "service_ping",
            "version_check_only",
            "total",
        ],
    )
    .await;
    for section in [
        "versions",
        "penetration",
        "behind",
        "vulnerable_share",
        "version_sources",
    ] {
        assert!(marks(&browser, section).await > 0, "{section} chart drawn");
    }
    shots(&browser, "versions").await;

    // Licences
    browser
        .goto(&app.url(&format!("/console/insights/licences?period=month&{RANGE}")))
        .await
        .unwrap();
    check(
        &browser,
        &app,
        &token,
        "utilisation",
        &format!("/api/v1/insights/licences/utilisation?period=month&{RANGE}"),
        &[
            "period",
            "tier",
            "installations",
            "active_users",
            "seats",
            "utilisation",
            "over_seats",
        ],
    )
    .await;
    assert!(marks(&browser, "utilisation").await > 0);
    for (section, query) in [
        ("over_seats", "list=over_seats"),
        ("expiring_30", "list=expiring&within=30"),
        ("expiring", "list=expiring&within=90"),
        ("trials", "list=trials"),
    ] {
        check(
            &browser,
            &app,
            &token,
            section,
            &format!("/api/v1/insights/licences?{query}"),
            &["hostname", "tier", "plan", "seats", "active_users"],
        )
        .await;
    }
    shots(&browser, "licences").await;
    // every list entry links to its installation page
    browser
        .find(Locator::LinkText("<b>r4</b>.example"))
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
    assert!(heading.text().await.unwrap().contains("<b>r4</b>.example"));

    // Installation page: the admin follows the raw-payload link
    let id = ids.last().unwrap().0;
    browser
        .find(Locator::LinkText(&format!("submission {id}")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let pre = browser
        .wait()
        .for_element(Locator::Id("raw-payload"))
        .await
        .unwrap();
    let text = pre.text().await.unwrap();
    let shown: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        shown["hostname"], "<b>r4</b>.example",
        "escaped markup reads back as text"
    );
    shots(&browser, "raw").await;
    browser.close().await.unwrap();
}
