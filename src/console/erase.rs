//! `/console/erase`: administrators erase one installation, in two steps (preview, then an
//! explicit confirmation), through the same code as `version-app erase`
//! (`lifecycle::erase_installation`). Both steps are POSTs, so the identifier never appears
//! in a URL or the request log; nothing here logs it either (docs/privacy.md).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::console::auth::{ConsoleError, ConsoleUser, Role};
use crate::console::layout::{self, Section, Shell};
use crate::db::models::erasure::{self, Installation, Outcome, Removed, Subject};
use crate::db::DbError;
use crate::error::Chain;
use crate::lifecycle;
use crate::state::AppState;

/// Longest hostname or uuid accepted (a DNS name is at most 253 characters).
const MAX_IDENTIFIER_CHARS: usize = 255;
/// Largest form body read.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Registers the erase page under `/console`.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/erase", web::get().to(form))
        .route("/erase", web::post().to(submit));
}

/// Rows per table, for the preview and the result.
struct Counts {
    /// `hostname H` or `uuid U`, as typed.
    subject: String,
    /// How many identifiers were followed.
    identifiers: String,
    /// `(table, rows)`, only tables with rows.
    rows: Vec<(&'static str, usize)>,
    /// Sum of `rows`.
    total: usize,
    /// `erasures.id` once erased.
    erasure_id: i64,
}

impl Counts {
    fn new(subject: String, installation: &Installation, removed: &Removed) -> Counts {
        Counts {
            subject,
            identifiers: format!(
                "{} hostname(s), {} uuid(s), {} unique instance id(s)",
                installation.hostnames.len(),
                installation.uuids.len(),
                installation.unique_ids.len()
            ),
            rows: removed.iter().copied().filter(|(_, n)| *n > 0).collect(),
            total: removed.iter().map(|(_, n)| n).sum(),
            erasure_id: 0,
        }
    }
}

#[derive(Template)]
#[template(path = "console/erase.html")]
struct ErasePage {
    shell: Shell,
    csrf: String,
    kind: String,
    value: String,
    key_missing: bool,
    error: Option<String>,
    preview: Option<Counts>,
    done: Option<Counts>,
}

impl ErasePage {
    fn new(user: &ConsoleUser, state: &AppState) -> ErasePage {
        ErasePage {
            shell: Shell::for_user(user, Section::Erase),
            csrf: user.csrf_token.clone(),
            kind: "hostname".into(),
            value: String::new(),
            key_missing: state.settings.privacy.erasure_key.is_none(),
            error: None,
            preview: None,
            done: None,
        }
    }

    /// The form again, with a message; nothing was changed.
    fn refuse(mut self, status: StatusCode, message: String) -> HttpResponse {
        self.error = Some(message);
        layout::render(status, &self)
    }
}

#[derive(Debug, Default, Deserialize)]
struct EraseForm {
    csrf_token: Option<String>,
    kind: Option<String>,
    value: Option<String>,
    action: Option<String>,
    confirm: Option<String>,
}

/// `GET /console/erase`: the form (administrators only).
pub(crate) async fn form(
    user: ConsoleUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::Admin)?;
    Ok(layout::render(
        StatusCode::OK,
        &ErasePage::new(&user, &state),
    ))
}

/// The subject named by the form, or why it cannot be read.
fn subject_of(kind: &str, value: &str) -> Result<Subject, String> {
    if value.is_empty() {
        return Err("Give the installation's hostname or uuid.".into());
    }
    if value.chars().count() > MAX_IDENTIFIER_CHARS {
        return Err(format!(
            "A hostname or uuid has at most {MAX_IDENTIFIER_CHARS} characters."
        ));
    }
    if value.chars().any(char::is_control) {
        return Err("The hostname or uuid contains control characters.".into());
    }
    match kind {
        "hostname" => Ok(Subject::Hostname(value.to_string())),
        "uuid" => Ok(Subject::Uuid(value.to_string())),
        other => Err(format!(
            "Choose hostname or uuid (got `{}`).",
            other.chars().take(40).collect::<String>()
        )),
    }
}

