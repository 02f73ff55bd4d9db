//! The console: HTML pages for people (analysts, release managers, administrators) behind a
//! login, in a room of its own.
//!
//! - [`auth`]: the [`auth::ConsoleUser`] extractor for pages, [`auth::ApiAccess`] for APIs
//!   (session role or token scope), [`auth::Role`].
//! - [`session`]: server-side sessions behind an `HttpOnly` cookie; [`login`]: the forms.
//! - [`throttle`]: failed logins counted in memory per client address and account.
//! - [`layout`]: the shell (base template, navigation, stylesheet, security headers).
//! - [`accounts`]: `version-app user …`.
//! - [`erase`]: administrators erase one installation (preview, then confirm).
//!
//! Templates live in `assets/templates/console/`; every page template extends
//! `console/base.html` and its struct has a `shell: layout::Shell` field.

pub mod accounts;
pub mod api;
pub mod auth;
pub mod charts;
pub mod erase;
pub mod insights;
pub mod layout;
pub mod login;
pub mod pages;
pub mod password;
mod release_add;
pub mod releases;
pub mod role;
pub mod session;
pub mod throttle;

use actix_web::web;
use prometheus::{IntCounter, IntCounterVec, Opts};

use crate::config::Settings;
use crate::metrics::Metrics;

/// What the console keeps per process: the login throttle and its metrics.
pub struct ConsoleState {
    /// Failed-login bookkeeping (in memory only).
    pub throttle: throttle::LoginThrottle,
    /// `version_app_console_logins_total{outcome}`.
    pub logins: IntCounterVec,
    /// `version_app_console_login_lockouts_total`.
    pub lockouts: IntCounter,
}

impl ConsoleState {
    /// Builds the throttle from the settings and registers the console's metrics.
    pub fn new(settings: &Settings, metrics: &Metrics) -> ConsoleState {
        let logins = IntCounterVec::new(
            Opts::new(
                "version_app_console_logins_total",
                "Console login attempts by outcome (success, failure, throttled)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let lockouts = IntCounter::new(
            "version_app_console_login_lockouts_total",
            "Times a client address or account name was locked out after repeated failed logins",
        )
        .expect("valid metric");
        for outcome in ["success", "failure", "throttled"] {
            logins.with_label_values(&[outcome]);
        }
        let registry = metrics.registry();
        registry
            .register(Box::new(logins.clone()))
            .expect("metric names are unique");
        registry
            .register(Box::new(lockouts.clone()))
            .expect("metric names are unique");
        ConsoleState {
            throttle: throttle::LoginThrottle::new(
                settings.console.login_max_failures.get(),
                settings.console.login_lockout,
            ),
            logins,
            lockouts,
        }
    }

    /// Counts one login attempt.
    pub fn count_login(&self, outcome: &str) {
        self.logins.with_label_values(&[outcome]).inc();
    }
}

/// Registers the console: `/login`, `/logout` and everything under `/console`, all with the
/// console's security headers (strict CSP).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/login")
            .wrap(layout::security_headers())
            .route(web::get().to(login::form))
            .route(web::post().to(login::submit)),
    )
    .service(
        web::resource("/logout")
            .wrap(layout::security_headers())
            .route(web::post().to(login::logout)),
    )
    .route("/api/v1/whoami", web::get().to(api::whoami))
    .service(
        web::scope("/console")
            .wrap(layout::security_headers())
            .route("", web::get().to(pages::home))
            .route("/", web::get().to(pages::home))
            .route("/static/console.css", web::get().to(layout::stylesheet))
            // Sections add their pages here, e.g. `.configure(crate::console::insights::routes)`;
            // their handlers take a `ConsoleUser` and call `require(Role::…)`.
            .route("/accounts", web::get().to(pages::accounts))
            // Before the release pages: `/releases/new` is not a `/releases/{version}`.
            .configure(release_add::routes)
            .configure(releases::routes)
            .configure(insights::routes)
            .configure(erase::routes),
    );
}
