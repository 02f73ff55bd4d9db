//! `GET/POST /login` and `POST /logout`.
//!
//! The login form is protected against login CSRF with a double-submit token: `GET /login`
//! sets a random `va_login_csrf` cookie and puts the same value in the form; the POST must
//! bring both, equal. Once logged in, forms use the session's synchronizer token.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::config::chrono_duration;
use crate::console::auth::{current_session, ConsoleError};
use crate::console::layout::{self, Shell};
use crate::console::password;
use crate::console::session::{self, Lookup, LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use crate::console::throttle::Finished;
use crate::db::models::console as store;
use crate::routes::client::client_ip;
use crate::state::AppState;

/// Largest login form body read.
const MAX_LOGIN_BODY_BYTES: usize = 8 * 1024;
/// Seconds the login form's CSRF cookie lives.
const LOGIN_CSRF_MAX_AGE_SECS: i64 = 3600;

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    shell: Shell,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    username: &'a str,
    next: &'a str,
    csrf_token: &'a str,
}

#[derive(Debug, Default, Deserialize)]
struct LoginQuery {
    next: Option<String>,
    notice: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct LoginForm {
    username: Option<String>,
    password: Option<String>,
    csrf_token: Option<String>,
    next: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct LogoutForm {
    csrf_token: Option<String>,
}

/// A local path to return to after login; anything else (other hosts, `//host`, odd
/// characters) becomes `/console`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && path.len() <= 512
                && path.chars().all(|c| c.is_ascii_graphic()) =>
        {
            path.to_string()
        }
        _ => "/console".to_string(),
    }
}

fn notice_text(notice: Option<&str>) -> Option<&'static str> {
    match notice? {
        "expired" => Some("Your session has expired. Please log in again."),
        "logged_out" => Some("You have logged out."),
        _ => None,
    }
}

fn login_csrf(req: &HttpRequest) -> Option<String> {
    req.cookie(LOGIN_CSRF_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

struct FormView<'a> {
    status: StatusCode,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    username: &'a str,
    next: &'a str,
}

/// Renders the form with a (new or kept) login CSRF cookie.
fn form_response(req: &HttpRequest, state: &AppState, view: FormView<'_>) -> HttpResponse {
    let token = login_csrf(req).unwrap_or_else(session::random_token);
    let mut response = layout::render(
        view.status,
        &LoginPage {
            shell: Shell::anonymous(),
            notice: view.notice,
            error: view.error,
            username: view.username,
            next: view.next,
            csrf_token: &token,
        },
    );
    let cookie = session::cookie(
        LOGIN_CSRF_COOKIE,
        token,
        LOGIN_CSRF_MAX_AGE_SECS,
        req,
        &state.settings,
    );
    let _ = response.add_cookie(&cookie);
    response
}

/// `GET /login`: the form (or straight on, when already logged in).
pub async fn form(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let query: LoginQuery = serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let next = safe_next(query.next.as_deref());
    if let Lookup::Active(_) = current_session(&req, &state).await? {
        return Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, next))
            .finish());
    }
    Ok(form_response(
        &req,
        &state,
        FormView {
            status: StatusCode::OK,
            notice: notice_text(query.notice.as_deref()),
            error: None,
            username: "",
            next: &next,
        },
    ))
}

