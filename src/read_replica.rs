//! Read-only analyst queries (insights API and pages, `export`), optionally on a PostgreSQL
//! read replica (`database_read_url`); everything else uses the primary.
//!
//! A background job (`read_replica_health`, every process, every few seconds) asks the
//! replica whether it is a standby and how far it lags. Analyst reads go to the primary
//! instead while the replica is unreachable, lags more than `database_read_max_lag_secs`,
//! or a query on it fails for the store's reasons. Changes of state are logged (at most one
//! line a minute) and `/metrics` shows the state, the lag and where every read went.
//!
//! Lag: on a standby, 0 when it streams from the primary and has replayed everything
//! received, else the age of the last replayed transaction (`pg_last_xact_replay_timestamp()`;
//! replay timestamps say nothing on an idle primary, hence the received = replayed test
//! first; and received = replayed says nothing on a standby cut off from its primary, hence
//! the streaming test). Unknown (not streaming, nothing replayed since it started) counts as
//! lagging without bound. A server that is not a standby (a copy kept in step by other
//! means, or a pooler in front of the primary) has no measurable lag: it is used as is, with
//! lag 0, and that is logged once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{Gauge, IntCounterVec, IntGauge, Opts, Registry};

use crate::config::{Settings, StoreSettings};
use crate::db::models::replica_state;
use crate::db::{AnyConnection, Db, DbError};
use crate::jobs::{Jobs, RunScope};

/// How often the replica's state is checked.
const HEALTH_EVERY: Duration = Duration::from_secs(5);
/// At most one log line about the replica's state per this long.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// How long to wait for a replica connection: an unreachable replica must not hold analyst
/// pages for the primary's (longer) timeout before they fall back.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(2);

/// Decides which of the replica's states are logged: the state at start-up, then every change,
/// at most one line per [`LOG_EVERY`]. Changes inside that minute are not dropped: the first
/// health check after it logs the state then, with how many changes it sums up. (A limit
/// that dropped them would hide a fallback shortly after start-up, or one that ended within
/// the minute, from the log altogether.)
#[derive(Default)]
struct StateLog {
    /// The state last noted (`None` before the first health check).
    current: Option<bool>,
    /// When a change of state was last logged (the start-up line is not a change).
    last_change_line: Option<Instant>,
    /// Changes of state since the last line.
    unlogged: u32,
}

