//! Console sessions: a random 256-bit id in an `HttpOnly` cookie, only its SHA-256 in the
//! store (`console_sessions`), with an idle and an absolute expiry and a CSRF synchronizer
//! token per session. Server-side rows, not signed cookies, so several app processes on one
//! PostgreSQL share sessions without sharing a secret key, and logout really ends a session.

use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::HttpRequest;
use chrono::{NaiveDateTime, Utc};
use rand::RngCore;

use crate::auth::hash_token;
use crate::config::{chrono_duration, Settings};
use crate::console::role::Role;
use crate::db::models::console as store;
use crate::db::{AnyConnection, DbError};

/// The session cookie.
pub const SESSION_COOKIE: &str = "va_session";
/// The login form's double-submit CSRF cookie (there is no session yet to hold a token).
pub const LOGIN_CSRF_COOKIE: &str = "va_login_csrf";

/// 32 random bytes, hex: session ids and CSRF tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// True when cookies must be `Secure`: configured so, or a trusted proxy says the browser
/// spoke https (`X-Forwarded-Proto`, read only with `trust_forwarded_for`, since anyone can
/// send the header).
pub fn wants_secure(req: &HttpRequest, settings: &Settings) -> bool {
    settings.console.cookie_secure
        || (settings.server.trust_forwarded_for
            && req
                .headers()
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https")))
}

/// A console cookie with the attributes every console cookie has.
pub fn cookie(
    name: &'static str,
    value: String,
    max_age_secs: i64,
    req: &HttpRequest,
    settings: &Settings,
) -> Cookie<'static> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(wants_secure(req, settings))
        .max_age(time::Duration::seconds(max_age_secs))
        .finish()
}

/// A cookie that tells the browser to forget `name`.
pub fn removal(name: &'static str, req: &HttpRequest, settings: &Settings) -> Cookie<'static> {
    let mut gone = cookie(name, String::new(), 0, req, settings);
    gone.make_removal();
    gone
}

/// A live session.
#[derive(Debug, Clone)]
pub struct ActiveSession {
    /// Row id (to end it).
    pub id: i64,
    /// Account name.
    pub name: String,
    /// Account role, read at every request so a role change applies at once.
    pub role: Role,
    /// The session's CSRF token.
    pub csrf_token: String,
}

/// What the session cookie leads to.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// No cookie, or one that names no session.
    Absent,
    /// The session existed but has timed out (and has now been removed).
    Expired,
    /// A live session.
    Active(ActiveSession),
}

/// The session cookie's value, when sent and plausible.
pub fn presented_id(req: &HttpRequest) -> Option<String> {
    req.cookie(SESSION_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Resolves a presented session id, expiring it when its time is up. Blocking.
pub fn resolve(
    conn: &mut AnyConnection,
    presented: &str,
    settings: &Settings,
) -> Result<Lookup, DbError> {
    let Some(row) = store::find_session(conn, &hash_token(presented))? else {
        return Ok(Lookup::Absent);
    };
    let now = Utc::now().naive_utc();
    let idle = chrono_duration(settings.console.session_idle);
    if row.expires_at <= now || row.last_seen + idle <= now || row.disabled {
        store::delete_session(conn, row.id)?;
        return Ok(Lookup::Expired);
    }
    let Ok(role) = row.role.parse::<Role>() else {
        return Ok(Lookup::Absent);
    };
    // Stamp activity at most every tenth of the idle time (and at most once a minute), not
    // on every request: a write per page view buys nothing.
    let stamp_every = (idle / 10).min(chrono::Duration::seconds(60));
    if now - row.last_seen >= stamp_every {
        store::touch_session(conn, row.id, now)?;
    }
    Ok(Lookup::Active(ActiveSession {
        id: row.id,
        name: row.user_name,
        role,
        csrf_token: row.csrf_token,
    }))
}

/// Starts a session for an account; returns the cookie value (never stored) and the
/// session's CSRF token. Also removes sessions that have ended.
pub fn start(
    conn: &mut AnyConnection,
    user_id: i64,
    settings: &Settings,
) -> Result<(String, String), DbError> {
    let id = random_token();
    let csrf = random_token();
    let now: NaiveDateTime = Utc::now().naive_utc();
    let expires = now + chrono_duration(settings.console.session_max);
    let idle_before = now - chrono_duration(settings.console.session_idle);
    store::create_session(
        conn,
        user_id,
        &hash_token(&id),
        &csrf,
        now,
        expires,
        idle_before,
    )?;
    Ok((id, csrf))
}

/// Constant-time comparison of a submitted CSRF token with the expected one.
pub fn tokens_match(submitted: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    !expected.is_empty()
        && submitted.len() == expected.len()
        && bool::from(submitted.as_bytes().ct_eq(expected.as_bytes()))
}
