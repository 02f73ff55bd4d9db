//! Service Ping: `POST /usage_data` (JSON from GitLab, or the upload form's multipart),
//! `GET /usage_data/new` (the upload form), `POST /usage_ping_errors` and
//! `POST /usage_ping_metadata` (protocol.md §2).

use actix_multipart::Multipart;
use actix_web::http::header::{self, ContentType};
use actix_web::http::ConnectionType;
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use askama::Template;
use chrono::Utc;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use crate::db::models::usage_data::{StoredSubmission, SubmissionSource};
use crate::db::models::usage_ping::{
    self, MetadataMetric, NewUsagePingError, NewUsagePingMetadata,
};
use crate::domain::payload::{PayloadError, PayloadSummary};
use crate::error::{ApiError, RETRY_AFTER_SECS};
use crate::ingest::{decode_reason, new_submission, DecodeError};
use crate::routes::body::{BodyError, BodyFailure, BodyTicket};
use crate::routes::client::client_country;
use crate::state::AppState;

/// Largest `/usage_ping_errors` or `/usage_ping_metadata` body; real ones are a few KB
/// (metadata lists one timing per metric: ~4,200 × ~80 bytes).
const REPORT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Registers the Service Ping routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use crate::routes::fallback::not_allowed;
    cfg.service(
        web::resource("/usage_data")
            .route(web::post().to(receive))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/usage_data/new")
            .route(web::get().to(new_form))
            .route(web::head().to(new_form))
            .default_service(not_allowed("GET, HEAD")),
    )
    .service(
        web::resource("/usage_ping_errors")
            .route(web::post().to(receive_error))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/usage_ping_metadata")
            .route(web::post().to(receive_metadata))
            .default_service(not_allowed("POST")),
    );
}

/// `POST /usage_data`: a JSON payload from GitLab, or a file from the upload form; the two
/// are told apart by Content-Type and stored the same way.
pub async fn receive(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let mime = match req.mime_type() {
        Ok(mime) => mime,
        Err(_) => {
            return error_response(ApiError::UnsupportedMediaType(
                "the Content-Type header cannot be read".into(),
            ))
        }
    };
    match mime {
        Some(m) if m.type_() == "multipart" && m.subtype() == "form-data" => {
            let mut reason = None;
            let response = upload(req, body, state.clone(), &mut reason).await;
            count_upload(&state, response.status(), reason);
            response
        }
        // GitLab always sends application/json; a missing header is read as JSON too.
        Some(m) if m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json") => {
            receive_json_counted(req, body, state).await
        }
        None => receive_json_counted(req, body, state).await,
        Some(other) => error_response(ApiError::UnsupportedMediaType(format!(
            "Content-Type `{other}` is not accepted: send application/json (or \
             multipart/form-data from the upload form)"
        ))),
    }
}

fn error_response(err: ApiError) -> HttpResponse {
    actix_web::ResponseError::error_response(&err)
}

/// The sender's country, when GeoIP is configured (behind a trusted proxy too, like the
/// version check); the address itself is never kept.
fn country(req: &HttpRequest, state: &AppState) -> Option<String> {
    client_country(req, state).map(|code| code.as_str().to_owned())
}

async fn receive_json_counted(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let counted = state.clone();
    let mut reason = None;
    receive_json(req, body, state, &mut reason)
        .await
        .unwrap_or_else(|err| {
            count_refusal(&counted, &err, reason);
            let metrics = &counted.ingest.metrics;
            metrics.count_refused(SubmissionSource::Automatic, &err, reason);
            error_response(err)
        })
}

/// Counts an upload that was not stored, by the status its form page got.
fn count_upload(state: &AppState, status: StatusCode, reason: Option<&'static str>) {
    let err = match status {
        StatusCode::CREATED => return, // counted as stored or duplicate
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(String::new()),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(None),
        status if status.is_server_error() => ApiError::Internal(String::new()),
        _ => ApiError::BadRequest(String::new()),
    };
    let metrics = &state.ingest.metrics;
    metrics.count_refused(SubmissionSource::Manual, &err, reason);
}

