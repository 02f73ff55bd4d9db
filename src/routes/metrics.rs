//! `GET /metrics`: Prometheus text exposition of the application's metrics.

use actix_web::{web, HttpResponse};

use crate::state::AppState;

/// Every metric in the Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // The buffer changes on every check; reading it at scrape time is exact and free.
    state
        .metrics
        .check_buffer_keys
        .set(state.recorder.buffer().len() as i64);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
