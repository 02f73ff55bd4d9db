use secrecy::ExposeSecret;
use serde_json::Value;
use version_app::auth::Scope;

use crate::helpers::TestApp;

async fn json(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}

#[tokio::test]
async fn bundled_history_is_served_newest_first() {
    let app = TestApp::spawn().await;
    let response = app.get("/api/v1/versions").await;
    assert_eq!(response.status(), 200);
    let total: usize = response.headers()["x-total"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        total > 600,
        "bundled table has GitLab's history, got {total}"
    );
    let list = json(response).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 20, "default page size");
    assert_eq!(list[0]["version"], "19.1.1");
    let versions: Vec<semver::Version> = list
        .iter()
        .map(|r| r["version"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        versions.windows(2).all(|w| w[0] > w[1]),
        "newest first: {versions:?}"
    );
    assert!(list.iter().any(|r| r["security"] == "non_critical"));
}

#[tokio::test]
async fn pages_walk_the_whole_table() {
    let app = TestApp::spawn().await;
    let first = json(app.get("/api/v1/versions?per_page=2&page=1").await).await;
    let second = json(app.get("/api/v1/versions?per_page=2&page=2").await).await;
    assert_eq!(first.as_array().unwrap().len(), 2);
    assert_ne!(first[0]["version"], second[0]["version"]);
    let beyond = json(app.get("/api/v1/versions?per_page=100&page=999").await).await;
    assert_eq!(beyond.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn bad_paging_names_the_parameter() {
    let app = TestApp::spawn().await;
    for (query, name) in [
        ("per_page=abc", "per_page"),
        ("per_page=0", "per_page"),
        ("per_page=101", "per_page"),
        ("page=-1", "page"),
    ] {
        let response = app.get(&format!("/api/v1/versions?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        let body = json(response).await;
        assert_eq!(body["error"], "bad_request");
        assert!(body["message"].as_str().unwrap().contains(name), "{body}");
    }
}

#[tokio::test]
async fn seeding_can_be_turned_off() {
    let app = TestApp::spawn_with(|s| s.releases.seed = false).await;
    let response = app.get("/api/v1/versions").await;
    assert_eq!(response.headers()["x-total"], "0");
    assert_eq!(json(response).await, serde_json::json!([]));
}

/// Exactly what omnibus-gitlab's add_to_version_server.sh sends: form fields with a JSON
/// Content-Type header, to the path with a trailing slash.
#[tokio::test]
async fn release_ci_adds_a_release_the_way_omnibus_does() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::ReleasesWrite);
    let response = app
        .client
        .post(app.url("/api/v1/versions/"))
        .header("Content-Type", "application/json")
        .body(format!("private_token={token}&version=99.1.0"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created = json(response).await;
    assert_eq!(created["version"], "99.1.0");
    assert_eq!(created["security"], "none");

    // The snapshot was swapped: the new release is listed first at once.
    let list = json(app.get("/api/v1/versions?per_page=1").await).await;
    assert_eq!(list[0]["version"], "99.1.0");
}

#[tokio::test]
async fn form_post_without_trailing_slash_and_with_fields() {
    let app = TestApp::spawn_with(|s| s.releases.seed = false).await;
    let token = app.token(Scope::ReleasesWrite);
    let response = app
        .post_release(
            &token,
            &[
                ("version", "20.0.1-ee"),
                ("released_on", "2026-09-01"),
                ("security", "critical"),
                ("details", "Remote code execution"),
            ],
        )
        .await;
    assert_eq!(response.status(), 201);
    let created = json(response).await;
    assert_eq!(created["version"], "20.0.1", "edition suffix normalised");
    assert_eq!(created["released_on"], "2026-09-01");
    assert_eq!(created["advisory"], "2026-09-01-critical");
}

#[tokio::test]
async fn duplicate_release_is_a_conflict() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::ReleasesWrite);
    let response = app.post_release(&token, &[("version", "19.1.1")]).await;
    assert_eq!(response.status(), 409);
    let body = json(response).await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("19.1.1 already exists"),
        "{body}"
    );
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let app = TestApp::spawn().await;
    for form in [
        vec![("version", "99.0.0")],
        vec![("private_token", "vat_nope"), ("version", "99.0.0")],
    ] {
        let response = app
            .client
            .post(app.url("/api/v1/versions"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(json(response).await["error"], "unauthorized");
    }
    let list = json(app.get("/api/v1/versions?per_page=1").await).await;
    assert_eq!(list[0]["version"], "19.1.1", "nothing was added");
}

#[tokio::test]
async fn revoked_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::ReleasesWrite);
    let db = app.store();
    let mut conn = db.get().unwrap();
    let id = version_app::db::models::tokens::list(&mut conn).unwrap()[0].id;
    assert!(version_app::db::models::tokens::revoke(&mut conn, id).unwrap());
    let response = app.post_release(&token, &[("version", "99.0.0")]).await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn malformed_versions_name_the_problem() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::ReleasesWrite);
    for (version, expect) in [
        ("banana", "banana"),
        ("16.9.0-rc1", "pre-release"),
        ("", "required"),
    ] {
        let response = app.post_release(&token, &[("version", version)]).await;
        assert_eq!(response.status(), 422, "{version}");
        let body = json(response).await;
        assert!(body["message"].as_str().unwrap().contains(expect), "{body}");
    }
}