impl StateLog {
    /// Notes the state found at `now`; `Some(changes since the previous line)` when a line
    /// is to be logged now (0 for the start-up line).
    fn note(&mut self, usable: bool, now: Instant) -> Option<u32> {
        let Some(was) = self.current.replace(usable) else {
            return Some(0);
        };
        if was != usable {
            self.unlogged += 1;
        }
        let too_soon = self
            .last_change_line
            .is_some_and(|at| now.duration_since(at) < LOG_EVERY);
        if self.unlogged == 0 || too_soon {
            return None;
        }
        self.last_change_line = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// Where read-only analyst queries go; cheap to clone.
#[derive(Clone)]
pub struct ReadDb {
    primary: Db,
    replica: Option<Arc<Replica>>,
    metrics: ReadMetrics,
}

struct Replica {
    db: Db,
    max_lag: Duration,
    usable: AtomicBool,
    /// Which changes of state get a log line.
    log: Mutex<StateLog>,
    told_not_standby: AtomicBool,
}

#[derive(Clone)]
struct ReadMetrics {
    queries: IntCounterVec,
    fallbacks: IntCounterVec,
    usable: IntGauge,
    lag: Gauge,
}

impl ReadMetrics {
    fn register(registry: &Registry) -> ReadMetrics {
        let queries = IntCounterVec::new(
            Opts::new(
                "version_app_read_queries_total",
                "Read-only analyst queries by where they ran: replica, primary (no replica configured) or primary_fallback (replica unusable)",
            ),
            &["target"],
        )
        .expect("valid metric");
        let fallbacks = IntCounterVec::new(
            Opts::new(
                "version_app_read_replica_unusable_total",
                "Health checks or queries that found the read replica unusable, by reason (unreachable, lagging, error)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let usable = IntGauge::new(
            "version_app_read_replica_usable",
            "1 when analyst reads go to the read replica, 0 when they fall back to the primary (or none is configured)",
        )
        .expect("valid metric");
        let lag = Gauge::new(
            "version_app_read_replica_lag_seconds",
            "Replication lag of the read replica at its last health check (0 for a server that is not a standby)",
        )
        .expect("valid metric");
        for collector in [
            Box::new(queries.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(fallbacks.clone()),
            Box::new(usable.clone()),
            Box::new(lag.clone()),
        ] {
            registry
                .register(collector)
                .expect("read metric names are unique");
        }
        ReadMetrics {
            queries,
            fallbacks,
            usable,
            lag,
        }
    }
}

impl ReadDb {
    /// Analyst reads on `primary`, or on the replica of `database_read_url` when it is set
    /// (the replica's pool is opened lazily: an unreachable replica does not stop start-up).
    pub fn new(primary: Db, settings: &Settings, registry: &Registry) -> Result<ReadDb, DbError> {
        let metrics = ReadMetrics::register(registry);
        let replica = match &settings.store.read_url {
            None => None,
            Some(url) => {
                let replica_settings = StoreSettings {
                    url: url.clone(),
                    timeout: REPLICA_TIMEOUT,
                    ..settings.store.clone()
                };
                Some(Arc::new(Replica {
                    db: Db::connect(&replica_settings)?,
                    max_lag: settings.store.read_max_lag,
                    usable: AtomicBool::new(false),
                    log: Mutex::new(StateLog::default()),
                    told_not_standby: AtomicBool::new(false),
                }))
            }
        };
        Ok(ReadDb {
            primary,
            replica,
            metrics,
        })
    }

    /// Registers the replica's health check (every process: each decides for itself).
    pub fn register_job(&self, jobs: &Jobs) {
        if self.replica.is_none() {
            return;
        }
        let this = self.clone();
        jobs.every(
            "read_replica_health",
            HEALTH_EVERY,
            RunScope::EveryProcess,
            move |_| {
                this.check_now();
                Ok(())
            },
        );
    }

    /// Asks the replica for its state now and updates where reads go (blocking). Returns
    /// whether the replica is usable.
    pub fn check_now(&self) -> bool {
        let Some(replica) = &self.replica else {
            return false;
        };
        let state = replica
            .db
            .get()
            .and_then(|mut conn| replica_state::read(&mut conn));
        match state {
            Err(err) => self.set_state(replica, Some(("unreachable", err.to_string()))),
            Ok(state) => {
                if !state.standby && !replica.told_not_standby.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        "database_read_url is not a standby (pg_is_in_recovery() is false): \
                         analyst reads use it as is and its lag is taken as 0"
                    );
                }
                // A server that is not a standby has no measurable lag: 0. A standby whose
                // lag is unknown is taken as lagging without bound.
                let lag = match (state.standby, state.lag) {
                    (false, _) => 0.0,
                    (true, Some(lag)) => lag.max(0.0),
                    (true, None) => f64::INFINITY,
                };
                self.metrics.lag.set(lag);
                if lag > replica.max_lag.as_secs_f64() {
                    let why = if lag.is_finite() {
                        format!(
                            "replica lags {lag:.1} s behind the primary (more than {} s)",
                            replica.max_lag.as_secs()
                        )
                    } else {
                        "replica's lag is unknown: it receives no WAL from the primary and has \
                         replayed no transaction since it started"
                            .to_string()
                    };
                    self.set_state(replica, Some(("lagging", why)));
                } else {
                    self.set_state(replica, None);
                }
            }
        }
        replica.usable.load(Ordering::Relaxed)
    }

    /// Records the replica usable (`None`) or not (the reason label and why), and logs the
    /// state when [`StateLog`] says so.
    fn set_state(&self, replica: &Replica, unusable: Option<(&'static str, String)>) {
        let usable = unusable.is_none();
        replica.usable.store(usable, Ordering::Relaxed);
        self.metrics.usable.set(i64::from(usable));
        if let Some((reason, _)) = &unusable {
            self.metrics.fallbacks.with_label_values(&[reason]).inc();
        }
        let mut log = replica.log.lock().unwrap_or_else(|e| e.into_inner());
        let Some(changes) = log.note(usable, Instant::now()) else {
            return;
        };
        match unusable {
            None => tracing::info!(
                read_replica.changes = changes,
                "analyst reads go to the read replica"
            ),
            Some((reason, why)) => tracing::warn!(
                read_replica.reason = reason,
                read_replica.changes = changes,
                error.cause = %why,
                "read replica unusable: analyst reads fall back to the primary"
            ),
        }
    }

    /// Runs a read-only query on the replica when it is usable, else on the primary. A
    /// query that fails on the replica for the store's reasons is run again on the primary.
    pub async fn run<F, T>(&self, f: F) -> Result<T, DbError>
    where
        F: Fn(&mut AnyConnection) -> Result<T, DbError> + Send + Sync + 'static,
        T: Send + 'static,
    {
        let Some(replica) = self
            .replica
            .as_ref()
            .filter(|r| r.usable.load(Ordering::Relaxed))
        else {
            let target = if self.replica.is_some() {
                "primary_fallback"
            } else {
                "primary"
            };
            self.metrics.queries.with_label_values(&[target]).inc();
            return self.primary.run(f).await;
        };
        let f = Arc::new(f);
        let on_replica = f.clone();
        match replica.db.run(move |c| on_replica(c)).await {
            Err(err) if err.is_unavailable() => {
                self.set_state(replica, Some(("error", err.to_string())));
                self.metrics
                    .queries
                    .with_label_values(&["primary_fallback"])
                    .inc();
                self.primary.run(move |c| f(c)).await
            }
            outcome => {
                self.metrics.queries.with_label_values(&["replica"]).inc();
                outcome
            }
        }
    }

    /// A replica connection for a read-only command (`export`) when the replica is usable
    /// now; `None` means: use the primary (blocking; for the CLI).
    pub fn replica_blocking(&self) -> Option<AnyConnection> {
        let replica = self.replica.as_ref()?;
        if self.check_now() {
            replica.db.get().ok()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fallback soon after start-up is logged at once, and changes of state held back by
    /// the one-line-a-minute limit are summed up after the minute rather than lost.
    #[test]
    fn every_change_of_state_is_logged_at_most_one_line_a_minute() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut log = StateLog::default();
        assert_eq!(log.note(true, at(0)), Some(0), "the state at start-up");
        assert_eq!(log.note(true, at(5)), None);
        assert_eq!(
            log.note(false, at(20)),
            Some(1),
            "a fallback 20 s after start-up"
        );
        assert_eq!(log.note(false, at(25)), None);
        assert_eq!(log.note(true, at(30)), None, "back within the minute: held");
        assert_eq!(log.note(false, at(35)), None);
        assert_eq!(log.note(true, at(40)), None);
        assert_eq!(log.note(true, at(75)), None);
        assert_eq!(
            log.note(true, at(80)),
            Some(3),
            "three changes since the last line"
        );
        assert_eq!(log.note(true, at(85)), None);
        assert_eq!(log.note(false, at(200)), Some(1), "a minute later: at once");
    }
}
