//! THE route table: every path the application answers, in one place.

pub mod check;
pub mod client;
pub mod health;
pub mod insights;
pub mod metrics;
pub mod usage_data;
pub mod versions;

use actix_web::web;

/// Registers the version-check routes: GET /check.svg, /check.png, /check@2x.png and
/// /check.json. Served outside the request-logging middleware: they are most of the traffic,
/// a span and a random request id each cost more than the check itself, and they are counted
/// in `/metrics` instead.
pub fn configure_hot(cfg: &mut web::ServiceConfig) {
    cfg.configure(check::routes);
}

/// Registers every other route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(usage_data::routes);
    // The console: /login, /logout, /console/… (HTML for people, behind a login).
    cfg.configure(crate::console::routes);
    cfg.route("/metrics", web::get().to(metrics::metrics))
        .route("/-/health", web::get().to(health::health))
        .route("/-/ready", web::get().to(health::ready))
        .service(
            web::scope("/api/v1")
                .route("/versions", web::get().to(versions::list))
                .route("/versions", web::post().to(versions::create))
                // add_to_version_server.sh posts to the path with a trailing slash
                .route("/versions/", web::post().to(versions::create))
                .route(
                    "/versions/{version}",
                    web::patch().to(versions::set_security),
                )
                .configure(insights::routes),
        );
}
