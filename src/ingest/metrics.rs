//! Service Ping ingest in `/metrics`: what arrived, what became of it, and how hard the
//! writer works. Registered on the application's registry by [`IngestMetrics::new`].

use prometheus::{
    Counter, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use super::DecodeError;
use crate::db::models::usage_data::SubmissionSource;
use crate::domain::payload::PayloadError;
use crate::error::ApiError;

/// The ingest metrics (one set per application).
pub struct IngestMetrics {
    submissions: IntCounterVec,
    body_bytes: IntCounter,
    json_bytes: IntCounter,
    stored_raw_bytes: IntCounter,
    /// Payloads per committed group.
    pub group_size: Histogram,
    /// Seconds from BEGIN to COMMIT of one group.
    pub commit_seconds: Histogram,
    /// Payloads waiting for a writer.
    pub queue_depth: IntGauge,
    /// Seconds writers spent storing groups (scoring, transaction, verdicts).
    pub writer_busy_seconds: Counter,
    /// Submissions whose values are staged, not merged into blocks yet.
    pub values_staged: IntGauge,
    /// Submissions merged into blocks.
    pub values_merged: IntCounter,
    reports: IntCounterVec,
}

/// Why a submission was refused, for the `reason` label.
pub(crate) fn decode_reason(err: &DecodeError) -> &'static str {
    match err {
        DecodeError::TooLarge(_) => "too_large",
        DecodeError::BadGzip(_) => "bad_gzip",
        DecodeError::Invalid(_) => "invalid_field",
        DecodeError::Payload(payload) => match payload {
            PayloadError::Empty => "empty",
            PayloadError::InvalidJson { .. } => "invalid_json",
            PayloadError::TooDeep { .. } => "too_deep",
            PayloadError::NotAnObject { .. } => "not_an_object",
            PayloadError::TooManyMetrics { .. } => "too_many_metrics",
            PayloadError::MissingField { .. }
            | PayloadError::EmptyField { .. }
            | PayloadError::WrongType { .. }
            | PayloadError::TooLong { .. }
            | PayloadError::BadTimestamp { .. } => "invalid_field",
        },
    }
}

impl IngestMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn new(registry: &Registry) -> IngestMetrics {
        let submissions = IntCounterVec::new(
            Opts::new(
                "version_app_ingest_submissions_total",
                "Service Ping submissions by source (automatic, manual), outcome (stored, \
                 duplicate, rejected, unavailable = 503, error = 500) and reason",
            ),
            &["source", "outcome", "reason"],
        )
        .expect("valid metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let body_bytes = counter(
            "version_app_ingest_body_bytes_total",
            "Bytes of Service Ping bodies read, as sent (gzip-encoded when the client used gzip)",
        );
        let json_bytes = counter(
            "version_app_ingest_json_bytes_total",
            "Bytes of Service Ping JSON after gzip decoding, of payloads that parsed",
        );
        let stored_raw_bytes = counter(
            "version_app_ingest_raw_stored_bytes_total",
            "Bytes of those payloads after zstd compression, as handed to the store",
        );
        let group_size = Histogram::with_opts(
            HistogramOpts::new(
                "version_app_ingest_group_size",
                "Payloads written per group commit",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
        )
        .expect("valid metric");
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "version_app_ingest_commit_seconds",
                "Time from the start of a group's transaction to its durable commit",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("valid metric");
        let queue_depth = IntGauge::new(
            "version_app_ingest_queue_depth",
            "Parsed payloads waiting for an ingest writer",
        )
        .expect("valid metric");
        let writer_busy_seconds = Counter::new(
            "version_app_ingest_writer_busy_seconds_total",
            "Seconds ingest writers spent storing groups (divide its rate by the writer count \
             for utilisation)",
        )
        .expect("valid metric");
        let values_staged = IntGauge::new(
            "version_app_metric_values_staged",
            "Stored submissions whose metric values are staged, not merged into blocks yet \
             (at the end of the last merge run)",
        )
        .expect("valid metric");
        let values_merged = counter(
            "version_app_metric_values_merged_total",
            "Submissions whose metric values the merge job moved into blocks",
        );
        let reports = IntCounterVec::new(
            Opts::new(
                "version_app_usage_ping_reports_total",
                "Service Ping side reports received, by kind (errors, metadata) and outcome \
                 (stored, rejected, unavailable, error)",
            ),
            &["kind", "outcome"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(submissions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(body_bytes.clone()),
            Box::new(json_bytes.clone()),
            Box::new(stored_raw_bytes.clone()),
            Box::new(group_size.clone()),
            Box::new(commit_seconds.clone()),
            Box::new(queue_depth.clone()),
            Box::new(writer_busy_seconds.clone()),
            Box::new(values_staged.clone()),
            Box::new(values_merged.clone()),
            Box::new(reports.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        IngestMetrics {
            submissions,
            body_bytes,
            json_bytes,
            stored_raw_bytes,
            group_size,
            commit_seconds,
            queue_depth,
            writer_busy_seconds,
            values_staged,
            values_merged,
            reports,
        }
    }

    /// Counts one answered submission.
    pub fn count(&self, source: SubmissionSource, outcome: &str, reason: &str) {
        self.submissions
            .with_label_values(&[source.as_str(), outcome, reason])
            .inc();
    }

    /// Counts a stored submission or a recognised re-delivery.
    pub fn count_stored(&self, source: SubmissionSource, duplicate: bool) {
        let outcome = if duplicate { "duplicate" } else { "stored" };
        self.count(source, outcome, "none");
    }

    /// Counts a refused submission; `reason` when the route knew it better than the error.
    pub fn count_refused(&self, source: SubmissionSource, err: &ApiError, reason: Option<&str>) {
        let (outcome, default) = outcome_of(err);
        self.count(source, outcome, reason.unwrap_or(default));
    }

    /// Counts the bytes of one body: as read, after gzip, after zstd (0 for a body that did
    /// not parse).
    pub fn count_bytes(&self, body: usize, json: usize, stored: usize) {
        self.body_bytes.inc_by(body as u64);
        self.json_bytes.inc_by(json as u64);
        self.stored_raw_bytes.inc_by(stored as u64);
    }

    /// Counts one `/usage_ping_errors` (`kind = "errors"`) or `/usage_ping_metadata` report.
    pub fn count_report(&self, kind: &str, result: Result<(), &ApiError>) {
        let outcome = match result {
            Ok(()) => "stored",
            Err(err) => outcome_of(err).0,
        };
        self.reports.with_label_values(&[kind, outcome]).inc();
    }
}

/// `(outcome, default reason)` of an error answer, by its HTTP status so that every error
/// kind gets a label.
fn outcome_of(err: &ApiError) -> (&'static str, &'static str) {
    use actix_web::http::StatusCode;
    match actix_web::ResponseError::status_code(err) {
        StatusCode::SERVICE_UNAVAILABLE => match err {
            ApiError::Unavailable(_) => ("unavailable", "store_unavailable"),
            _ => ("unavailable", "busy"),
        },
        status if status.is_server_error() => ("error", "internal"),
        StatusCode::PAYLOAD_TOO_LARGE => ("rejected", "too_large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("rejected", "unsupported_media_type"),
        StatusCode::REQUEST_TIMEOUT => ("rejected", "body_timeout"),
        _ => ("rejected", "bad_request"),
    }
}
