//! Console test support: accounts made in the store, logins over HTTP, cookies by hand
//! (the test client keeps no cookie jar, so every test sees exactly what the server sets).

use crate::helpers::TestApp;
use version_app::console::auth::Role;
use version_app::console::password::hash_password;
use version_app::db::models::console as store;

/// The password every test account gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// A logged-in console session.
pub struct Session {
    /// `va_session=…`, for the `Cookie` header.
    pub cookie: String,
    /// The session's CSRF token, read from the page's logout form.
    pub csrf: String,
}

/// Adds an account directly in the store.
pub fn add_user(app: &TestApp, name: &str, role: Role) {
    let db = app.store();
    let mut conn = db.get().unwrap();
    let hash = hash_password(PASSWORD).unwrap();
    let now = chrono::Utc::now().naive_utc();
    store::insert_user(&mut conn, name, role.as_str(), &hash, now)
        .unwrap()
        .expect("new account");
}

/// The value of cookie `name` among a response's `Set-Cookie` headers, with its attributes.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// `name=value` of a `Set-Cookie` header.
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_string()
}

/// The value of the hidden input `name` in a page.
pub fn hidden_field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let end = page[start..].find('"')? + start;
    Some(page[start..end].to_string())
}

/// The login form's CSRF cookie pair and token.
pub async fn login_form(app: &TestApp) -> (String, String) {
    let response = app.get("/login").await;
    assert_eq!(response.status(), 200);
    let cookie = cookie_pair(&set_cookie(&response, "va_login_csrf").expect("login csrf cookie"));
    let page = response.text().await.unwrap();
    let token = hidden_field(&page, "csrf_token").expect("csrf field");
    (cookie, token)
}

/// Posts the login form with a name and password; returns the raw response.
pub async fn post_login(app: &TestApp, name: &str, password: &str) -> reqwest::Response {
    let (cookie, token) = login_form(app).await;
    app.client
        .post(app.url("/login"))
        .header("cookie", cookie)
        .form(&[
            ("username", name),
            ("password", password),
            ("csrf_token", token.as_str()),
            ("next", "/console"),
        ])
        .send()
        .await
        .unwrap()
}

/// Logs in as an existing account and returns the session.
pub async fn login(app: &TestApp, name: &str) -> Session {
    let response = post_login(app, name, PASSWORD).await;
    assert_eq!(response.status(), 303, "login of {name} failed");
    let cookie = cookie_pair(&set_cookie(&response, "va_session").expect("session cookie"));
    let page = get_page(app, &cookie, "/console").await;
    let csrf = hidden_field(&page, "csrf_token").expect("logout form carries the token");
    Session { cookie, csrf }
}

/// Adds an account with a role and logs it in.
pub async fn login_as(app: &TestApp, name: &str, role: Role) -> Session {
    add_user(app, name, role);
    login(app, name).await
}

/// GET a console page with a session cookie, expecting 200; returns the HTML.
pub async fn get_page(app: &TestApp, cookie: &str, path: &str) -> String {
    let response = get_with(app, cookie, path).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.text().await.unwrap()
}

/// GET with a session cookie.
pub async fn get_with(app: &TestApp, cookie: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// POST a form with a session cookie.
pub async fn post_form(
    app: &TestApp,
    cookie: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("cookie", cookie)
        .form(fields)
        .send()
        .await
        .unwrap()
}

/// Types `text` into the form field with id `id` (in headless Chromium).
pub async fn type_into(browser: &fantoccini::Client, id: &str, text: &str) {
    browser
        .find(fantoccini::Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("field #{id}: {e}"))
        .send_keys(text)
        .await
        .unwrap();
}

/// Clicks the login form's button.
pub async fn click_log_in(browser: &fantoccini::Client) {
    browser
        .find(fantoccini::Locator::XPath("//button[text()='Log in']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// On the login form the browser was sent to, logs `name` in with [`PASSWORD`].
pub async fn log_in_in_browser(browser: &fantoccini::Client, name: &str) {
    browser
        .wait()
        .for_element(fantoccini::Locator::Id("username"))
        .await
        .unwrap();
    type_into(browser, "username", name).await;
    type_into(browser, "password", PASSWORD).await;
    click_log_in(browser).await;
}
