//! The "add a release" form of the release pages: one release (version, release day,
//! security level, advisory, details) for release managers, audited with `via` = `web`.
//! A duplicate, a malformed version or day, or an unknown level re-renders the form with
//! the message and the values typed; nothing is saved.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::console::auth::{ConsoleError, ConsoleUser, Role};
use crate::console::layout::{self, Section, Shell};
use crate::console::releases::{parse_day, read_form};
use crate::db::models::release_changes::{Actor, WriteError};
use crate::domain::csv_import::parse_release_version;
use crate::domain::input_rules::no_nul;
use crate::domain::release::SecurityLevel;
use crate::domain::release_edit::{Edit, EditError, Mode, Via};
use crate::release_ops;
use crate::state::AppState;

/// Registers `/console/releases/new` (before the release pages' `/releases/{version}`).
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/releases/new", web::get().to(form))
        .route("/releases/new", web::post().to(submit));
}

#[derive(Template)]
#[template(path = "console/release_add.html")]
struct AddPage {
    shell: Shell,
    csrf: String,
    version: String,
    released_on: String,
    security: String,
    advisory: String,
    details: String,
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AddForm {
    csrf_token: Option<String>,
    version: Option<String>,
    released_on: Option<String>,
    security: Option<String>,
    advisory: Option<String>,
    details: Option<String>,
}

/// `GET /console/releases/new`: the empty form.
pub(crate) async fn form(user: ConsoleUser) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::ReleaseManager)?;
    Ok(layout::render(
        StatusCode::OK,
        &AddPage {
            shell: Shell::for_user(&user, Section::Releases),
            csrf: user.csrf_token.clone(),
            version: String::new(),
            released_on: String::new(),
            security: "none".into(),
            advisory: String::new(),
            details: String::new(),
            error: None,
        },
    ))
}

/// The edit a filled-in form asks for, or the message naming what is wrong.
fn creation(page: &AddPage) -> Result<Edit, String> {
    if page.version.trim().is_empty() {
        return Err("The version is required, e.g. 17.9.2".into());
    }
    let version = parse_release_version(&page.version)
        .map_err(|e| format!("The version `{}` is not valid: {e}", page.version.trim()))?;
    let released_on = parse_day("released_on", &page.released_on)?
        .unwrap_or_else(|| chrono::Utc::now().date_naive());
    let security: SecurityLevel = page.security.parse().map_err(|e| format!("{e}"))?;
    no_nul("advisory", &page.advisory).and_then(|_| no_nul("details", &page.details))?;
    let mut edit = Edit::new(version, Mode::Create);
    edit.released_on = Some(released_on);
    edit.security = Some(security);
    edit.advisory = Some(Some(page.advisory.trim().to_string()).filter(|a| !a.is_empty()));
    edit.details = Some(page.details.clone());
    Ok(edit)
}

/// `POST /console/releases/new`: adds the release and goes to its page; any problem
/// re-renders the form (422, or 409 for a version that exists).
pub(crate) async fn submit(
    user: ConsoleUser,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::ReleaseManager)?;
    let form: AddForm = read_form(&body)?;
    user.check_csrf(form.csrf_token.as_deref())?;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut page = AddPage {
        shell: Shell::for_user(&user, Section::Releases),
        csrf: user.csrf_token.clone(),
        version: text(&form.version),
        released_on: text(&form.released_on),
        security: text(&form.security),
        advisory: text(&form.advisory),
        details: text(&form.details),
        error: None,
    };
    let edit = match creation(&page) {
        Ok(e) => e,
        Err(e) => {
            page.error = Some(format!("{e}. Nothing was saved."));
            return Ok(layout::render(StatusCode::UNPROCESSABLE_ENTITY, &page));
        }
    };
    let version = edit.version.to_string();
    let actor = Actor::new(user.name.clone(), Via::Web);
    match release_ops::apply(&state.db, &state.releases, vec![edit], Vec::new(), actor).await {
        Ok(_) => Ok(HttpResponse::SeeOther()
            .insert_header(("location", format!("/console/releases/{version}?saved=1")))
            .finish()),
        Err(WriteError::Edit(EditError::Exists(v))) => {
            page.error = Some(format!(
                "Release {v} already exists; change it on its own page. Nothing was saved."
            ));
            Ok(layout::render(StatusCode::CONFLICT, &page))
        }
        Err(WriteError::Db(e)) => Err(e.into()),
        Err(other) => {
            page.error = Some(format!("{other}. Nothing was saved."));
            Ok(layout::render(StatusCode::CONFLICT, &page))
        }
    }
}
