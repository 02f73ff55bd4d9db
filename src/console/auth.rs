//! Who is using the console, and what they may do.
//!
//! - Pages take a [`ConsoleUser`] (a live session) and call [`ConsoleUser::require`] with the
//!   least role they need; forms check their token with [`ConsoleUser::check_csrf`]. Without
//!   a session the browser is sent to `/login`; with too low a role it gets a 403 page.
//! - APIs take an [`ApiAccess<R>`]: either an API token with the rule's scope, or a console
//!   session whose role is at least the rule's role (401/403 JSON otherwise). A session
//!   changing something through an API must also send its CSRF token as `X-CSRF-Token`.

use actix_web::dev::Payload;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;
use std::marker::PhantomData;

use crate::auth::{self, Scope};
use crate::console::layout;
pub use crate::console::role::{ConsoleUser, Role};
use crate::console::session::{self, Lookup, SESSION_COOKIE};
use crate::db::DbError;
use crate::error::{ApiError, Chain};
use crate::state::AppState;

/// Why a console page was not served; each renders as a clear HTML page (or a redirect).
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Not logged in, or the session ended: go to the login form, then back to `next`.
    #[error("login required")]
    LoginRequired {
        /// The session existed and timed out (the login form says so).
        expired: bool,
        /// Where to return after logging in (a local path).
        next: String,
    },
    /// Logged in, but the role is too low.
    #[error("this page needs the role {0}")]
    Forbidden(Role),
    /// A state-changing form came without its CSRF token, or with a wrong one.
    #[error("missing or wrong CSRF token")]
    Csrf,
    /// Nothing at this address.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The store cannot answer now (its error, logged once when the page is made).
    #[error("the store is unavailable")]
    Unavailable(#[source] DbError),
    /// A bug or unexpected failure; details go to the log only.
    #[error("internal error")]
    Internal(String),
}

/// No logging here: the failure is logged once, when the page is made.
impl From<DbError> for ConsoleError {
    fn from(err: DbError) -> Self {
        if err.is_unavailable() {
            ConsoleError::Unavailable(err)
        } else {
            ConsoleError::Internal(Chain(&err).to_string())
        }
    }
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            ConsoleError::LoginRequired { .. } => StatusCode::SEE_OTHER,
            ConsoleError::Forbidden(_) | ConsoleError::Csrf => StatusCode::FORBIDDEN,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (title, message) = match self {
            ConsoleError::LoginRequired { expired, next } => {
                let mut location = format!(
                    "/login?next={}",
                    percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
                );
                if *expired {
                    location.push_str("&notice=expired");
                }
                let mut response = HttpResponse::SeeOther();
                response.insert_header((header::LOCATION, location));
                response.insert_header((header::CACHE_CONTROL, "no-store"));
                if *expired {
                    // The browser forgets the dead cookie; Secure is irrelevant for a removal.
                    let mut gone = actix_web::cookie::Cookie::new(SESSION_COOKIE, "");
                    gone.set_path("/");
                    gone.make_removal();
                    response.cookie(gone);
                }
                return response.finish();
            }
            ConsoleError::Forbidden(role) => (
                "Not allowed".to_string(),
                format!(
                    "This page needs the role {} or higher. Ask an administrator if you need it.",
                    role.label()
                ),
            ),
            ConsoleError::Csrf => (
                "The form could not be accepted".to_string(),
                "The form was missing its security token, or the token was out of date \
                 (for example after logging in again in another tab). Nothing was changed. \
                 Go back, reload the page and try again."
                    .to_string(),
            ),
            ConsoleError::NotFound(what) => ("Not found".to_string(), what.clone()),
            ConsoleError::BadRequest(what) => {
                ("The request could not be read".to_string(), what.clone())
            }
            ConsoleError::Unavailable(cause) => {
                tracing::warn!(error.cause = %Chain(cause), "store unavailable");
                (
                    "Try again shortly".to_string(),
                    "The store is unavailable at the moment; nothing was changed.".to_string(),
                )
            }
            ConsoleError::Internal(cause) => {
                tracing::error!(error.cause = %cause, "console request failed");
                (
                    "Something went wrong".to_string(),
                    "The request failed on our side; it has been logged.".to_string(),
                )
            }
        };
        layout::message_page(status, &title, &message)
    }
}

fn state_of(req: &HttpRequest) -> Result<web::Data<AppState>, String> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| "application state missing".to_string())
}

/// Where to come back to after logging in: the page asked for, if it was a plain GET.
fn return_path(req: &HttpRequest) -> String {
    if req.method() == Method::GET {
        match req.uri().path_and_query() {
            Some(pq) => pq.as_str().to_string(),
            None => "/console".into(),
        }
    } else {
        "/console".into()
    }
}

/// Resolves the request's session, if any. Used by both extractors and the login page.
pub async fn current_session(req: &HttpRequest, state: &AppState) -> Result<Lookup, DbError> {
    let Some(presented) = session::presented_id(req) else {
        return Ok(Lookup::Absent);
    };
    let settings = state.settings.clone();
    state
        .db
        .run(move |conn| session::resolve(conn, &presented, &settings))
        .await
}