async fn receive_json(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    reason: &mut Option<&'static str>,
) -> Result<HttpResponse, ApiError> {
    let settings = &state.settings;
    let limit = settings.ingest.max_body_bytes;
    if declared_length(&req).is_some_and(|len| len > limit) {
        return Err(too_large(limit));
    }
    let gzip = match req
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => false,
        Some("gzip") | Some("x-gzip") => true,
        Some(other) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Encoding `{other}` is not accepted: send plain or gzip-encoded JSON"
            )))
        }
    };
    // The body first, under its deadline and the byte budget, then admission: a slow or
    // stalled sender holds only the bytes it has sent, never an admission slot (issue 8).
    let mut read = state.body.read(body, limit, true).await.map_err(|err| {
        if matches!(err, BodyError::Cut(BodyFailure::Busy, _)) {
            *reason = Some("body_budget");
        }
        body_error(err, limit)
    })?;
    // Moved out, not cloned: the only reference lets the decoder take the buffer over
    // instead of copying a body of up to `ingest_max_body_bytes`; `read` keeps holding the
    // body's share of the in-flight budget until the answer.
    let bytes = std::mem::take(&mut read.bytes);
    let _permit = state
        .ingest
        .admit()
        .await
        .inspect_err(|_| *reason = Some("saturated"))?;
    let body_len = bytes.len();
    let decoded = web::block(state.ingest.decoder(bytes, gzip))
        .await
        .map_err(|e| ApiError::Internal(format!("decode task failed: {e}")))?;
    let decoded = decoded.inspect_err(|err| {
        *reason = Some(decode_reason(err));
        state.ingest.metrics.count_bytes(body_len, 0, 0);
    })?;
    let metrics = &state.ingest.metrics;
    metrics.count_bytes(body_len, decoded.raw.original_len, decoded.raw.bytes.len());
    let summary = decoded.parsed.summary.clone();
    let stored = state
        .ingest
        .submit(new_submission(
            decoded,
            SubmissionSource::Automatic,
            country(&req, &state),
        ))
        .await?;
    log_stored(&state, &summary, &stored, SubmissionSource::Automatic);
    Ok(HttpResponse::Created().json(json!({ "conv_index": stored.conv_index() })))
}

fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn body_error(err: BodyError, limit: usize) -> ApiError {
    match err {
        BodyError::TooLarge => too_large(limit),
        other => other.into(),
    }
}

/// Counts a Service Ping refused with 503 under its cause (the reason the handler noted).
fn count_refusal(state: &AppState, err: &ApiError, reason: Option<&str>) {
    let cause = match (err, reason) {
        (ApiError::Busy(_), Some("saturated")) => "admission_full",
        (ApiError::Busy(_), _) => "body_budget",
        (ApiError::Unavailable(_), _) => "store_unavailable",
        _ => return,
    };
    state.body.ingest_refused.with_label_values(&[cause]).inc();
}

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!("the body exceeds {limit} bytes"))
}

fn log_stored(
    state: &AppState,
    summary: &PayloadSummary,
    stored: &StoredSubmission,
    source: SubmissionSource,
) {
    state.ingest.metrics.count_stored(source, stored.duplicate);
    tracing::info!(
        usage_data.id = stored.usage_data_id,
        usage_data.duplicate = stored.duplicate,
        usage_data.metrics = stored.metrics_count,
        usage_data.source = source.as_str(),
        instance.version = summary.version.as_ref().map(|v| v.normalized.as_str()),
        "service ping stored"
    );
}

/// The upload form.
#[derive(Template)]
#[template(path = "usage_data_new.html")]
struct UploadForm<'a> {
    /// What went wrong with the last upload, if anything.
    error: Option<&'a str>,
    /// Largest accepted file, for the help text.
    max_mb: String,
}

