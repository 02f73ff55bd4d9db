//! `GET /metrics`: Prometheus text exposition of the application's metrics.

use actix_web::{web, HttpResponse};

use crate::state::AppState;

/// Every metric in the Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // The buffer changes on every check; reading it at scrape time keeps the check path
    // free of shared counters (the shards count under the locks they already take).
    let buffer = state.recorder.buffer();
    let metrics = &state.metrics;
    metrics.check_buffer_keys.set(buffer.len() as i64);
    metrics
        .check_unflushed
        .set(i64::try_from(buffer.unflushed()).unwrap_or(i64::MAX));
    // A counter only goes up: add what was recorded since the last scrape.
    let recorded = buffer.recorded();
    let shown = metrics.check_records_buffered.get();
    if recorded > shown {
        metrics.check_records_buffered.inc_by(recorded - shown);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