#[tokio::test]
async fn oversized_release_body_is_refused() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/api/v1/versions"))
        .body(format!("version=1.0.0&details={}", "x".repeat(100_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn security_level_and_advisory_text_can_be_set() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::ReleasesWrite);
    let response = app
        .client
        .patch(app.url("/api/v1/versions/19.1.0"))
        .header("PRIVATE-TOKEN", &token)
        .json(&serde_json::json!({"security": "critical", "advisory": "test-batch", "details": "Account takeover via password reset"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let updated = json(response).await;
    assert_eq!(updated["security"], "critical");
    assert_eq!(updated["advisory"], "test-batch");

    let list = json(app.get("/api/v1/versions?per_page=2").await).await;
    assert_eq!(list[1]["version"], "19.1.0");
    assert_eq!(list[1]["details"], "Account takeover via password reset");
}

#[tokio::test]
async fn security_change_errors_are_clear() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::ReleasesWrite);
    let patch = |path: &str, body: serde_json::Value, token: Option<&str>| {
        let mut request = app.client.patch(app.url(path)).json(&body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request.send()
    };
    let missing = patch(
        "/api/v1/versions/1.2.3",
        serde_json::json!({"security": "critical"}),
        Some(&token),
    )
    .await
    .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(json(missing).await["message"]
        .as_str()
        .unwrap()
        .contains("1.2.3"));

    let level = patch(
        "/api/v1/versions/19.1.0",
        serde_json::json!({"security": "urgent"}),
        Some(&token),
    )
    .await
    .unwrap();
    assert_eq!(level.status(), 422);
    assert!(json(level).await["message"]
        .as_str()
        .unwrap()
        .contains("urgent"));

    let unauth = patch(
        "/api/v1/versions/19.1.0",
        serde_json::json!({"security": "none"}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(unauth.status(), 401);

    let unknown_field = patch(
        "/api/v1/versions/19.1.0",
        serde_json::json!({"severity": "none"}),
        Some(&token),
    )
    .await
    .unwrap();
    assert_eq!(unknown_field.status(), 400);
    assert!(json(unknown_field).await["message"]
        .as_str()
        .unwrap()
        .contains("severity"));
}

#[tokio::test]
async fn changes_by_another_process_reach_the_snapshot() {
    let app = TestApp::spawn().await;
    let out = crate::helpers::run_cli(
        app.settings.store.url.expose_secret(),
        &["releases", "add", "98.0.0", "--released-on", "2030-01-01"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // release_refresh_secs is 1 in tests.
    let mut seen = false;
    for _ in 0..40 {
        let list = json(app.get("/api/v1/versions?per_page=1").await).await;
        if list[0]["version"] == "98.0.0" {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen, "refresh picked up the CLI's change");
}
