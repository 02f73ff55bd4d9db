//! `/metrics` of the sync job (docs/operators.md, "Release sync").

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::{Planned, Reason};
use crate::db::models::release_changes::ChangeRow;

/// The sync job's counters and gauges.
#[derive(Clone)]
pub struct SyncMetrics {
    runs: IntCounterVec,
    failures: IntCounterVec,
    changes: IntCounter,
    last_success: IntGauge,
    upstream_versions: IntGauge,
}

/// Outcomes of `version_app_release_sync_total`.
const OUTCOMES: [&str; 3] = ["applied", "unchanged", "failed"];

impl SyncMetrics {
    /// Creates and registers them (zero-initialised, so alerts see every series).
    pub fn register(registry: &Registry) -> SyncMetrics {
        let runs = IntCounterVec::new(
            Opts::new(
                "version_app_release_sync_total",
                "Release syncs from the upstream, by outcome (applied: changes written; \
                 unchanged: already in line; failed: nothing changed, see the failures counter)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "version_app_release_sync_failures_total",
                "Release syncs that changed nothing, by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let changes = IntCounter::new(
            "version_app_release_sync_changes_total",
            "Release fields changed by sync (one per audit entry)",
        )
        .expect("valid metric");
        let last_success = IntGauge::new(
            "version_app_release_sync_last_success_timestamp_seconds",
            "Unix time of the last successful release sync (0: none since start)",
        )
        .expect("valid metric");
        let upstream_versions = IntGauge::new(
            "version_app_release_sync_upstream_versions",
            "Versions the upstream listed at the last successful sync",
        )
        .expect("valid metric");
        for metric in [
            Box::new(runs.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(changes.clone()),
            Box::new(last_success.clone()),
            Box::new(upstream_versions.clone()),
        ] {
            registry.register(metric).expect("metric names are unique");
        }
        for outcome in OUTCOMES {
            runs.with_label_values(&[outcome]);
        }
        for reason in Reason::ALL {
            failures.with_label_values(&[reason.label()]);
        }
        SyncMetrics {
            runs,
            failures,
            changes,
            last_success,
            upstream_versions,
        }
    }

    /// A sync that read the upstream and applied (or needed) nothing more.
    pub fn succeeded(&self, planned: &Planned, written: &[ChangeRow]) {
        let outcome = if written.is_empty() {
            "unchanged"
        } else {
            "applied"
        };
        self.runs.with_label_values(&[outcome]).inc();
        self.changes.inc_by(written.len() as u64);
        self.last_success.set(chrono::Utc::now().timestamp());
        self.upstream_versions
            .set(i64::try_from(planned.upstream_versions).unwrap_or(i64::MAX));
    }

    /// A sync that changed nothing.
    pub fn failed(&self, reason: Reason) {
        self.runs.with_label_values(&["failed"]).inc();
        self.failures.with_label_values(&[reason.label()]).inc();
    }
}
