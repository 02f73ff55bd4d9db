//! Write-behind recording of version checks.
//!
//! A check handler only calls [`Recorder::record`], which bumps a bounded in-memory aggregate
//! ([`CheckBuffer`]) and never waits for the store. One background task per process flushes
//! that aggregate every `check_flush_interval_ms`, in one transaction with additive upserts
//! (so several processes on one store add up), keeps `version_status` in step with the
//! release table, and flushes a last time on graceful shutdown.
//!
//! When the store is down the batch goes back into the buffer and is retried next interval;
//! the buffer keeps growing up to `check_buffer_max_keys` distinct keys and then drops (and
//! counts, and logs) checks with new keys, while existing keys keep counting.

mod buffer;

pub use crate::db::models::version_checks::CheckCount;
pub use buffer::{CheckBuffer, CheckKey};

use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::db::models::version_checks::{self, VersionStatus};
use crate::db::{Db, DbError};
use crate::domain::version::Version;
use crate::domain::version_status::version_facts;
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::snapshot::Releases;

/// Records checks; its flush task runs under the application's job runner.
pub struct Recorder {
    buffer: Arc<CheckBuffer>,
}

impl Recorder {
    /// Creates the buffer and starts the flush task on `jobs` (call inside the async
    /// runtime). The task flushes a last time when the runner shuts down, which the
    /// application does once in-flight requests are done.
    pub fn start(
        db: Db,
        releases: Releases,
        metrics: Arc<Metrics>,
        jobs: &Jobs,
        max_keys: usize,
        flush_every: Duration,
    ) -> Recorder {
        let buffer = Arc::new(CheckBuffer::new(
            max_keys,
            CheckBuffer::default_shards(),
            metrics.check_records_dropped.clone(),
        ));
        let flusher = Flusher {
            buffer: buffer.clone(),
            db,
            releases,
            metrics,
            known_versions: HashSet::new(),
        };
        jobs.spawn_loop("check_flush", flusher.run(flush_every, jobs.cancel_token()));
        Recorder { buffer }
    }

    /// Counts one check. Never blocks on I/O; returns `false` if it was dropped at the bound.
    pub fn record(&self, key: CheckKey<'_>, at: DateTime<Utc>) -> bool {
        self.buffer.record(key, at)
    }

    /// The aggregate (for metrics and tests).
    pub fn buffer(&self) -> &CheckBuffer {
        &self.buffer
    }
}

/// The state of the flush task.
struct Flusher {
    buffer: Arc<CheckBuffer>,
    db: Db,
    releases: Releases,
    metrics: Arc<Metrics>,
    /// Versions whose verdict this process has already stored (so a flush does not compute
    /// and send them again); the whole table is refreshed when releases change.
    known_versions: HashSet<String>,
}

impl Flusher {
    async fn run(mut self, every: Duration, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate
        let mut generations = self.releases.subscribe();
        let mut follow_releases = true;
        // Releases may have changed while no process was running (the CLI edits them too).
        let mut statuses_stale = true;
        loop {
            if statuses_stale {
                statuses_stale = !self.refresh_statuses().await;
            }
            tokio::select! {
                _ = ticker.tick() => {
                    self.flush().await;
                }
                changed = generations.changed(), if follow_releases => {
                    match changed {
                        Ok(()) => statuses_stale = true,
                        Err(_) => follow_releases = false,
                    }
                }
                _ = stop.cancelled() => break,
            }
        }
        let before = self.metrics.check_records_flushed.get();
        if self.flush().await {
            tracing::info!(
                checks.flushed = self.metrics.check_records_flushed.get() - before,
                "recorded version checks written at shutdown"
            );
        } else {
            let left: u64 = self.buffer.take().iter().map(|r| r.count).sum();
            tracing::error!(
                checks.lost = left,
                "the last flush at shutdown failed; these recorded checks are lost"
            );
        }
    }

    /// Writes everything buffered. Returns false when the store refused (the batch is back
    /// in the buffer then).
    async fn flush(&mut self) -> bool {
        let rows = self.buffer.take();
        if rows.is_empty() {
            return true;
        }
        let table = self.releases.current();
        let mut fresh: Vec<VersionStatus> = Vec::new();
        for row in &rows {
            if self.known_versions.contains(&row.version)
                || fresh.iter().any(|s| s.version == row.version)
            {
                continue;
            }
            if let Ok(version) = Version::parse(&row.version) {
                fresh.push(VersionStatus::stamped(
                    version_facts(&table, &version),
                    chrono::Utc::now().naive_utc(),
                ));
            }
        }
        fresh.sort_by(|a, b| a.version.cmp(&b.version));
        let checks: u64 = rows.iter().map(|r| r.count).sum();
        let keys = rows.len();
        // Shared, so the rows survive (for merging back) even if the blocking task dies.
        let batch = Arc::new((rows, fresh));
        let started = Instant::now();
        let outcome = {
            let (db, batch) = (self.db.clone(), batch.clone());
            tokio::task::spawn_blocking(move || {
                let mut conn = db.get()?;
                version_checks::record_batch(&mut conn, &batch.0, &batch.1)
            })
            .await
            .unwrap_or_else(|e| {
                Err(DbError::Task {
                    what: "check flush task",
                    source: Box::new(e),
                })
            })
        };
        self.metrics
            .check_flush_seconds
            .observe(started.elapsed().as_secs_f64());
        let (rows, fresh) = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
        let ok = match outcome {
            Ok(()) => {
                self.metrics.check_records_flushed.inc_by(checks);
                self.buffer.flush_done(checks);
                self.known_versions
                    .extend(fresh.into_iter().map(|s| s.version));
                tracing::debug!(
                    checks.flushed = checks,
                    checks.keys = keys,
                    "version checks flushed"
                );
                true
            }
            Err(err) => {
                self.metrics.check_flush_failures.inc();
                tracing::warn!(
                    error.cause = %crate::error::Chain(&err),
                    checks.pending = checks,
                    checks.keys = keys,
                    "flushing version checks failed; keeping them for the next flush"
                );
                self.buffer.merge_back(rows);
                self.buffer.flush_done(checks);
                false
            }
        };
        ok
    }

    /// Recomputes stored verdicts against the current release table. Returns false on failure
    /// (to be retried).
    async fn refresh_statuses(&mut self) -> bool {
        let table = self.releases.current();
        let db = self.db.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut conn = db.get()?;
            version_checks::refresh_statuses(&mut conn, &table)
        })
        .await
        .unwrap_or_else(|e| {
            Err(DbError::Task {
                what: "verdict refresh task",
                source: Box::new(e),
            })
        });
        match outcome {
            Ok(changed) => {
                if changed > 0 {
                    tracing::info!(
                        versions.changed = changed,
                        "version verdicts refreshed after a release change"
                    );
                }
                true
            }
            Err(err) => {
                tracing::warn!(
                    error.cause = %crate::error::Chain(&err),
                    "refreshing version verdicts failed; retrying after the next flush"
                );
                false
            }
        }
    }
}
