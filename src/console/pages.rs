//! The console's own pages: home and accounts. Sections (insights, releases) live in their
//! own modules and register under the same `/console` scope.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use crate::console::auth::{ConsoleError, ConsoleUser, Role};
use crate::console::layout::{self, Section, Shell};
use crate::db::models::console as store;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "console/home.html")]
struct HomePage {
    shell: Shell,
    name: String,
    role_label: &'static str,
    can_edit: bool,
    is_admin: bool,
}

/// `GET /console`: the home page after login.
pub async fn home(user: ConsoleUser) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::Analyst)?;
    Ok(layout::render(
        StatusCode::OK,
        &HomePage {
            shell: Shell::for_user(&user, Section::Home),
            name: user.name.clone(),
            role_label: user.role.label(),
            can_edit: user.is_at_least(Role::ReleaseManager),
            is_admin: user.is_at_least(Role::Admin),
        },
    ))
}

struct AccountView {
    name: String,
    role: String,
    created_at: String,
    disabled: bool,
}

#[derive(Template)]
#[template(path = "console/accounts.html")]
struct AccountsPage {
    shell: Shell,
    users: Vec<AccountView>,
}

/// `GET /console/accounts`: who may use the console (administrators only).
pub async fn accounts(
    user: ConsoleUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::Admin)?;
    let rows = state.db.run(store::list_users).await?;
    let users = rows
        .into_iter()
        .map(|u| AccountView {
            role: u
                .role
                .parse::<Role>()
                .map(|r| r.label().to_string())
                .unwrap_or(u.role),
            name: u.name,
            created_at: u.created_at.format("%Y-%m-%d %H:%M").to_string(),
            disabled: u.disabled,
        })
        .collect();
    Ok(layout::render(
        StatusCode::OK,
        &AccountsPage {
            shell: Shell::for_user(&user, Section::Accounts),
            users,
        },
    ))
}
