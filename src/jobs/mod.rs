//! The one runner of background work.
//!
//! Every periodic job (release refresh, DevOps leaders, retention, rollups, sync) and every
//! long-running task (the check flusher) is started here, so that all of them get the same
//! things: a name, a tracing span, cancellation on shutdown, a join before the process exits,
//! panic reporting, and `/metrics` for their last run, duration and failures.
//!
//! A job that writes shared state and must run once across several processes on one
//! PostgreSQL store is registered with [`RunScope::OnceAcrossProcesses`]: each run first takes
//! a PostgreSQL advisory lock named after the job ([`crate::db::locks`]); a process that does
//! not get it skips that tick, and picks the job up when the holder dies (its connection, and
//! so the lock, goes with it). Under the lock it then claims the run in `job_schedule`
//! ([`crate::db::models::job_schedule`]): a run is due only when the job last started, in
//! any process and by the store's clock, at least nine tenths of its interval ago. The lock
//! alone would stop two runs overlapping, not two nodes each running the job once per
//! interval. On SQLite there is one process per store, so the job just runs.

mod metrics;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Backend;
use crate::db::models::job_schedule;
use crate::db::{locks, Db};
use crate::metrics::Metrics;

pub use metrics::JobMetrics;

/// Whether a job may run in every process or only in one at a time across processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunScope {
    /// Per-process work, such as refreshing an in-memory cache from the store.
    EveryProcess,
    /// Work on shared state that must not run twice at once (rollups, retention, sync).
    OnceAcrossProcesses,
}

/// What a job's work function is handed on each run.
pub struct JobContext<'a> {
    /// The store.
    pub db: &'a Db,
    /// Cancelled at shutdown: long jobs check it between bounded batches and return early.
    pub cancel: &'a CancellationToken,
}

/// How one run of a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// The work function returned `Ok`.
    Ok,
    /// It returned an error or panicked (logged).
    Failed,
    /// Another process holds the job's lock; this process left the tick to it.
    Skipped,
    /// Another process ran the job less than an interval ago; nothing to do this tick.
    NotDue,
}

impl JobOutcome {
    /// The `outcome` label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            JobOutcome::Ok => "ok",
            JobOutcome::Failed => "failed",
            JobOutcome::Skipped => "skipped",
            JobOutcome::NotDue => "not_due",
        }
    }
}

