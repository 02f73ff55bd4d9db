//! The console shell: the base template's data (who is logged in, the navigation), page
//! rendering with the console's headers, the stylesheet served from the binary, and the
//! plain message page used for errors.

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::middleware::DefaultHeaders;
use actix_web::HttpResponse;
use askama::Template;

use crate::console::role::{ConsoleUser, Role};

/// The Content-Security-Policy of every console response: nothing from elsewhere, no inline
/// script or style, no framing. Scripts and styles may come only from the console itself.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The console stylesheet, compiled into the binary (no external assets).
pub const CONSOLE_CSS: &str = include_str!("../../assets/console/console.css");

/// Security headers for console routes (added when the handler has not set them).
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CONSOLE_CSP))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "same-origin"))
}

/// Which part of the console a page belongs to (its navigation entry is marked current).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `/console`
    Home,
    /// `/console/insights…`
    Insights,
    /// `/console/releases…`
    Releases,
    /// `/console/releases/history…`
    History,
    /// `/console/accounts`
    Accounts,
    /// `/console/erase`
    Erase,
    /// Pages outside the navigation (login, errors).
    None,
}

/// One navigation link.
#[derive(Debug, Clone)]
pub struct NavItem {
    /// Target path.
    pub href: &'static str,
    /// Visible text.
    pub label: &'static str,
    /// True on the page's own section (`aria-current="page"`).
    pub current: bool,
}

/// The logged-in user as the shell shows them.
#[derive(Debug, Clone)]
pub struct ShellUser {
    /// Account name.
    pub name: String,
    /// Role as shown to people.
    pub role_label: &'static str,
    /// The session's CSRF token (the logout form carries it).
    pub csrf_token: String,
}

/// What the base template (`console/base.html`) needs: every console page struct has a
/// `shell: Shell` field.
#[derive(Debug, Clone)]
pub struct Shell {
    /// The user, when logged in (no navigation otherwise).
    pub user: Option<ShellUser>,
    /// The navigation, filtered by role.
    pub nav: Vec<NavItem>,
}

impl Shell {
    /// The shell for a logged-in user on a page of `section`.
    pub fn for_user(user: &ConsoleUser, section: Section) -> Shell {
        let mut nav = vec![
            NavItem {
                href: "/console/insights",
                label: "Insights",
                current: section == Section::Insights,
            },
            NavItem {
                href: "/console/releases",
                label: "Releases",
                current: section == Section::Releases,
            },
            NavItem {
                href: "/console/releases/history",
                label: "History",
                current: section == Section::History,
            },
        ];
        if user.role >= Role::Admin {
            nav.push(NavItem {
                href: "/console/accounts",
                label: "Accounts",
                current: section == Section::Accounts,
            });
            nav.push(NavItem {
                href: "/console/erase",
                label: "Erase",
                current: section == Section::Erase,
            });
        }
        Shell {
            user: Some(ShellUser {
                name: user.name.clone(),
                role_label: user.role.label(),
                csrf_token: user.csrf_token.clone(),
            }),
            nav,
        }
    }

    /// The shell of pages seen without a session (login, errors).
    pub fn anonymous() -> Shell {
        Shell {
            user: None,
            nav: Vec::new(),
        }
    }
}

/// Renders a console page: HTML, never cached (pages show data behind a login).
pub fn render(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .content_type(ContentType::html())
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(body),
        Err(err) => {
            tracing::error!(error.cause = %err, "console template failed");
            HttpResponse::InternalServerError()
                .content_type(ContentType::plaintext())
                .body("internal error")
        }
    }
}

/// A page with a title and one message (errors, refusals).
#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage<'a> {
    shell: Shell,
    title: &'a str,
    message: &'a str,
}

/// Renders the message page with a status.
pub fn message_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    render(
        status,
        &MessagePage {
            shell: Shell::anonymous(),
            title,
            message,
        },
    )
}

/// `GET /console/static/console.css`
pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(CONSOLE_CSS)
}
