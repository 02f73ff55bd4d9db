//! The retention pass: every kind of data past its retention period, removed (or, for daily
//! version-check counts, rolled up by month) in bounded batches. One pass is what the daily
//! job runs and what `version-app retention run` runs; periods are in `docs/privacy.md`.

use chrono::{Duration, NaiveDateTime};
use prometheus::{IntCounterVec, Opts, Registry};

use std::num::NonZeroU32;
use std::sync::Arc;

use crate::config::{chrono_duration, Settings};
use crate::db::models::retention as sql;
use crate::db::{Db, DbError};
use crate::jobs::{Jobs, RunScope};
use crate::metrics::Metrics;

/// Name of the retention job on the job runner.
pub const JOB_NAME: &str = "retention";

/// Registers the retention job (every `retention_interval_secs`, daily by default): once across processes sharing a store, stopping
/// between batches at shutdown, counting what it removed in `/metrics`.
pub fn register_job(jobs: &Jobs, metrics: &Metrics, settings: Arc<Settings>) {
    let counters = RetentionMetrics::register(metrics.registry());
    let every = settings.retention.interval;
    jobs.every(JOB_NAME, every, RunScope::OnceAcrossProcesses, move |ctx| {
        let now = chrono::Utc::now().naive_utc();
        let cancelled = || ctx.cancel.is_cancelled();
        run_pass(ctx.db, &settings, now, &cancelled, Some(&counters))?;
        Ok(())
    });
}

/// Rows removed per kind in one pass, in the order the pass ran them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// `(kind, rows)`: kinds are table names, plus `version_checks_rolled_up`.
    pub removed: Vec<(&'static str, u64)>,
    /// True when the pass stopped early because it was cancelled.
    pub cancelled: bool,
}

/// `version_app_retention_removed_total{kind}`.
#[derive(Clone)]
pub struct RetentionMetrics {
    removed: IntCounterVec,
}

impl RetentionMetrics {
    /// Creates the counter and registers it.
    pub fn register(registry: &Registry) -> RetentionMetrics {
        let removed = IntCounterVec::new(
            Opts::new(
                "version_app_retention_removed_total",
                "Rows removed by the retention job, by kind (version_checks_rolled_up: daily \
                 check rows summed into version_checks_monthly)",
            ),
            &["kind"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(removed.clone()))
            .expect("metric names are unique");
        for kind in KINDS {
            removed.with_label_values(&[kind]);
        }
        RetentionMetrics { removed }
    }
}

const KINDS: [&str; 7] = [
    "version_checks_rolled_up",
    "hosts",
    "usage_ping_errors",
    "usage_ping_metadata",
    "usage_data_raw",
    "usage_data",
    "console_sessions",
];

type BatchFn = fn(&mut crate::db::AnyConnection, NaiveDateTime, i64) -> Result<usize, DbError>;

/// Runs one pass at `now`. `cancelled` is asked between batches; a cancelled pass stops
/// after its current batch (each batch is its own transaction, so nothing is half done).
pub fn run_pass(
    db: &Db,
    settings: &Settings,
    now: NaiveDateTime,
    cancelled: &dyn Fn() -> bool,
    metrics: Option<&RetentionMetrics>,
) -> Result<RetentionReport, DbError> {
    let retention = &settings.retention;
    let batch = i64::from(retention.batch_size.get());
    let days = |n: NonZeroU32| now - Duration::days(i64::from(n.get()));
    let roll_up: BatchFn =
        |conn, before, batch| sql::roll_up_daily_checks(conn, before.date(), batch);
    // (kind, cutoff or None to keep, rows per batch, one batch)
    let idle = chrono_duration(settings.console.session_idle);
    let plan: [(&'static str, Option<NaiveDateTime>, i64, BatchFn); 7] = [
        (
            KINDS[0],
            Some(days(retention.version_check_daily_days)),
            batch,
            roll_up,
        ),
        (
            KINDS[1],
            Some(days(retention.host_days)),
            batch,
            sql::delete_hosts_not_seen_since,
        ),
        (
            KINDS[2],
            Some(days(retention.usage_ping_error_days)),
            batch,
            sql::delete_errors_received_before,
        ),
        (
            KINDS[3],
            Some(days(retention.usage_ping_metadata_days)),
            batch,
            sql::delete_metadata_received_before,
        ),
        (
            KINDS[4],
            retention.raw_payload_days.map(days),
            batch,
            sql::delete_raw_received_before,
        ),
        (
            KINDS[5],
            retention.submission_days.map(days),
            // ~4,200 metric rows go with each submission.
            (batch / 100).max(1),
            sql::delete_submissions_received_before,
        ),
        (
            KINDS[6],
            now.checked_sub_signed(idle),
            batch,
            sql::delete_console_sessions_ended_before,
        ),
    ];
    let mut report = RetentionReport::default();
    for (kind, cutoff, per_batch, step) in plan {
        let Some(cutoff) = cutoff else { continue };
        let mut total = 0u64;
        loop {
            if cancelled() {
                report.cancelled = true;
                break;
            }
            // Batches run back to back: on SQLite a waiting ingest writer commits first
            // (db/write_priority.rs). A connection per batch: the pool is shared with checks
            // and ingest.
            db.yield_to_ingest();
            let n = step(&mut db.get()?, cutoff, per_batch)?;
            total += n as u64;
            if let Some(m) = metrics {
                m.removed.with_label_values(&[kind]).inc_by(n as u64);
            }
            if (n as i64) < per_batch {
                break;
            }
        }
        if total > 0 {
            tracing::info!(retention.kind = kind, retention.removed = total, cutoff = %cutoff, "retention removed rows");
        }
        report.removed.push((kind, total));
        if report.cancelled {
            break;
        }
    }
    Ok(report)
}