/// The page shown after a successful upload.
#[derive(Template)]
#[template(path = "usage_data_result.html")]
struct UploadResult<'a> {
    hostname: &'a str,
    version: &'a str,
    recorded_at: String,
    metrics: i64,
    usage_data_id: i64,
    duplicate: bool,
}

fn html(status: StatusCode, page: Result<String, askama::Error>) -> HttpResponse {
    match page {
        Ok(body) => HttpResponse::build(status)
            .content_type(ContentType::html())
            .body(body),
        Err(err) => error_response(ApiError::Internal(format!("template failed: {err}"))),
    }
}

fn max_mb(state: &AppState) -> String {
    let mb = state.settings.ingest.max_body_bytes as f64 / (1024.0 * 1024.0);
    format!("{mb:.0}")
}

fn form_error(state: &AppState, status: StatusCode, message: &str) -> HttpResponse {
    let mut response = html(
        status,
        UploadForm {
            error: Some(message),
            max_mb: max_mb(state),
        }
        .render(),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from(RETRY_AFTER_SECS),
        );
    }
    response
}

/// `GET /usage_data/new`: the upload form for instances without internet access.
pub async fn new_form(state: web::Data<AppState>) -> HttpResponse {
    html(
        StatusCode::OK,
        UploadForm {
            error: None,
            max_mb: max_mb(&state),
        }
        .render(),
    )
}

/// The words shown to an admin for a file that is not a usable payload.
fn upload_message(err: &DecodeError) -> String {
    match err {
        DecodeError::Payload(PayloadError::Empty) => "The file is empty.".into(),
        DecodeError::Payload(e @ PayloadError::InvalidJson { .. }) => {
            format!("The file is not JSON ({e}).")
        }
        DecodeError::Payload(e @ PayloadError::TooDeep { .. }) => {
            format!("The file is not a Service Ping payload: {e}.")
        }
        DecodeError::Payload(e) => format!("The file is not a Service Ping payload: {e}."),
        other => format!("The file could not be read: {other}."),
    }
}

