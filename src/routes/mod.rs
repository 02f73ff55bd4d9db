//! THE route table: every path the application answers, in one place.

pub mod body;
pub mod check;
pub mod client;
pub mod fallback;
pub mod health;
pub mod insights;
pub mod metrics;
pub mod release_admin;
pub mod security_headers;
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
    use fallback::not_allowed;
    cfg.configure(fallback::extractor_configs);
    cfg.configure(usage_data::routes);
    // The console: /login, /logout, /console/… (HTML for people, behind a login).
    cfg.configure(crate::console::routes);
    cfg.service(get_resource("/metrics", metrics::metrics))
        .service(get_resource("/-/health", health::health))
        .service(get_resource("/-/ready", health::ready))
        .service(
            web::scope("/api/v1")
                .service(
                    web::resource("/versions")
                        .route(web::get().to(versions::list))
                        .route(web::post().to(versions::create))
                        .default_service(not_allowed("GET, POST")),
                )
                // add_to_version_server.sh posts to the path with a trailing slash
                .service(
                    web::resource("/versions/")
                        .route(web::post().to(versions::create))
                        .default_service(not_allowed("POST")),
                )
                .service(
                    web::resource("/versions/{version}")
                        .route(web::patch().to(versions::set_security))
                        .default_service(not_allowed("PATCH")),
                )
                // the release table's audit trail and security batches
                .service(
                    web::resource("/versions/{version}/history")
                        .route(web::get().to(release_admin::version_history))
                        .default_service(not_allowed("GET")),
                )
                .service(
                    web::resource("/releases/history")
                        .route(web::get().to(release_admin::all_history))
                        .default_service(not_allowed("GET")),
                )
                .service(
                    web::resource("/security_releases")
                        .route(web::post().to(release_admin::security_releases))
                        .default_service(not_allowed("POST")),
                )
                .configure(insights::routes)
                // A nested scope does not inherit its parent's default.
                .default_service(web::to(fallback::not_found)),
        );
}

/// A resource answering GET and HEAD, 405 for anything else.
fn get_resource<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(fallback::not_allowed("GET, HEAD"))
}
