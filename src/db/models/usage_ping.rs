//! `usage_ping_errors` and `usage_ping_metadata` (+ `usage_ping_metadata_metrics`): what
//! instances report about their own Service Ping runs, linked to the instance by uuid.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{usage_ping_errors, usage_ping_metadata, usage_ping_metadata_metrics};
use crate::db::{AnyConnection, DbError, WriteTransaction};
use crate::with_conn;

/// A failure report to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = usage_ping_errors)]
pub struct NewUsagePingError {
    /// Instance UUID, when sent.
    pub uuid: Option<String>,
    /// `unique_instance_id`, when sent.
    pub unique_instance_id: Option<String>,
    /// Hostname, when sent.
    pub hostname: Option<String>,
    /// GitLab version, when sent.
    pub version: Option<String>,
    /// The error message.
    pub message: Option<String>,
    /// Seconds spent before the failure.
    pub elapsed: Option<f64>,
    /// `time` as sent.
    pub error_time: Option<String>,
    /// When received.
    pub received_at: NaiveDateTime,
    /// The body as received.
    pub body: String,
}

/// One metric timing of a metadata report.
#[derive(Debug, Clone)]
pub struct MetadataMetric {
    /// Metric key path.
    pub name: String,
    /// Seconds the metric took.
    pub time_elapsed: Option<f64>,
    /// Error text when it failed.
    pub error: Option<String>,
}

/// A metadata report to insert.
#[derive(Debug)]
pub struct NewUsagePingMetadata {
    /// Instance UUID (absent from very old clients).
    pub uuid: Option<String>,
    /// `unique_instance_id`, when sent.
    pub unique_instance_id: Option<String>,
    /// When received.
    pub received_at: NaiveDateTime,
    /// The body as received.
    pub body: String,
    /// The timings.
    pub metrics: Vec<MetadataMetric>,
}

/// Stores a failure report; returns its id.
pub fn insert_error(conn: &mut AnyConnection, new: &NewUsagePingError) -> Result<i64, DbError> {
    Ok(with_conn!(conn, |c| diesel::insert_into(
        usage_ping_errors::table
    )
    .values(new)
    .returning(usage_ping_errors::id)
    .get_result(c))?)
}

/// Rows per statement for metadata timings (five variables each, under SQLite's 32,766).
const METADATA_ROWS_PER_INSERT: usize = 5_000;

/// Stores a metadata report and its timings in one transaction; returns its id.
pub fn insert_metadata(
    conn: &mut AnyConnection,
    new: &NewUsagePingMetadata,
) -> Result<i64, DbError> {
    with_conn!(conn, |c| c.write_transaction::<_, DbError, _>(|c| {
        let id: i64 = diesel::insert_into(usage_ping_metadata::table)
            .values((
                usage_ping_metadata::uuid.eq(&new.uuid),
                usage_ping_metadata::unique_instance_id.eq(&new.unique_instance_id),
                usage_ping_metadata::received_at.eq(new.received_at),
                usage_ping_metadata::metrics_count.eq(new.metrics.len() as i64),
                usage_ping_metadata::body.eq(&new.body),
            ))
            .returning(usage_ping_metadata::id)
            .get_result(c)?;
        let rows: Vec<_> = new
            .metrics
            .iter()
            .enumerate()
            .map(|(position, metric)| {
                (
                    usage_ping_metadata_metrics::metadata_id.eq(id),
                    usage_ping_metadata_metrics::position.eq(position as i64),
                    usage_ping_metadata_metrics::name.eq(&metric.name),
                    usage_ping_metadata_metrics::time_elapsed.eq(metric.time_elapsed),
                    usage_ping_metadata_metrics::error.eq(&metric.error),
                )
            })
            .collect();
        for chunk in rows.chunks(METADATA_ROWS_PER_INSERT) {
            diesel::insert_into(usage_ping_metadata_metrics::table)
                .values(chunk)
                .execute(c)?;
        }
        Ok(id)
    }))
}