async fn upload(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    reason: &mut Option<&'static str>,
) -> HttpResponse {
    let limit = state.settings.ingest.max_body_bytes;
    let too_large = format!("The file is too large: the limit is {} MB.", max_mb(&state));
    // The multipart envelope adds a few hundred bytes around the file.
    if declared_length(&req).is_some_and(|len| len > limit + 64 * 1024) {
        return form_error(&state, StatusCode::PAYLOAD_TOO_LARGE, &too_large);
    }
    // Under the body deadline and budget, before admission (issue 8): an upload whose
    // closing boundary never comes is cut off instead of holding a slot.
    let (timed, ticket) = state.body.wrap(body, true);
    let cut = |ticket: &BodyTicket| {
        let failure = ticket.failure()?;
        let (status, message) = match failure {
            BodyFailure::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is busy; please upload the file again in a minute.".to_string(),
            ),
            other => (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "The upload stopped arriving ({}).",
                    other.message(&state.body.limits)
                ),
            ),
        };
        let mut response = form_error(&state, status, &message);
        response
            .head_mut()
            .set_connection_type(ConnectionType::Close);
        Some(response)
    };
    let mut multipart = Multipart::new(req.headers(), timed);
    let mut file = None;
    while let Some(field) = multipart.next().await {
        let mut field = match field {
            Ok(field) => field,
            Err(err) => {
                if let Some(response) = cut(&ticket) {
                    return response;
                }
                return form_error(
                    &state,
                    StatusCode::BAD_REQUEST,
                    &format!("The upload could not be read: {err}."),
                );
            }
        };
        if field.name() != Some("file") {
            continue;
        }
        match field.bytes(limit).await {
            Ok(Ok(bytes)) => file = Some(bytes),
            Ok(Err(err)) => {
                if let Some(response) = cut(&ticket) {
                    return response;
                }
                return form_error(
                    &state,
                    StatusCode::BAD_REQUEST,
                    &format!("The upload could not be read: {err}."),
                );
            }
            Err(_) => return form_error(&state, StatusCode::PAYLOAD_TOO_LARGE, &too_large),
        }
    }
    let Some(bytes) = file else {
        return form_error(
            &state,
            StatusCode::BAD_REQUEST,
            "Choose a payload file before pressing Upload.",
        );
    };
    drop(multipart);
    let _permit = match state.ingest.admit().await {
        Ok(permit) => permit,
        Err(_) => {
            *reason = Some("saturated");
            return form_error(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is busy; please upload the file again in a minute.",
            );
        }
    };
    let body_len = bytes.len();
    let decoded = web::block(state.ingest.decoder(bytes, false)).await;
    let decoded = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(err)) => {
            *reason = Some(decode_reason(&err));
            state.ingest.metrics.count_bytes(body_len, 0, 0);
            let status = match err {
                DecodeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            return form_error(&state, status, &upload_message(&err));
        }
        Err(err) => return error_response(ApiError::Internal(format!("decode failed: {err}"))),
    };
    let metrics = &state.ingest.metrics;
    metrics.count_bytes(body_len, decoded.raw.original_len, decoded.raw.bytes.len());
    let summary = decoded.parsed.summary.clone();
    let submission = new_submission(decoded, SubmissionSource::Manual, country(&req, &state));
    match state.ingest.submit(submission).await {
        Ok(stored) => {
            log_stored(&state, &summary, &stored, SubmissionSource::Manual);
            html(
                StatusCode::CREATED,
                UploadResult {
                    hostname: summary
                        .hostname
                        .as_deref()
                        .unwrap_or("(not in the payload)"),
                    version: summary
                        .version
                        .as_ref()
                        .map_or("(not in the payload)", |v| v.raw.as_str()),
                    recorded_at: summary.recorded_at.to_rfc3339(),
                    metrics: stored.metrics_count,
                    usage_data_id: stored.usage_data_id,
                    duplicate: stored.duplicate,
                }
                .render(),
            )
        }
        Err(ApiError::Unavailable(_)) => form_error(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            "The store is unavailable; nothing was saved. Please upload the file again later.",
        ),
        Err(err) => error_response(err),
    }
}

/// Reads a small JSON object body for the report routes, naming what is wrong.
async fn read_report(
    state: &AppState,
    body: web::Payload,
    wrapper: &str,
) -> Result<(String, Map<String, Value>), ApiError> {
    let bytes = state
        .body
        .read(body, REPORT_MAX_BODY_BYTES, true)
        .await
        .map_err(|err| body_error(err, REPORT_MAX_BODY_BYTES))?
        .bytes;
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::BadRequest("the body is not UTF-8 text".into()))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut top) = value else {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    };
    match top.remove(wrapper) {
        Some(Value::Object(inner)) => Ok((text, inner)),
        Some(_) => Err(ApiError::BadRequest(format!(
            "`{wrapper}` must be an object"
        ))),
        None => Err(ApiError::BadRequest(format!(
            "missing required field `{wrapper}`"
        ))),
    }
}

/// An optional field that must be a string (or a number, kept as text) when present.
fn text_field(object: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(ApiError::BadRequest(format!("`{field}` must be a string"))),
    }
}

fn number_field(object: &Map<String, Value>, field: &str) -> Result<Option<f64>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(ApiError::BadRequest(format!("`{field}` must be a number"))),
    }
}

/// `POST /usage_ping_errors`: `{"error":{time, uuid, unique_instance_id?, hostname, version,
/// message, elapsed}}`.
pub async fn receive_error(
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let result = store_error_report(body, &state).await;
    let metrics = &state.ingest.metrics;
    metrics.count_report("errors", result.as_ref().map(|_| ()));
    result
}

