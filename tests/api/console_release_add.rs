//! The "add a release" form: a release manager adds one release (audited via web, verdicts
//! follow); a duplicate, a malformed version or day, or an unknown level re-renders the form
//! with the message and saves nothing; a missing CSRF token and an analyst get 403.

use serde_json::Value;

use crate::console_support::*;
use crate::helpers::TestApp;
use crate::release_history::check;
use crate::release_sync::all_versions;
use version_app::auth::Scope;
use version_app::console::auth::Role;

fn fields<'a>(csrf: &'a str, version: &'a str, security: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf_token", csrf),
        ("version", version),
        ("released_on", "2026-12-02"),
        ("security", security),
        ("advisory", "2026-12-02-critical"),
        ("details", "Fixes <script> injection"),
    ]
}

async fn history(app: &TestApp, version: &str) -> Vec<Value> {
    let token = app.token(Scope::ReleasesWrite);
    app.client
        .get(app.url(&format!("/api/v1/versions/{version}/history")))
        .header("PRIVATE-TOKEN", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_release_manager_adds_a_release_and_bad_input_changes_nothing() {
    let app = TestApp::spawn().await;
    let manager = login_as(&app, "rita", Role::ReleaseManager).await;
    let list = get_page(&app, &manager.cookie, "/console/releases").await;
    assert!(list.contains("href=\"/console/releases/new\""));
    let form = get_page(&app, &manager.cookie, "/console/releases/new").await;
    assert!(form.contains("id=\"add-form\""));
    let csrf = hidden_field(&form, "csrf_token").unwrap();
    assert_eq!(csrf, manager.csrf);
    let table_before = all_versions(&app).await;
    assert_eq!(check(&app, "19.1.1").await["severity"], "success");

    // Each bad form: re-rendered with the message and the values typed, nothing saved.
    let cases: [(&str, &str, &str, u16, &str); 5] = [
        (
            "19.1.1",
            "none",
            "2026-12-02",
            409,
            "Release 19.1.1 already exists",
        ),
        (
            "19.x",
            "none",
            "2026-12-02",
            422,
            "The version `19.x` is not valid",
        ),
        ("19.2.0-rc1", "none", "2026-12-02", 422, "pre-release"),
        (
            "19.1.2",
            "urgent",
            "2026-12-02",
            422,
            "`urgent` is not a security level",
        ),
        (
            "19.1.2",
            "critical",
            "02/12/2026",
            422,
            "`released_on` must be a YYYY-MM-DD date",
        ),
    ];
    for (version, security, day, status, message) in cases {
        let mut f = fields(&manager.csrf, version, security);
        f[2].1 = day;
        let response = post_form(&app, &manager.cookie, "/console/releases/new", &f).await;
        assert_eq!(
            response.status().as_u16(),
            status,
            "{version} {security} {day}"
        );
        let page = response.text().await.unwrap();
        assert!(page.contains("id=\"add-error\""), "{page}");
        assert!(page.contains(message), "`{message}` not in the page");
        assert!(page.contains("Nothing was saved."));
        // The form keeps what was typed (escaped).
        assert!(page.contains(&format!("value=\"{version}\"")));
        assert!(
            page.contains("Fixes &#60;script&#62; injection")
                || page.contains("Fixes &lt;script&gt; injection")
        );
    }
    let empty = post_form(
        &app,
        &manager.cookie,
        "/console/releases/new",
        &fields(&manager.csrf, "  ", "none"),
    )
    .await;
    assert_eq!(empty.status(), 422);
    assert!(empty
        .text()
        .await
        .unwrap()
        .contains("The version is required"));
    // No CSRF token, or a wrong one: 403.
    let mut no_csrf = fields("", "19.1.2", "critical");
    no_csrf.remove(0);
    assert_eq!(
        post_form(&app, &manager.cookie, "/console/releases/new", &no_csrf)
            .await
            .status(),
        403
    );
    assert_eq!(
        post_form(
            &app,
            &manager.cookie,
            "/console/releases/new",
            &fields("forged", "19.1.2", "critical")
        )
        .await
        .status(),
        403
    );
    // An analyst: 403 for the form and the post.
    let analyst = login_as(&app, "ana", Role::Analyst).await;
    assert_eq!(
        get_with(&app, &analyst.cookie, "/console/releases/new")
            .await
            .status(),
        403
    );
    assert_eq!(
        post_form(
            &app,
            &analyst.cookie,
            "/console/releases/new",
            &fields(&analyst.csrf, "19.1.2", "critical")
        )
        .await
        .status(),
        403
    );
    assert!(!get_page(&app, &analyst.cookie, "/console/releases")
        .await
        .contains("/console/releases/new"));
    assert_eq!(all_versions(&app).await, table_before, "nothing was saved");
    assert!(history(&app, "19.1.2").await.is_empty());

    // The good form: 303 to the release's page; the release is served, verdicts follow, and
    // the history says who, via web.
    let saved = post_form(
        &app,
        &manager.cookie,
        "/console/releases/new",
        &fields(&manager.csrf, "19.1.2", "critical"),
    )
    .await;
    assert_eq!(saved.status(), 303);
    assert_eq!(
        saved.headers()["location"],
        "/console/releases/19.1.2?saved=1"
    );
    let page = get_page(&app, &manager.cookie, "/console/releases/19.1.2?saved=1").await;
    assert!(page.contains("Release 19.1.2"));
    let listed = all_versions(&app).await;
    assert_eq!(listed.len(), table_before.len() + 1);
    assert_eq!(listed[0]["version"], "19.1.2");
    assert_eq!(listed[0]["security"], "critical");
    assert_eq!(listed[0]["released_on"], "2026-12-02");
    assert_eq!(listed[0]["advisory"], "2026-12-02-critical");
    assert_eq!(listed[0]["details"], "Fixes <script> injection");
    let told = check(&app, "19.1.1").await;
    assert_eq!(told["severity"], "danger", "{told}");
    assert_eq!(told["critical_vulnerability"], true, "{told}");
    let entries = history(&app, "19.1.2").await;
    let fields_written: Vec<&str> = entries
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields_written,
        ["details", "advisory", "security", "released_on", "version"]
    );
    assert!(entries
        .iter()
        .all(|e| e["via"] == "web" && e["actor"] == "rita" && e["old"].is_null()));
    // Adding it again is a duplicate.
    let again = post_form(
        &app,
        &manager.cookie,
        "/console/releases/new",
        &fields(&manager.csrf, "19.1.2", "none"),
    )
    .await;
    assert_eq!(again.status(), 409);
    assert_eq!(history(&app, "19.1.2").await.len(), entries.len());
}