/// A store failure as a message on the form; the details go to the log (no identifier).
fn store_failure(err: &DbError) -> (StatusCode, String) {
    if err.is_unavailable() {
        tracing::warn!(error.cause = %Chain(err), "store unavailable");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "The store is unavailable at the moment; nothing was changed. Try again shortly."
                .into(),
        )
    } else {
        tracing::error!(error.cause = %Chain(err), "console erasure failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "The erasure failed on our side and was rolled back whole; nothing was changed. \
             It has been logged."
                .into(),
        )
    }
}

/// `POST /console/erase`: `action=preview` shows what would be removed (nothing changes);
/// `action=erase` with `confirm=yes` erases and shows what was removed.
pub(crate) async fn submit(
    user: ConsoleUser,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::Admin)?;
    if body.len() > MAX_FORM_BYTES {
        return Err(ConsoleError::BadRequest(format!(
            "The form is larger than {} KiB.",
            MAX_FORM_BYTES / 1024
        )));
    }
    let form: EraseForm = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ConsoleError::BadRequest(format!("The form could not be read: {e}.")))?;
    user.check_csrf(form.csrf_token.as_deref())?;
    let mut page = ErasePage::new(&user, &state);
    page.kind = form.kind.unwrap_or_default().trim().to_string();
    page.value = form.value.unwrap_or_default().trim().to_string();
    let subject = match subject_of(&page.kind, &page.value) {
        Ok(s) => s,
        Err(message) => return Ok(page.refuse(StatusCode::UNPROCESSABLE_ENTITY, message)),
    };
    let label = format!("{} {}", page.kind, page.value);
    let Some(key) = state.settings.privacy.erasure_key.clone() else {
        let message = "Nothing can be erased: the `erasure_key` setting is not set.".into();
        return Ok(page.refuse(StatusCode::CONFLICT, message));
    };
    let unknown = format!("Nothing in the store belongs to {label}; nothing was changed.");
    match form.action.as_deref() {
        Some("preview") => {
            let found = {
                let subject = subject.clone();
                state
                    .db
                    .run(move |conn| erasure::preview(conn, &subject))
                    .await
            };
            match found {
                Ok(Some((installation, removed))) => {
                    page.preview = Some(Counts::new(label, &installation, &removed));
                    Ok(layout::render(StatusCode::OK, &page))
                }
                Ok(None) => Ok(page.refuse(StatusCode::NOT_FOUND, unknown)),
                Err(err) => {
                    let (status, message) = store_failure(&err);
                    Ok(page.refuse(status, message))
                }
            }
        }
        Some("erase") => {
            if form.confirm.as_deref() != Some("yes") {
                let message = format!(
                    "Tick the confirmation box to erase {label}; nothing was changed. \
                     Preview again to see what would be removed."
                );
                return Ok(page.refuse(StatusCode::UNPROCESSABLE_ENTITY, message));
            }
            let erased_by = user.name.clone();
            let outcome = state
                .db
                .run(move |conn| lifecycle::erase_installation(conn, &key, &subject, &erased_by))
                .await;
            match outcome {
                Ok(Outcome::Erased {
                    installation,
                    removed,
                    erasure_id,
                }) => {
                    let mut done = Counts::new(label, &installation, &removed);
                    done.erasure_id = erasure_id;
                    // The erasure id and the counts only: the identifier is never logged.
                    tracing::info!(
                        erasure_id,
                        erased_by = %user.name,
                        rows = done.total,
                        "installation erased from the console"
                    );
                    page.done = Some(done);
                    Ok(layout::render(StatusCode::OK, &page))
                }
                Ok(Outcome::Unknown) => Ok(page.refuse(StatusCode::NOT_FOUND, unknown)),
                Err(err) => {
                    let (status, message) = store_failure(&err);
                    Ok(page.refuse(status, message))
                }
            }
        }
        _ => Ok(page.refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Press Preview first; nothing was changed.".into(),
        )),
    }
}
