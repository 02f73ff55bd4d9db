//! One response shape for every insights endpoint: `{"rows": […], …}` as JSON, or the rows
//! as CSV with a fixed header and formula-like text cells neutralised.

use actix_web::http::header;
use actix_web::HttpResponse;
use serde::Serialize;

use super::params::Format;
use crate::domain::csv_safe::neutralise;
use crate::error::ApiError;
use crate::insights::report::{
    BackportRow, CheckDay, InstallationSubmission, InstallationsRow, MetricRow, VersionsRow,
    VulnerableRow,
};

/// A row type that can be written as CSV.
pub trait CsvRow {
    /// The header, in column order (the JSON field names).
    const HEADER: &'static [&'static str];
    /// The cells; text cells go through [`text`].
    fn cells(&self) -> Vec<String>;
}

/// A text cell, neutralised.
pub fn text(value: &str) -> String {
    neutralise(value).into_owned()
}

/// An optional cell, empty when absent.
pub fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map(ToString::to_string).unwrap_or_default()
}

impl CsvRow for InstallationsRow {
    const HEADER: &'static [&'static str] = &["period", "group", "installations", "complete"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.period.to_string(),
            text(&self.group),
            self.installations.to_string(),
            self.complete.to_string(),
        ]
    }
}

impl CsvRow for MetricRow {
    const HEADER: &'static [&'static str] = &[
        "period",
        "group",
        "installations_reporting",
        "adopting",
        "sum",
        "median",
        "p90",
        "excluded_special",
        "complete",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.period.to_string(),
            text(&self.group),
            self.installations_reporting.to_string(),
            self.adopting.to_string(),
            self.sum.to_string(),
            opt(&self.median),
            opt(&self.p90),
            self.excluded_special.to_string(),
            self.complete.to_string(),
        ]
    }
}

impl CsvRow for VersionsRow {
    const HEADER: &'static [&'static str] = &["period", "minor", "installations", "complete"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.period.to_string(),
            text(&self.minor),
            self.installations.to_string(),
            self.complete.to_string(),
        ]
    }
}

impl CsvRow for BackportRow {
    const HEADER: &'static [&'static str] = &[
        "minor",
        "installations",
        "hosts",
        "active",
        "severity",
        "latest_patch",
        "on_latest_patch",
        "affected",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            text(&self.minor),
            self.installations.to_string(),
            self.hosts.to_string(),
            self.active.to_string(),
            self.severity.to_string(),
            text(&opt(&self.latest_patch)),
            self.on_latest_patch.to_string(),
            opt(&self.affected),
        ]
    }
}

impl CsvRow for InstallationSubmission {
    const HEADER: &'static [&'static str] = &[
        "usage_data_id",
        "recorded_at",
        "version",
        "edition",
        "tier",
        "active_user_count",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.usage_data_id.to_string(),
            self.recorded_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            text(&opt(&self.version)),
            text(&opt(&self.edition)),
            text(&self.tier),
            opt(&self.active_user_count),
        ]
    }
}

impl CsvRow for CheckDay {
    const HEADER: &'static [&'static str] = &["day", "version", "count"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.day.to_string(),
            text(&self.version),
            self.count.to_string(),
        ]
    }
}

impl CsvRow for VulnerableRow {
    const HEADER: &'static [&'static str] = &[
        "hostname",
        "uuid",
        "version",
        "source",
        "last_seen",
        "severity",
        "critical",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            text(&self.hostname),
            text(&opt(&self.uuid)),
            text(&self.version),
            self.source.to_string(),
            self.last_seen.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            self.severity.to_string(),
            self.critical.to_string(),
        ]
    }
}

/// The rows as CSV text.
pub fn to_csv<R: CsvRow>(rows: &[R]) -> Result<String, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| ApiError::Internal(format!("csv: {e}"));
    writer.write_record(R::HEADER).map_err(fail)?;
    for row in rows {
        writer.write_record(row.cells()).map_err(fail)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| ApiError::Internal(format!("csv: {e}")))?;
    String::from_utf8(bytes).map_err(|e| ApiError::Internal(format!("csv: {e}")))
}

/// The JSON envelope.
#[derive(Serialize)]
struct Envelope<'a, R: Serialize, M: Serialize> {
    rows: &'a [R],
    #[serde(flatten)]
    meta: M,
}

/// Answers rows as JSON (with `meta` fields beside `rows`) or CSV. A capped range is said in
/// the `capped` field and, for CSV, in an `X-Insights-Capped` header.
pub fn respond<R: CsvRow + Serialize, M: Serialize>(
    format: Format,
    rows: &[R],
    meta: M,
    capped: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "private, no-cache"));
    if let Some(note) = capped {
        response.insert_header(("X-Insights-Capped", note.replace(['\r', '\n'], " ")));
    }
    Ok(match format {
        Format::Json => response.json(Envelope { rows, meta }),
        Format::Csv => response
            .content_type("text/csv; charset=utf-8")
            .body(to_csv(rows)?),
    })
}