async fn store_error_report(
    body: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let (text, error) = read_report(state, body, "error").await?;
    let new = NewUsagePingError {
        uuid: text_field(&error, "uuid")?,
        unique_instance_id: text_field(&error, "unique_instance_id")?,
        hostname: text_field(&error, "hostname")?,
        version: text_field(&error, "version")?,
        message: text_field(&error, "message")?,
        elapsed: number_field(&error, "elapsed")?,
        error_time: text_field(&error, "time")?,
        received_at: Utc::now().naive_utc(),
        body: text,
    };
    // One rule for both stores (issue 8, #4): see domain::input_rules.
    (|| {
        use crate::domain::input_rules::{hostname, no_nul_opt};
        no_nul_opt("error.uuid", new.uuid.as_deref())?;
        no_nul_opt(
            "error.unique_instance_id",
            new.unique_instance_id.as_deref(),
        )?;
        hostname("error.hostname", new.hostname.as_deref())?;
        no_nul_opt("error.version", new.version.as_deref())?;
        no_nul_opt("error.message", new.message.as_deref())?;
        no_nul_opt("error.time", new.error_time.as_deref())
    })()
    .map_err(ApiError::BadRequest)?;
    let id = state
        .db
        .run(move |conn| usage_ping::insert_error(conn, &new))
        .await?;
    tracing::info!(
        usage_ping_error.id = id,
        "service ping failure report stored"
    );
    Ok(HttpResponse::Created().json(json!({ "id": id })))
}

/// `POST /usage_ping_metadata`: `{"metadata":{uuid?, unique_instance_id?, metrics:[{name,
/// time_elapsed, error?}]}}`; very old clients send only `metrics`.
pub async fn receive_metadata(
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let result = store_metadata_report(body, &state).await;
    let metrics = &state.ingest.metrics;
    metrics.count_report("metadata", result.as_ref().map(|_| ()));
    result
}

async fn store_metadata_report(
    body: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let (text, metadata) = read_report(state, body, "metadata").await?;
    let entries = match metadata.get("metrics") {
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`metadata.metrics` must be an array".into(),
            ))
        }
        None => {
            return Err(ApiError::BadRequest(
                "missing required field `metadata.metrics`".into(),
            ))
        }
    };
    let mut metrics = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let Value::Object(entry) = entry else {
            return Err(ApiError::BadRequest(format!(
                "`metadata.metrics[{i}]` must be an object"
            )));
        };
        let name = text_field(entry, "name")?.ok_or_else(|| {
            ApiError::BadRequest(format!(
                "missing required field `metadata.metrics[{i}].name`"
            ))
        })?;
        metrics.push(MetadataMetric {
            name,
            time_elapsed: number_field(entry, "time_elapsed")?,
            error: text_field(entry, "error")?,
        });
    }
    let new = NewUsagePingMetadata {
        uuid: text_field(&metadata, "uuid")?,
        unique_instance_id: text_field(&metadata, "unique_instance_id")?,
        received_at: Utc::now().naive_utc(),
        body: text,
        metrics,
    };
    (|| {
        use crate::domain::input_rules::{no_nul, no_nul_opt};
        no_nul_opt("metadata.uuid", new.uuid.as_deref())?;
        no_nul_opt(
            "metadata.unique_instance_id",
            new.unique_instance_id.as_deref(),
        )?;
        for (i, metric) in new.metrics.iter().enumerate() {
            no_nul(&format!("metadata.metrics[{i}].name"), &metric.name)?;
            no_nul_opt(
                &format!("metadata.metrics[{i}].error"),
                metric.error.as_deref(),
            )?;
        }
        Ok::<(), String>(())
    })()
    .map_err(ApiError::BadRequest)?;
    let id = state
        .db
        .run(move |conn| usage_ping::insert_metadata(conn, &new))
        .await?;
    tracing::info!(usage_ping_metadata.id = id, "service ping metadata stored");
    Ok(HttpResponse::Created().json(json!({ "id": id })))
}
