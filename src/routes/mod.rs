//! THE route table: every path the application answers, in one place.

pub mod health;
pub mod usage_data;
pub mod versions;

use actix_web::web;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(usage_data::routes);
    cfg.route("/-/health", web::get().to(health::health))
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
                ),
        );
}
