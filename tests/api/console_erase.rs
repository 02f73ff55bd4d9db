//! `/console/erase`: administrators only, CSRF-protected, a preview that changes nothing, then
//! an explicit confirmation that erases through the same code as `version-app erase`; after it
//! the store dump holds neither the hostname nor the uuid.

use crate::check_recording::wait_for_total;
use crate::console_support::{get_page, get_with, hidden_field, login_as, post_form, Session};
use crate::helpers::{run_cli, TestApp};
use crate::privacy_erase::{installation_traffic, key_env, ERASURE_KEY};
use crate::store_dump::{assert_absent, dump, query_text};
use version_app::console::auth::Role;
use version_app::domain::pseudonym::SecretKey;

/// Every table an erasure touches, and the erasure entries: rows per table, as text.
fn counts(url: &str) -> Vec<(String, String)> {
    [
        "usage_data",
        "usage_data_raw",
        "metric_values",
        "usage_ping_errors",
        "usage_ping_metadata",
        "usage_ping_metadata_metrics",
        "hosts",
        "version_checks",
        "version_checks_monthly",
        "erasures",
        "erasure_subjects",
    ]
    .iter()
    .map(|t| {
        (
            t.to_string(),
            query_text(url, &format!("SELECT COUNT(*) FROM {t}"))
                .trim()
                .to_string(),
        )
    })
    .collect()
}

async fn erase_form(app: &TestApp, session: &Session, fields: &[(&str, &str)]) -> (u16, String) {
    let mut all = vec![("csrf_token", session.csrf.as_str())];
    all.extend_from_slice(fields);
    let response = post_form(app, &session.cookie, "/console/erase", &all).await;
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// `<td>table</td><td class="num">n</td>` in a counts table of the page.
fn shows_count(page: &str, table: &str, n: usize) -> bool {
    page.contains(&format!("<td>{table}</td><td class=\"num\">{n}</td>"))
}

#[tokio::test]
async fn only_administrators_reach_the_erase_page() {
    let app = TestApp::spawn().await;
    for (name, role) in [("ana", Role::Analyst), ("rita", Role::ReleaseManager)] {
        let session = login_as(&app, name, role).await;
        let home = get_page(&app, &session.cookie, "/console").await;
        assert!(!home.contains("/console/erase"), "{name} sees no link");
        assert_eq!(
            get_with(&app, &session.cookie, "/console/erase")
                .await
                .status(),
            403,
            "{name}"
        );
        let (status, _) = erase_form(
            &app,
            &session,
            &[("kind", "uuid"), ("value", "u"), ("action", "preview")],
        )
        .await;
        assert_eq!(status, 403, "{name} may not post either");
    }
    let admin = login_as(&app, "ada", Role::Admin).await;
    let home = get_page(&app, &admin.cookie, "/console").await;
    assert!(home.contains("href=\"/console/erase\""), "{home}");
    let page = get_page(&app, &admin.cookie, "/console/erase").await;
    assert!(page.contains("id=\"erase-form\""));
    // This server has no erasure_key: the page says so and a preview is refused.
    assert!(page.contains("id=\"erase-key-missing\""), "{page}");
    let (status, page) = erase_form(
        &app,
        &admin,
        &[("kind", "uuid"), ("value", "u"), ("action", "preview")],
    )
    .await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("erasure_key"), "{page}");
    // Without a session: the login form.
    let anonymous = app.get("/console/erase").await;
    assert_eq!(anonymous.status(), 303);
}