type Work = dyn Fn(&JobContext<'_>) -> anyhow::Result<()> + Send + Sync;

struct Registered {
    scope: RunScope,
    work: Arc<Work>,
}

struct Inner {
    db: Db,
    tracker: TaskTracker,
    cancel: CancellationToken,
    metrics: JobMetrics,
    jobs: Mutex<HashMap<&'static str, Registered>>,
}

/// The runner; cheap to clone, one per application.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

impl Jobs {
    /// A runner whose jobs use `db` and report into `metrics`' registry.
    pub fn new(db: Db, metrics: &Metrics) -> Jobs {
        Jobs {
            inner: Arc::new(Inner {
                db,
                tracker: TaskTracker::new(),
                cancel: CancellationToken::new(),
                metrics: JobMetrics::register(metrics.registry()),
                jobs: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Runs `work` now and then every `every` until shutdown, on the blocking thread pool
    /// (diesel is synchronous). A run that takes longer than `every` delays the next one
    /// rather than piling up. Call inside the async runtime.
    ///
    /// # Panics
    /// If a job of that name is already registered: names label metrics and locks, so two
    /// jobs sharing one would silently share both.
    pub fn every<F>(&self, name: &'static str, every: Duration, scope: RunScope, work: F)
    where
        F: Fn(&JobContext<'_>) -> anyhow::Result<()> + Send + Sync + 'static,
    {
        let work: Arc<Work> = Arc::new(work);
        {
            let mut jobs = self.inner.jobs.lock().expect("jobs lock");
            assert!(
                !jobs.contains_key(name),
                "background job `{name}` registered twice"
            );
            jobs.insert(
                name,
                Registered {
                    scope,
                    work: work.clone(),
                },
            );
        }
        self.inner.metrics.set_interval(name, every);
        let this = self.clone();
        let cancel = self.inner.cancel.clone();
        let span = tracing::info_span!("job", job.name = name);
        self.inner.tracker.spawn(
            async move {
                let mut ticker = tokio::time::interval(every.max(Duration::from_millis(1)));
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = ticker.tick() => {}
                    }
                    this.run(name, scope, every, work.clone()).await;
                }
            }
            .instrument(span),
        );
    }

    /// Runs a long-lived async task under the runner: it is joined at shutdown, and should
    /// end soon after [`Jobs::cancel_token`] is cancelled.
    pub fn spawn_loop<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let span = tracing::info_span!("task", task.name = name);
        self.inner.tracker.spawn(task.instrument(span));
    }

    /// Runs a long-lived blocking loop (a thread of the blocking pool) under the runner, with
    /// its tracing span: it is joined at shutdown, and should return soon after the token it
    /// is handed is cancelled (after finishing the work it has taken on).
    pub fn spawn_blocking_loop<F>(&self, name: String, task: F)
    where
        F: FnOnce(CancellationToken) + Send + 'static,
    {
        let span = tracing::info_span!("task", task.name = %name);
        let cancel = self.inner.cancel.clone();
        self.inner
            .tracker
            .spawn_blocking(move || span.in_scope(|| task(cancel)));
    }

    /// The token cancelled when shutdown starts.
    pub fn cancel_token(&self) -> CancellationToken {
        self.inner.cancel.clone()
    }

    /// Runs the registered job `name` once, now, on the calling thread (blocking: for the
    /// CLI and tests). Takes the job's lock like a scheduled run, but runs whether or not
    /// it is due (and does not move the shared schedule).
    ///
    /// # Errors
    /// When no such job is registered.
    pub fn run_now_blocking(&self, name: &str) -> anyhow::Result<JobOutcome> {
        let (name, scope, work) = {
            let jobs = self.inner.jobs.lock().expect("jobs lock");
            let (name, job) = jobs
                .get_key_value(name)
                .ok_or_else(|| anyhow::anyhow!("no background job named `{name}`"))?;
            (*name, job.scope, job.work.clone())
        };
        Ok(self.execute(name, scope, None, &*work))
    }

    /// Cancels every job and task and waits (at most `timeout`) for them to finish.
    /// Returns false when some were still running at the deadline.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        self.inner.cancel.cancel();
        self.inner.tracker.close();
        let joined = tokio::time::timeout(timeout, self.inner.tracker.wait())
            .await
            .is_ok();
        if !joined {
            tracing::error!(
                jobs.running = self.inner.tracker.len(),
                "background jobs still running at the end of the shutdown budget"
            );
        }
        joined
    }

    /// One scheduled run, on the blocking pool; a panic is reported as a failure.
    async fn run(&self, name: &'static str, scope: RunScope, every: Duration, work: Arc<Work>) {
        let this = self.clone();
        let span = tracing::Span::current();
        let joined = tokio::task::spawn_blocking(move || {
            span.in_scope(|| this.execute(name, scope, Some(every), &*work))
        })
        .await;
        if let Err(err) = joined {
            tracing::error!(error.cause = %err, "background job panicked");
            self.inner.metrics.record(name, JobOutcome::Failed, None);
        }
    }

    /// Takes the job's lock when it needs one, claims the run when it is scheduled
    /// (`every`), runs the work and records the outcome.
    fn execute(
        &self,
        name: &'static str,
        scope: RunScope,
        every: Option<Duration>,
        work: &Work,
    ) -> JobOutcome {
        let started = Instant::now();
        let _lock = match scope {
            RunScope::EveryProcess => None,
            RunScope::OnceAcrossProcesses => match locks::try_job_lock(&self.inner.db, name) {
                Ok(Some(lock)) => Some(lock),
                Ok(None) => {
                    tracing::debug!("another process runs this job now; tick skipped");
                    self.inner.metrics.record(name, JobOutcome::Skipped, None);
                    return JobOutcome::Skipped;
                }
                Err(err) => {
                    tracing::warn!(error.cause = %crate::telemetry::Chain(&err), "background job could not take its lock");
                    self.inner
                        .metrics
                        .record(name, JobOutcome::Failed, Some(started.elapsed()));
                    return JobOutcome::Failed;
                }
            },
        };
        if let (RunScope::OnceAcrossProcesses, Backend::Postgres, Some(every)) =
            (scope, self.inner.db.backend(), every)
        {
            match self.claim(name, every) {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!("another process ran this job less than an interval ago");
                    self.inner.metrics.record(name, JobOutcome::NotDue, None);
                    return JobOutcome::NotDue;
                }
                Err(err) => {
                    tracing::warn!(error.cause = %err, "background job could not claim its run");
                    self.inner
                        .metrics
                        .record(name, JobOutcome::Failed, Some(started.elapsed()));
                    return JobOutcome::Failed;
                }
            }
        }
        let context = JobContext {
            db: &self.inner.db,
            cancel: &self.inner.cancel,
        };
        let outcome = match work(&context) {
            Ok(()) => JobOutcome::Ok,
            Err(err) => {
                tracing::warn!(error.cause = format!("{err:#}"), "background job failed");
                JobOutcome::Failed
            }
        };
        self.inner
            .metrics
            .record(name, outcome, Some(started.elapsed()));
        outcome
    }

    /// Claims this interval's run in the shared schedule. The gap asked for is nine tenths
    /// of the interval, so that timer jitter in the process that ran it last does not hand
    /// every other tick to another process.
    fn claim(&self, name: &str, every: Duration) -> Result<bool, crate::db::DbError> {
        let min_gap_ms = i64::try_from(every.as_millis() * 9 / 10).unwrap_or(i64::MAX);
        job_schedule::claim_run(&mut self.inner.db.get()?, name, min_gap_ms)
    }
}
