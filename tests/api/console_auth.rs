//! Console login, sessions, CSRF, roles, throttling, cookies, the `user` CLI verbs, API
//! access by session or token, and a real browser logging in.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::console_support::*;
use crate::helpers::{run_cli, TestApp, TestDb};
use version_app::auth::Scope;
use version_app::console::auth::Role;
use version_app::db::models::console as store;

fn session_count(app: &TestApp, name: &str) -> i64 {
    let db = app.store();
    let mut conn = db.get().unwrap();
    store::count_sessions(&mut conn, name).unwrap()
}

#[tokio::test]
async fn the_login_form_has_its_fields_a_csrf_cookie_and_a_strict_csp() {
    let app = TestApp::spawn().await;
    let response = app.get("/login").await;
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let cookie = set_cookie(&response, "va_login_csrf").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain http, not configured: {cookie}"
    );
    let page = response.text().await.unwrap();
    for needle in [
        "name=\"username\"",
        "name=\"password\"",
        "type=\"password\"",
        "<label for=\"username\"",
        "<label for=\"password\"",
        "name=\"csrf_token\"",
        "<main id=\"main\"",
        "href=\"#main\"",
    ] {
        assert!(page.contains(needle), "login page lacks {needle}");
    }
    assert!(
        !page.contains("<script") && !page.contains("style=\""),
        "no inline code"
    );
    assert!(!page.contains("http://") && !page.contains("https://"));
    let css = app.get("/console/static/console.css").await;
    assert_eq!(css.status(), 200);
    assert!(css.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
}

#[tokio::test]
async fn login_reaches_the_console_home_and_logout_ends_the_session() {
    let app = TestApp::spawn().await;
    add_user(&app, "alice", Role::Analyst);
    // Not logged in: the console sends the browser to the form, remembering the page.
    let response = app.get("/console").await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/login?next=%2Fconsole");

    let response = post_login(&app, "alice", PASSWORD).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/console");
    let set = set_cookie(&response, "va_session").unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attribute), "{attribute} missing: {set}");
    }
    assert!(!set.contains("Secure"));
    let cookie = cookie_pair(&set);
    let secret = cookie.trim_start_matches("va_session=").to_string();
    assert_eq!(secret.len(), 64);
    // Only the hash is stored.
    {
        let db = app.store();
        let mut conn = db.get().unwrap();
        assert!(store::find_session(&mut conn, &secret).unwrap().is_none());
        let hashed = version_app::auth::hash_token(&secret);
        assert!(store::find_session(&mut conn, &hashed).unwrap().is_some());
    }

    let page = get_page(&app, &cookie, "/console").await;
    assert!(page.contains("Welcome, alice"), "{page}");
    for link in [
        "/console/insights",
        "/console/releases",
        "/console/releases/history",
    ] {
        assert!(
            page.contains(&format!("href=\"{link}\"")),
            "nav lacks {link}"
        );
    }
    assert!(
        !page.contains("href=\"/console/accounts\""),
        "analysts see no accounts link"
    );
    assert!(page.contains("<nav aria-label=") && page.contains("<header"));
    let csrf = hidden_field(&page, "csrf_token").unwrap();

    // Logout without the token is refused and changes nothing.
    let refused = post_form(&app, &cookie, "/logout", &[]).await;
    assert_eq!(refused.status(), 403);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("Nothing was changed"));
    let wrong = post_form(&app, &cookie, "/logout", &[("csrf_token", &"0".repeat(64))]).await;
    assert_eq!(wrong.status(), 403);
    assert_eq!(session_count(&app, "alice"), 1);
    get_page(&app, &cookie, "/console").await;

    let out = post_form(&app, &cookie, "/logout", &[("csrf_token", &csrf)]).await;
    assert_eq!(out.status(), 303);
    assert_eq!(out.headers()["location"], "/login?notice=logged_out");
    let cleared = set_cookie(&out, "va_session").unwrap();
    assert!(
        cleared.contains("Max-Age=0") || cleared.contains("expires="),
        "{cleared}"
    );
    assert_eq!(session_count(&app, "alice"), 0);
    let after = get_with(&app, &cookie, "/console").await;
    assert_eq!(after.status(), 303, "the old cookie is dead");
    let notice = app
        .get("/login?notice=logged_out")
        .await
        .text()
        .await
        .unwrap();
    assert!(notice.contains("You have logged out."));
}

