//! Liveness and readiness for orchestrators.

use actix_web::{web, HttpResponse};
use serde_json::json;
use std::time::Duration;

use crate::state::AppState;

/// How long readiness waits for the store before saying "not ready".
const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /-/health`: the process is up and serving. Never touches the store, so a store
/// outage does not get a healthy process restarted.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /-/ready`: the store answers a query, so the instance can take traffic.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let db = state.db.clone();
    let probe = tokio::time::timeout(READY_TIMEOUT, web::block(move || db.ping())).await;
    match probe {
        Ok(Ok(Ok(()))) => HttpResponse::Ok().json(json!({"status": "ready", "store": "ok"})),
        outcome => {
            let reason = match outcome {
                Err(_) => "the store did not answer in time".to_string(),
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(Err(e))) => e.to_string(),
                Ok(Ok(Ok(()))) => unreachable!(),
            };
            tracing::warn!(error.cause = %reason, "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .json(json!({"status": "unavailable", "store": "unreachable"}))
        }
    }
}