#[tokio::test]
async fn an_administrator_previews_then_erases_one_installation() {
    let mut app = TestApp::spawn_with(|s| {
        s.check.flush_interval = std::time::Duration::from_millis(100);
        s.privacy.erasure_key = Some(SecretKey::new(ERASURE_KEY));
    })
    .await;
    // Store queries run between requests here and can outlast the server's keep-alive
    // (5 s) on a loaded machine: a fresh connection per request, never a closed pooled one.
    app.client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    installation_traffic(&app, "y-uuid", "y-unique", "y.example.com", 10).await;
    installation_traffic(&app, "x-uuid", "x-unique", "X.Example.com", 20).await;
    wait_for_total(&app.store(), 4).await;
    let url = app.db.url.clone();
    let admin = login_as(&app, "ada", Role::Admin).await;
    let start = counts(&url);
    let page = get_page(&app, &admin.cookie, "/console/erase").await;
    assert!(!page.contains("erase-key-missing"));

    // Without the CSRF token: 403, nothing changed.
    let response = post_form(
        &app,
        &admin.cookie,
        "/console/erase",
        &[
            ("kind", "uuid"),
            ("value", "x-uuid"),
            ("action", "erase"),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert_eq!(response.status(), 403);
    let wrong = erase_form(
        &app,
        &Session {
            cookie: admin.cookie.clone(),
            csrf: "not-the-token".into(),
        },
        &[
            ("kind", "uuid"),
            ("value", "x-uuid"),
            ("action", "erase"),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert_eq!(wrong.0, 403);
    assert_eq!(counts(&url), start);

    // Bad input re-renders the form with the message.
    for (fields, status, message) in [
        (
            vec![("kind", "email"), ("value", "x"), ("action", "preview")],
            422,
            "Choose hostname or uuid",
        ),
        (
            vec![("kind", "uuid"), ("value", "  "), ("action", "preview")],
            422,
            "Give the installation",
        ),
        (
            vec![
                ("kind", "hostname"),
                ("value", "nobody.example.com"),
                ("action", "preview"),
            ],
            404,
            "Nothing in the store belongs to hostname nobody.example.com; nothing was changed.",
        ),
        (
            vec![
                ("kind", "uuid"),
                ("value", "no-such-uuid"),
                ("action", "erase"),
                ("confirm", "yes"),
            ],
            404,
            "Nothing in the store belongs to uuid no-such-uuid",
        ),
        (
            vec![("kind", "uuid"), ("value", "x-uuid"), ("action", "erase")],
            422,
            "Tick the confirmation box",
        ),
    ] {
        let (got, page) = erase_form(&app, &admin, &fields).await;
        assert_eq!(got, status, "{fields:?}: {page}");
        assert!(page.contains(message), "{fields:?}: {page}");
        assert!(page.contains("id=\"erase-form\""), "the form again");
        assert_eq!(counts(&url), start, "{fields:?} changed nothing");
    }

    // Step 1: the preview shows the rows per table and changes nothing.
    let (status, page) = erase_form(
        &app,
        &admin,
        &[
            ("kind", "hostname"),
            ("value", "X.Example.com"),
            ("action", "preview"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    for (table, n) in [
        ("usage_data", 2),
        ("usage_data_raw", 2),
        ("usage_ping_errors", 2),
        ("usage_ping_metadata", 1),
        ("usage_ping_metadata_metrics", 2),
        ("version_checks", 2),
        ("hosts", 1),
    ] {
        assert!(shows_count(&page, table, n), "{table}: {n} in {page}");
    }
    assert!(
        page.contains("1 hostname(s), 1 uuid(s), 1 unique instance id(s)"),
        "{page}"
    );
    assert_eq!(hidden_field(&page, "kind").as_deref(), Some("hostname"));
    assert_eq!(counts(&url), start, "a preview changes nothing");

    // Step 2: the explicit confirmation erases, and the page shows what was removed.
    let (status, page) = erase_form(
        &app,
        &admin,
        &[
            ("kind", "hostname"),
            ("value", "X.Example.com"),
            ("action", "erase"),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"erased\""), "{page}");
    for (table, n) in [("usage_data", 2), ("version_checks", 2), ("hosts", 1)] {
        assert!(shows_count(&page, table, n), "{table}: {n} in {page}");
    }
    let after = counts(&url);
    let of = |rows: &[(String, String)], t: &str| -> i64 {
        rows.iter()
            .find(|(n, _)| n == t)
            .unwrap()
            .1
            .parse()
            .unwrap()
    };
    assert_eq!(of(&after, "usage_data"), of(&start, "usage_data") - 2);
    assert_eq!(of(&after, "erasures"), of(&start, "erasures") + 1);
    assert_eq!(
        query_text(&url, "SELECT erased_by FROM erasures").trim(),
        "ada",
        "who erased is recorded"
    );
    // Again: nothing left to erase.
    let (status, page) = erase_form(
        &app,
        &admin,
        &[("kind", "uuid"), ("value", "x-uuid"), ("action", "preview")],
    )
    .await;
    assert_eq!(status, 404, "{page}");

    let db = app.stop().await;
    let full = dump(&db.url);
    for identifier in ["x-uuid", "x-unique", "x.example.com"] {
        assert_absent(&full, identifier, "after the console erasure");
    }
    assert!(
        full.contains("y.example.com"),
        "the other installation stays"
    );
    assert!(full.contains("y-uuid"), "the other installation stays");
    // The erasure entry answers "was it erased?" with the key, like the CLI's own.
    for args in [["--uuid", "x-uuid"], ["--hostname", "x.example.com"]] {
        let out = run_cli(&db.url, &["erase", "--check", args[0], args[1]], &key_env());
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