/// `POST /login`: checks the password and starts a session.
pub async fn submit(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    if body.len() > MAX_LOGIN_BODY_BYTES {
        return Err(ConsoleError::BadRequest(format!(
            "A login form is at most {MAX_LOGIN_BODY_BYTES} bytes."
        )));
    }
    let form: LoginForm = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ConsoleError::BadRequest(format!("The form could not be read: {e}.")))?;
    // The double-submit check comes first: a cross-site form has no cookie to match.
    let cookie_token = login_csrf(&req);
    match (&cookie_token, form.csrf_token.as_deref()) {
        (Some(expected), Some(sent)) if session::tokens_match(sent, expected) => {}
        _ => return Err(ConsoleError::Csrf),
    }
    let next = safe_next(form.next.as_deref());
    let username = form.username.unwrap_or_default().trim().to_string();
    let password = form.password.unwrap_or_default();
    let view = |status, error| FormView {
        status,
        notice: None,
        error: Some(error),
        username: "",
        next: "",
    };
    if username.is_empty() || password.is_empty() {
        let mut v = view(
            StatusCode::BAD_REQUEST,
            "Enter your user name and password.",
        );
        v.username = &username;
        v.next = &next;
        return Ok(form_response(&req, &state, v));
    }

    let client = client_ip(&req, state.settings.server.trust_forwarded_for);
    let attempt = match state.console.throttle.begin(client, &username) {
        Ok(attempt) => attempt,
        Err(wait) => {
            state.console.count_login("throttled");
            let minutes = wait.as_secs().div_ceil(60).max(1);
            let message = format!(
                "Too many failed logins from your address or for this account. \
                 Try again in {minutes} minute(s)."
            );
            let mut v = view(StatusCode::TOO_MANY_REQUESTS, &message);
            v.username = &username;
            v.next = &next;
            let mut response = form_response(&req, &state, v);
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(wait.as_secs().max(1)),
            );
            return Ok(response);
        }
    };

    let settings = state.settings.clone();
    let db = state.db.clone();
    let name = username.clone();
    // One blocking task: the lookup, the (deliberately slow) hash check, the new session.
    let outcome = web::block(
        move || -> Result<Option<(String, String)>, crate::db::DbError> {
            let mut conn = db.get()?;
            let user = store::find_user(&mut conn, &name)?;
            let Some(user) = user else {
                password::verify_against_dummy(&password);
                return Ok(None);
            };
            let matches = password::verify_password(&password, &user.password_hash);
            if !matches || user.disabled {
                return Ok(None);
            }
            session::start(&mut conn, user.id, &settings).map(Some)
        },
    );
    let outcome = match outcome.await {
        Ok(result) => result,
        Err(e) => Err(crate::db::DbError::Task {
            what: "login task",
            source: Box::new(e),
        }),
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(err) => {
            // A store failure says nothing about the password: do not count it against anyone.
            state.console.throttle.abandon(attempt);
            return Err(err.into());
        }
    };
    match outcome {
        Some((session_id, _csrf)) => {
            state.console.throttle.finish(attempt, true);
            state.console.count_login("success");
            tracing::info!(console.user = %username, "console login");
            let cookie = session::cookie(
                SESSION_COOKIE,
                session_id,
                chrono_duration(state.settings.console.session_max).num_seconds(),
                &req,
                &state.settings,
            );
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, next))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .cookie(cookie)
                .cookie(session::removal(LOGIN_CSRF_COOKIE, &req, &state.settings))
                .finish())
        }
        None => {
            let finished = state.console.throttle.finish(attempt, false);
            state.console.count_login("failure");
            if finished == Finished::FailedAndLocked {
                state.console.lockouts.inc();
                tracing::warn!("console login locked out after repeated failures");
            }
            let mut v = view(
                StatusCode::UNAUTHORIZED,
                "The user name or password is wrong.",
            );
            v.username = &username;
            v.next = &next;
            Ok(form_response(&req, &state, v))
        }
    }
}

/// `POST /logout`: ends the session (the form carries the session's CSRF token).
pub async fn logout(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let active = match current_session(&req, &state).await? {
        Lookup::Active(active) => active,
        Lookup::Expired | Lookup::Absent => {
            return Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/login?notice=expired"))
                .cookie(session::removal(SESSION_COOKIE, &req, &state.settings))
                .finish())
        }
    };
    let form: LogoutForm = if body.len() <= MAX_LOGIN_BODY_BYTES {
        serde_urlencoded::from_bytes(&body).unwrap_or_default()
    } else {
        LogoutForm::default()
    };
    let sent = form.csrf_token.as_deref();
    if !sent.is_some_and(|s| session::tokens_match(s, &active.csrf_token)) {
        return Err(ConsoleError::Csrf);
    }
    let id = active.id;
    state
        .db
        .run(move |conn| store::delete_session(conn, id))
        .await?;
    tracing::info!(console.user = %active.name, "console logout");
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/login?notice=logged_out"))
        .cookie(session::removal(SESSION_COOKIE, &req, &state.settings))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(
            safe_next(Some("/console/releases?q=17")),
            "/console/releases?q=17"
        );
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "javascript:x",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/console", "{bad}");
        }
        assert_eq!(safe_next(None), "/console");
    }
}