#[tokio::test]
async fn a_wrong_password_or_unknown_name_re_renders_the_form_with_a_message() {
    let app = TestApp::spawn().await;
    add_user(&app, "bob", Role::ReleaseManager);
    for (name, password) in [("bob", "not the password at all"), ("nobody", PASSWORD)] {
        let response = post_login(&app, name, password).await;
        assert_eq!(response.status(), 401);
        assert!(set_cookie(&response, "va_session").is_none());
        let page = response.text().await.unwrap();
        assert!(
            page.contains("The user name or password is wrong."),
            "{page}"
        );
        assert!(page.contains("role=\"alert\""));
        assert!(
            page.contains(&format!("value=\"{name}\"")),
            "the name is kept"
        );
        assert!(
            page.contains("name=\"password\""),
            "the form is shown again"
        );
    }
    let empty = post_login(&app, "bob", "").await;
    assert_eq!(empty.status(), 400);
    assert!(empty
        .text()
        .await
        .unwrap()
        .contains("Enter your user name and password."));
    assert_eq!(session_count(&app, "bob"), 0);
    // Markup in a name is escaped, never echoed raw.
    let page = post_login(&app, "<b>x</b>", PASSWORD)
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("<b>x</b>"));
    assert!(
        page.contains("&lt;b&gt;") || page.contains("&#60;b&#62;"),
        "{page}"
    );
}

#[tokio::test]
async fn a_login_without_its_csrf_token_gets_403_and_no_session() {
    let app = TestApp::spawn().await;
    add_user(&app, "carol", Role::Admin);
    let (cookie, token) = login_form(&app).await;
    let cases: [(Option<&str>, Option<&str>); 3] = [
        (None, Some(&token)),                   // no cookie (a cross-site form)
        (Some(&cookie), None),                  // no field
        (Some(&cookie), Some(&"a".repeat(64))), // a different token
    ];
    for (cookie, token) in cases {
        let mut fields = vec![("username", "carol"), ("password", PASSWORD)];
        if let Some(t) = token {
            fields.push(("csrf_token", t));
        }
        let mut request = app.client.post(app.url("/login")).form(&fields);
        if let Some(c) = cookie {
            request = request.header("cookie", c);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403);
        assert!(set_cookie(&response, "va_session").is_none());
        assert!(response.text().await.unwrap().contains("security token"));
    }
    assert_eq!(session_count(&app, "carol"), 0);
}

#[tokio::test]
async fn roles_decide_what_a_session_may_see_and_role_changes_apply_at_once() {
    let app = TestApp::spawn().await;
    let analyst = login_as(&app, "ana", Role::Analyst).await;
    let admin = login_as(&app, "root", Role::Admin).await;
    let refused = get_with(&app, &analyst.cookie, "/console/accounts").await;
    assert_eq!(refused.status(), 403);
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("Administrator"),
        "the page names the role needed: {page}"
    );
    let page = get_page(&app, &admin.cookie, "/console/accounts").await;
    assert!(page.contains(">ana<") && page.contains(">root<") && page.contains("Analyst"));
    assert!(get_page(&app, &admin.cookie, "/console")
        .await
        .contains("href=\"/console/accounts\""));

    // The CLI promotes the analyst; the open session has the new role on its next request.
    let out = run_cli(&app.db.url, &["user", "set-role", "ana", "admin"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    get_page(&app, &analyst.cookie, "/console/accounts").await;
}

#[tokio::test]
async fn idle_and_absolute_expiry_send_the_browser_back_to_login_with_a_message() {
    for idle in [true, false] {
        let app = TestApp::spawn_with(|s| {
            if idle {
                s.console.session_idle = std::time::Duration::from_secs(1);
            } else {
                s.console.session_max = std::time::Duration::from_secs(1);
            }
        })
        .await;
        let session = login_as(&app, "dave", Role::Analyst).await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let response = get_with(&app, &session.cookie, "/console/accounts?x=1").await;
        assert_eq!(response.status(), 303, "idle={idle}");
        assert_eq!(
            response.headers()["location"],
            "/login?next=%2Fconsole%2Faccounts%3Fx%3D1&notice=expired"
        );
        let cleared = set_cookie(&response, "va_session").unwrap();
        assert!(cleared.contains("Max-Age=0") || cleared.contains("expires="));
        assert_eq!(session_count(&app, "dave"), 0, "the row is gone");
        let page = app
            .get("/login?next=%2Fconsole&notice=expired")
            .await
            .text()
            .await
            .unwrap();
        assert!(page.contains("Your session has expired. Please log in again."));
        assert!(page.contains("name=\"next\" value=\"/console\""));
    }
}

#[tokio::test]
async fn an_active_session_outlives_the_idle_timeout_while_it_is_used() {
    let app =
        TestApp::spawn_with(|s| s.console.session_idle = std::time::Duration::from_secs(2)).await;
    let session = login_as(&app, "erin", Role::Analyst).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        get_page(&app, &session.cookie, "/console").await;
    }
}