impl FromRequest for ConsoleUser {
    type Error = ConsoleError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state_of(&req).map_err(ConsoleError::Internal)?;
            match current_session(&req, &state).await? {
                Lookup::Active(active) => Ok(ConsoleUser {
                    name: active.name,
                    role: active.role,
                    csrf_token: active.csrf_token,
                    session_id: active.id,
                }),
                Lookup::Expired => Err(ConsoleError::LoginRequired {
                    expired: true,
                    next: return_path(&req),
                }),
                Lookup::Absent => Err(ConsoleError::LoginRequired {
                    expired: false,
                    next: return_path(&req),
                }),
            }
        })
    }
}

impl ConsoleUser {
    /// Ok when the user's role is at least `role`; a 403 page otherwise.
    pub fn require(&self, role: Role) -> Result<(), ConsoleError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden(role))
        }
    }

    /// True when the user's role is at least `role` (to show or hide links and buttons).
    pub fn is_at_least(&self, role: Role) -> bool {
        self.role >= role
    }

    /// Ok when a form's `csrf_token` field matches the session's token; 403 otherwise.
    /// Call it before changing anything.
    pub fn check_csrf(&self, submitted: Option<&str>) -> Result<(), ConsoleError> {
        match submitted {
            Some(token) if session::tokens_match(token, &self.csrf_token) => Ok(()),
            _ => Err(ConsoleError::Csrf),
        }
    }
}

/// Who called an API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A console user through their session.
    Session {
        /// Account name.
        name: String,
        /// Account role.
        role: Role,
    },
    /// An API token.
    Token {
        /// Token id.
        id: i64,
        /// The token's name.
        name: String,
    },
}

impl Caller {
    /// The name recorded as the actor of a change: the account name, or `token:NAME`.
    pub fn actor(&self) -> String {
        match self {
            Caller::Session { name, .. } => name.clone(),
            Caller::Token { name, .. } => format!("token:{name}"),
        }
    }
}

/// What an API needs: a session role or a token scope.
pub trait AccessRule {
    /// The least console role whose session is accepted.
    const ROLE: Role;
    /// The token scope accepted.
    const SCOPE: Scope;
}

/// Reading insights: an analyst's session or an `insights:read` token.
#[derive(Debug)]
pub struct InsightsRead;
impl AccessRule for InsightsRead {
    const ROLE: Role = Role::Analyst;
    const SCOPE: Scope = Scope::InsightsRead;
}

/// Changing releases: a release manager's session or a `releases:write` token.
#[derive(Debug)]
pub struct ReleasesWrite;
impl AccessRule for ReleasesWrite {
    const ROLE: Role = Role::ReleaseManager;
    const SCOPE: Scope = Scope::ReleasesWrite;
}

/// An API request admitted by the rule `R` (see the module docs).
#[derive(Debug)]
pub struct ApiAccess<R: AccessRule> {
    /// Who is calling.
    pub caller: Caller,
    _rule: PhantomData<R>,
}

/// Admits an API request with a token of scope `scope`, or a session of role ≥ `role`.
pub async fn authorize_api(
    req: &HttpRequest,
    state: &AppState,
    role: Role,
    scope: Scope,
) -> Result<Caller, ApiError> {
    if let Some(token) = auth::presented_token(req) {
        let row = auth::authorize_on(&state.db, Some(token), scope).await?;
        return Ok(Caller::Token {
            id: row.id,
            name: row.name,
        });
    }
    match current_session(req, state).await? {
        Lookup::Active(active) => {
            if active.role < role {
                return Err(ApiError::Forbidden(format!(
                    "this needs the console role {role} or a token with the scope {scope}"
                )));
            }
            let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
            if !safe {
                let sent = req
                    .headers()
                    .get("x-csrf-token")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if !session::tokens_match(sent, &active.csrf_token) {
                    return Err(ApiError::Forbidden(
                        "a console session changing something must send its CSRF token as X-CSRF-Token"
                            .into(),
                    ));
                }
            }
            Ok(Caller::Session {
                name: active.name,
                role: active.role,
            })
        }
        Lookup::Expired => Err(ApiError::Unauthorized(
            "the console session has expired; log in again or send a token".into(),
        )),
        Lookup::Absent => Err(ApiError::Unauthorized(format!(
            "a token with the scope {scope} (header PRIVATE-TOKEN or Authorization: Bearer) \
             or a console session is required"
        ))),
    }
}

impl<R: AccessRule + 'static> FromRequest for ApiAccess<R> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state_of(&req).map_err(ApiError::Internal)?;
            let caller = authorize_api(&req, &state, R::ROLE, R::SCOPE).await?;
            Ok(ApiAccess {
                caller,
                _rule: PhantomData,
            })
        })
    }
}
