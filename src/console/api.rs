//! `GET /api/v1/whoami`: who the API thinks is calling (a console session or a token), so
//! scripts and the console's own pages can check their credentials.

use actix_web::HttpResponse;
use serde::Serialize;

use crate::console::auth::{ApiAccess, Caller, InsightsRead};

#[derive(Serialize)]
struct WhoAmI {
    /// The actor name recorded for changes (`NAME` or `token:NAME`).
    actor: String,
    /// `session` or `token`.
    via: &'static str,
    /// The console role, for a session.
    role: Option<crate::console::auth::Role>,
}

/// `GET /api/v1/whoami`: needs what reading insights needs (an analyst's session or an
/// `insights:read` token).
pub async fn whoami(access: ApiAccess<InsightsRead>) -> HttpResponse {
    let (via, role) = match &access.caller {
        Caller::Session { role, .. } => ("session", Some(*role)),
        Caller::Token { .. } => ("token", None),
    };
    HttpResponse::Ok().json(WhoAmI {
        actor: access.caller.actor(),
        via,
        role,
    })
}