#[tokio::test]
async fn repeated_failures_lock_the_client_out_and_are_counted_in_metrics() {
    let app = TestApp::spawn_with(|s| {
        s.console.login_max_failures = std::num::NonZeroU32::new(3).unwrap();
        s.console.login_lockout = std::time::Duration::from_secs(600);
    })
    .await;
    add_user(&app, "frank", Role::Analyst);
    for _ in 0..3 {
        let response = post_login(&app, "frank", "wrong wrong wrong").await;
        assert_eq!(response.status(), 401);
    }
    // Locked: even the right password is not tried, and another account from the same
    // client is refused too.
    for name in ["frank", "someone-else"] {
        let response = post_login(&app, name, PASSWORD).await;
        assert_eq!(response.status(), 429, "{name}");
        let retry: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry > 500 && retry <= 600, "{retry}");
        assert!(set_cookie(&response, "va_session").is_none());
        let page = response.text().await.unwrap();
        assert!(page.contains("Too many failed logins"), "{page}");
        assert!(page.contains("Try again in 10 minute(s)."), "{page}");
    }
    assert_eq!(session_count(&app, "frank"), 0);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for line in [
        "version_app_console_logins_total{outcome=\"failure\"} 3",
        "version_app_console_logins_total{outcome=\"throttled\"} 2",
        "version_app_console_logins_total{outcome=\"success\"} 0",
        "version_app_console_login_lockouts_total 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from {metrics}");
    }
}

#[tokio::test]
async fn the_lockout_ends_after_its_time() {
    let app = TestApp::spawn_with(|s| {
        s.console.login_max_failures = std::num::NonZeroU32::new(2).unwrap();
        s.console.login_lockout = std::time::Duration::from_secs(1);
    })
    .await;
    add_user(&app, "gina", Role::Analyst);
    for _ in 0..2 {
        assert_eq!(
            post_login(&app, "gina", "nope nope nope").await.status(),
            401
        );
    }
    assert_eq!(post_login(&app, "gina", PASSWORD).await.status(), 429);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(post_login(&app, "gina", PASSWORD).await.status(), 303);
}

#[tokio::test]
async fn cookies_are_secure_when_configured_or_when_a_trusted_proxy_says_https() {
    let secure = TestApp::spawn_with(|s| s.console.cookie_secure = true).await;
    add_user(&secure, "hal", Role::Analyst);
    let response = post_login(&secure, "hal", PASSWORD).await;
    assert!(set_cookie(&response, "va_session")
        .unwrap()
        .contains("Secure"));

    for trust in [true, false] {
        let app = TestApp::spawn_with(|s| s.server.trust_forwarded_for = trust).await;
        let response = app
            .client
            .get(app.url("/login"))
            .header("x-forwarded-proto", "https")
            .send()
            .await
            .unwrap();
        let cookie = set_cookie(&response, "va_login_csrf").unwrap();
        assert_eq!(cookie.contains("Secure"), trust, "trust={trust}: {cookie}");
    }
}

#[tokio::test]
async fn apis_take_a_session_of_enough_role_or_a_token_of_the_scope() {
    let app = TestApp::spawn().await;
    let none = app.get("/api/v1/whoami").await;
    assert_eq!(none.status(), 401);
    let body: serde_json::Value = none.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    assert!(body["message"].as_str().unwrap().contains("insights:read"));

    let token = app.token(Scope::InsightsRead);
    let ok = app
        .client
        .get(app.url("/api/v1/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(
        (body["via"].as_str(), body["actor"].as_str()),
        (Some("token"), Some("token:test"))
    );
    let wrong_scope = app
        .client
        .get(app.url("/api/v1/whoami"))
        .header("PRIVATE-TOKEN", app.token(Scope::ReleasesWrite))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_scope.status(), 403);
    let bad = app
        .client
        .get(app.url("/api/v1/whoami"))
        .header("PRIVATE-TOKEN", "vat_nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);

    let session = login_as(&app, "ivy", Role::Analyst).await;
    let response = get_with(&app, &session.cookie, "/api/v1/whoami").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["actor"], "ivy");
    assert_eq!(body["role"], "analyst");
    // Logged out: 401 JSON, never a redirect, for an API.
    post_form(
        &app,
        &session.cookie,
        "/logout",
        &[("csrf_token", &session.csrf)],
    )
    .await;
    assert_eq!(
        get_with(&app, &session.cookie, "/api/v1/whoami")
            .await
            .status(),
        401
    );
}

