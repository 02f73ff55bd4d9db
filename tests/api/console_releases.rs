//! The release pages: list and filters, roles, the batch form with its preview, edits with
//! optimistic concurrency, history and revert from the browser; and Chromium on the batch.

use serde_json::json;

use crate::console_support::*;
use crate::helpers::TestApp;
use crate::release_history::check;
use version_app::auth::Scope;
use version_app::console::auth::Role;

const VERSIONS: &str = "19.1.2, 19.0.4 18.11.7";

fn batch_fields<'a>(csrf: &'a str, action: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf_token", csrf),
        ("action", action),
        ("versions", VERSIONS),
        ("security", "critical"),
        ("advisory", "2026-12-01-critical"),
        ("details", "Remote code execution <in> the importer"),
        ("released_on", "2026-12-01"),
        ("sample", "19.0.3"),
    ]
}

#[tokio::test]
async fn analysts_read_the_release_pages_and_cannot_change_anything() {
    let app = TestApp::spawn().await;
    let analyst = login_as(&app, "ana", Role::Analyst).await;
    let list = get_page(&app, &analyst.cookie, "/console/releases?line=19.0").await;
    assert!(
        list.contains(">19.0.3<") && !list.contains(">19.1.1<"),
        "filtered by line"
    );
    assert!(
        !list.contains("/console/releases/batch"),
        "no edit link for analysts"
    );
    let critical = get_page(
        &app,
        &analyst.cookie,
        "/console/releases?security=critical&from=2026-01-01",
    )
    .await;
    assert!(critical.contains("release(s)"));
    let bad = get_with(&app, &analyst.cookie, "/console/releases?line=nineteen").await;
    assert_eq!(bad.status(), 400);
    assert!(bad
        .text()
        .await
        .unwrap()
        .contains("`line` must look like 17.9"));
    let page = get_page(&app, &analyst.cookie, "/console/releases/19.1.1").await;
    assert!(
        page.contains("Release 19.1.1")
            && !page.contains("<form method=\"post\" action=\"/console/releases/19.1.1\"")
    );
    get_page(&app, &analyst.cookie, "/console/releases/history").await;
    assert_eq!(
        get_with(&app, &analyst.cookie, "/console/releases/batch")
            .await
            .status(),
        403
    );
    for (path, fields) in [
        (
            "/console/releases/batch",
            batch_fields(&analyst.csrf, "save"),
        ),
        (
            "/console/releases/19.1.1",
            vec![
                ("csrf_token", analyst.csrf.as_str()),
                ("security", "critical"),
            ],
        ),
        (
            "/console/releases/history/revert",
            vec![("csrf_token", analyst.csrf.as_str()), ("change_id", "1")],
        ),
    ] {
        let response = post_form(&app, &analyst.cookie, path, &fields).await;
        assert_eq!(response.status(), 403, "{path}");
    }
    assert_eq!(check(&app, "19.1.1").await["severity"], "success");
    assert_eq!(
        get_with(&app, &analyst.cookie, "/console/releases/99.0.0")
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn a_release_manager_previews_a_batch_then_saves_it_and_sees_it_in_the_history() {
    let app = TestApp::spawn().await;
    let rm = login_as(&app, "rita", Role::ReleaseManager).await;
    let form = get_page(&app, &rm.cookie, "/console/releases/batch").await;
    assert!(form.contains("name=\"versions\"") && form.contains("name=\"csrf_token\""));

    let preview = post_form(
        &app,
        &rm.cookie,
        "/console/releases/batch",
        &batch_fields(&rm.csrf, "preview"),
    )
    .await;
    assert_eq!(preview.status(), 200);
    let page = preview.text().await.unwrap();
    assert!(page.contains("id=\"impact-summary\""), "{page}");
    assert!(page.contains("Important notice - Critical patch release"));
    assert!(page.contains("You are currently on version 19.0.3!"));
    assert!(
        page.contains("<svg") && page.contains("update asap") && page.contains("update available")
    );
    assert!(
        page.contains("Remote code execution &#60;in&#62; the importer")
            || page.contains("&lt;in&gt;")
    );
    assert!(page.contains("id=\"save-button\""));
    assert_eq!(
        check(&app, "19.0.3").await["severity"],
        "warning",
        "a preview saves nothing"
    );

    // Saving without the token: 403, nothing changes.
    let mut no_token = batch_fields("", "save");
    no_token.remove(0);
    let refused = post_form(&app, &rm.cookie, "/console/releases/batch", &no_token).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(check(&app, "19.0.3").await["severity"], "warning");

    let saved = post_form(
        &app,
        &rm.cookie,
        "/console/releases/batch",
        &batch_fields(&rm.csrf, "save"),
    )
    .await;
    assert_eq!(saved.status(), 303);
    assert_eq!(
        saved.headers()["location"],
        "/console/releases/history?saved=1"
    );
    let answer = check(&app, "19.0.3").await;
    assert_eq!(answer["severity"], "danger");
    assert_eq!(answer["critical_vulnerability"], true);
    let history = get_page(&app, &rm.cookie, "/console/releases/history?saved=1").await;
    assert!(history.contains("id=\"saved\""));
    assert!(
        history.contains(">rita<") && history.contains(">web<") && history.contains(">19.0.4<")
    );

    // The same batch again is a no-op; a batch mixing advisories is refused on the form.
    let mixed = post_form(
        &app,
        &rm.cookie,
        "/console/releases/batch",
        &[
            ("csrf_token", rm.csrf.as_str()),
            ("action", "preview"),
            ("versions", "19.0.4 19.1.3"),
            ("security", "critical"),
            ("advisory", "another-advisory"),
        ],
    )
    .await;
    assert_eq!(mixed.status(), 422);
    let page = mixed.text().await.unwrap();
    assert!(page.contains("cannot mix two advisories") && page.contains("value=\"19.0.4 19.1.3\""));
    let empty = post_form(
        &app,
        &rm.cookie,
        "/console/releases/batch",
        &[
            ("csrf_token", rm.csrf.as_str()),
            ("action", "save"),
            ("versions", " "),
            ("security", "critical"),
            ("advisory", "x"),
        ],
    )
    .await;
    assert_eq!(empty.status(), 422);
    assert!(empty.text().await.unwrap().contains("no versions"));
}

#[tokio::test]
async fn a_stale_edit_form_gets_409_with_what_changed_and_a_revert_restores() {
    let app = TestApp::spawn().await;
    let rm = login_as(&app, "rob", Role::ReleaseManager).await;
    let page = get_page(&app, &rm.cookie, "/console/releases/19.1.1").await;
    let orig_security = hidden_field(&page, "orig_security").unwrap();
    let orig_advisory = hidden_field(&page, "orig_advisory").unwrap();
    let orig_details = hidden_field(&page, "orig_details").unwrap();
    assert_eq!(orig_security, "non_critical");

    // Someone else raises the level through the API meanwhile.
    let token = app.token(Scope::ReleasesWrite);
    let response = app
        .client
        .patch(app.url("/api/v1/versions/19.1.1"))
        .bearer_auth(&token)
        .json(&json!({"security": "critical"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let fields = |level: &'static str, orig: &str| {
        vec![
            ("csrf_token", rm.csrf.clone()),
            ("security", level.to_string()),
            ("advisory", orig_advisory.clone()),
            ("details", "new words".to_string()),
            ("orig_security", orig.to_string()),
            ("orig_advisory", orig_advisory.clone()),
            ("orig_details", orig_details.clone()),
        ]
    };
    let stale = fields("none", &orig_security);
    let stale_refs: Vec<(&str, &str)> = stale.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let response = post_form(&app, &rm.cookie, "/console/releases/19.1.1", &stale_refs).await;
    assert_eq!(response.status(), 409);
    let page = response.text().await.unwrap();
    assert!(page.contains("Someone changed this release"), "{page}");
    assert!(
        page.contains("security: you saw “non_critical”, it is now “critical”"),
        "{page}"
    );
    assert_eq!(
        check(&app, "19.1.0").await["critical_vulnerability"],
        true,
        "not overwritten"
    );

    // With the current values the edit goes through.
    let fresh = fields("none", "critical");
    let fresh_refs: Vec<(&str, &str)> = fresh.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let response = post_form(&app, &rm.cookie, "/console/releases/19.1.1", &fresh_refs).await;
    assert_eq!(response.status(), 303);
    let page = get_page(&app, &rm.cookie, "/console/releases/19.1.1?saved=1").await;
    assert!(page.contains("id=\"saved\"") && page.contains("new words"));
    assert!(
        page.contains(">rob<"),
        "the page's history names the editor"
    );

    // Revert the web change from the history page: the API's value comes back.
    let (_, entries) = {
        let response = app
            .client
            .get(app.url("/api/v1/versions/19.1.1/history"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        (200, response.json::<serde_json::Value>().await.unwrap())
    };
    let newest = entries[0]["id"].as_i64().unwrap().to_string();
    let response = post_form(
        &app,
        &rm.cookie,
        "/console/releases/history/revert",
        &[
            ("csrf_token", rm.csrf.as_str()),
            ("change_id", newest.as_str()),
            ("batch", "1"),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(check(&app, "19.1.0").await["critical_vulnerability"], true);
    let history = get_page(&app, &rm.cookie, "/console/releases/history").await;
    assert!(history.contains("revert of batch"));
}

#[tokio::test]
async fn chromium_records_a_security_batch_after_previewing_it() {
    use fantoccini::Locator;
    let Some(driver) = crate::usage_upload::start_driver() else {
        return;
    };
    let app = TestApp::spawn().await;
    add_user(&app, "rachel", Role::ReleaseManager);
    let browser = crate::console_auth::browser(&driver).await;
    browser
        .goto(&app.url("/console/releases/batch"))
        .await
        .unwrap();
    crate::console_support::log_in_in_browser(&browser, "rachel").await;
    let versions = browser
        .wait()
        .for_element(Locator::Id("versions"))
        .await
        .unwrap();
    versions.send_keys("19.1.2 19.0.4 18.11.7").await.unwrap();
    browser
        .find(Locator::Id("advisory"))
        .await
        .unwrap()
        .send_keys("2026-12-01-critical")
        .await
        .unwrap();
    browser
        .find(Locator::Id("details"))
        .await
        .unwrap()
        .send_keys("Importer RCE")
        .await
        .unwrap();
    browser
        .find(Locator::Id("preview-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let summary = browser
        .wait()
        .for_element(Locator::Id("impact-summary"))
        .await
        .unwrap();
    assert!(summary
        .text()
        .await
        .unwrap()
        .contains("active installation(s) change state"));
    let after = browser
        .find(Locator::Id("told-after"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        after.contains("Important notice - Critical patch release"),
        "{after}"
    );
    assert!(after.contains("Importer RCE"));
    if let Ok(dir) = std::env::var("SCREENSHOT_DIR") {
        std::fs::write(
            format!("{dir}/batch-preview.png"),
            browser.screenshot().await.unwrap(),
        )
        .unwrap();
    }
    assert_eq!(check(&app, "19.0.3").await["severity"], "warning");
    browser
        .find(Locator::Id("save-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Id("saved"))
        .await
        .unwrap();
    let history = browser
        .find(Locator::Id("history"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(history.contains("rachel") && history.contains("19.0.4"));
    let answer = check(&app, "19.0.3").await;
    assert_eq!(
        (
            answer["severity"].as_str(),
            answer["critical_vulnerability"].as_bool()
        ),
        (Some("danger"), Some(true))
    );
    browser.close().await.unwrap();
}