fn user_add(db_url: &str, name: &str, role: &str, password: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_version-app"))
        .args(["user", "add", name, "--role", role])
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn the_user_verbs_add_list_change_and_remove_accounts() {
    let db = TestDb::new();
    let out = user_add(&db.url, "admin", "admin", PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("added admin with the role admin"));
    for (name, role, password, complaint) in [
        ("admin", "admin", PASSWORD, "already exists"),
        ("shorty", "analyst", "short", "at least 12 characters"),
        ("weird", "root", PASSWORD, "unknown role `root`"),
        ("<bad>", "analyst", PASSWORD, "not a valid account name"),
    ] {
        let out = user_add(&db.url, name, role, password);
        assert!(!out.status.success(), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(complaint), "{name}: {err}");
    }
    assert!(user_add(&db.url, "rm", "release_manager", PASSWORD)
        .status
        .success());
    let listed =
        String::from_utf8_lossy(&run_cli(&db.url, &["user", "list"], &[]).stdout).into_owned();
    assert!(
        listed.contains("admin") && listed.contains("release_manager"),
        "{listed}"
    );
    assert!(!listed.contains("argon2"), "hashes are never listed");
    assert!(!listed.contains("shorty"));
    {
        let store_db = version_app::db::Db::connect(&version_app::config::StoreSettings {
            url: db.url.clone().into(),
            ..Default::default()
        })
        .unwrap();
        let mut conn = store_db.get().unwrap();
        let row = store::find_user(&mut conn, "admin").unwrap().unwrap();
        assert!(
            row.password_hash.starts_with("$argon2id$"),
            "{}",
            row.password_hash
        );
    }

    let app = TestApp::spawn_on(db, |_| {}).await;
    let session = login(&app, "rm").await;
    let set = run_cli(&app.db.url, &["user", "set-role", "rm", "boss"], &[]);
    assert!(!set.status.success());
    let removed = run_cli(&app.db.url, &["user", "remove", "rm"], &[]);
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    assert_eq!(
        get_with(&app, &session.cookie, "/console").await.status(),
        303
    );
    assert!(!run_cli(&app.db.url, &["user", "remove", "rm"], &[])
        .status
        .success());
    assert_eq!(post_login(&app, "rm", PASSWORD).await.status(), 401);

    let token = run_cli(
        &app.db.url,
        &["token", "create", "--scope", "insights:read"],
        &[],
    );
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let secret = String::from_utf8_lossy(&token.stdout)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    let whoami = app
        .client
        .get(app.url("/api/v1/whoami"))
        .header("PRIVATE-TOKEN", secret)
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200);
}

#[tokio::test]
async fn chromium_logs_in_and_sees_the_console_home() {
    use fantoccini::Locator;
    let Some(driver) = crate::usage_upload::start_driver() else {
        return;
    };
    let app = TestApp::spawn().await;
    add_user(&app, "judy", Role::ReleaseManager);
    let browser = browser(&driver).await;
    browser.goto(&app.url("/console")).await.unwrap();
    // Sent to the login form first.
    browser
        .wait()
        .for_element(Locator::Id("username"))
        .await
        .unwrap();
    type_into(&browser, "username", "judy").await;
    type_into(&browser, "password", "wrong password here").await;
    click_log_in(&browser).await;
    let error = browser
        .wait()
        .for_element(Locator::Id("login-error"))
        .await
        .unwrap();
    assert!(error.text().await.unwrap().contains("wrong"));
    type_into(&browser, "password", PASSWORD).await;
    click_log_in(&browser).await;
    let who = browser
        .wait()
        .for_element(Locator::Id("signed-in-as"))
        .await
        .unwrap();
    assert!(who.text().await.unwrap().contains("judy"));
    assert_eq!(
        browser.current_url().await.unwrap().path(),
        "/console",
        "back to the page first asked for"
    );
    let heading = browser.find(Locator::Css("main h1")).await.unwrap();
    assert_eq!(heading.text().await.unwrap(), "Welcome, judy");
    // The stylesheet loaded under the strict CSP: the header is dark.
    let background = browser
        .execute(
            "return getComputedStyle(document.querySelector('.site-header')).backgroundColor",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(background, serde_json::json!("rgb(31, 42, 68)"));
    if let Ok(dir) = std::env::var("SCREENSHOT_DIR") {
        let png = browser.screenshot().await.unwrap();
        std::fs::write(format!("{dir}/console-home.png"), png).unwrap();
    }
    browser
        .find(Locator::XPath("//button[text()='Log out']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let notice = browser
        .wait()
        .for_element(Locator::Id("login-notice"))
        .await
        .unwrap();
    assert!(notice.text().await.unwrap().contains("logged out"));
    browser.close().await.unwrap();
}

/// A headless Chromium session on the driver.
pub async fn browser(driver: &crate::usage_upload::Driver) -> fantoccini::Client {
    let profile = driver._profile.path().display().to_string();
    let capabilities: serde_json::Map<String, serde_json::Value> =
        serde_json::from_value(serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--window-size=1280,900",
                         format!("--user-data-dir={profile}")]
            }
        }))
        .unwrap();
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    fantoccini::ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("WebDriver session")
}
