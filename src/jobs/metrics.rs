//! `/metrics` for background jobs: runs by outcome, last run and last success, duration.

use std::time::Duration;

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use super::JobOutcome;

/// The job metrics, labelled by `job`.
#[derive(Clone)]
pub struct JobMetrics {
    runs: IntCounterVec,
    last_run: GaugeVec,
    last_success: GaugeVec,
    last_duration: GaugeVec,
    last_outcome: IntGaugeVec,
    interval: GaugeVec,
    duration: HistogramVec,
}

impl JobMetrics {
    /// Creates the metrics and registers them.
    ///
    /// # Panics
    /// If they are registered twice in one registry (a bug in start-up).
    pub fn register(registry: &Registry) -> JobMetrics {
        let runs = IntCounterVec::new(
            Opts::new(
                "version_app_job_runs_total",
                "Runs of background jobs, by job and outcome (skipped: another process held the job's lock)",
            ),
            &["job", "outcome"],
        )
        .expect("valid metric");
        let last_run = GaugeVec::new(
            Opts::new(
                "version_app_job_last_run_timestamp_seconds",
                "Unix time at which each background job last ran in this process (skips excluded)",
            ),
            &["job"],
        )
        .expect("valid metric");
        let last_success = GaugeVec::new(
            Opts::new(
                "version_app_job_last_success_timestamp_seconds",
                "Unix time of each background job's last successful run in this process",
            ),
            &["job"],
        )
        .expect("valid metric");
        let last_duration = GaugeVec::new(
            Opts::new(
                "version_app_job_last_duration_seconds",
                "How long the last run of each background job took in this process",
            ),
            &["job"],
        )
        .expect("valid metric");
        let last_outcome = IntGaugeVec::new(
            Opts::new(
                "version_app_job_last_outcome",
                "1 for the outcome (ok, failed, skipped, not_due) of each job's last tick in this process, 0 for the others",
            ),
            &["job", "outcome"],
        )
        .expect("valid metric");
        let interval = GaugeVec::new(
            Opts::new(
                "version_app_job_interval_seconds",
                "How often each background job is scheduled (once-across-processes jobs: once per interval over all processes)",
            ),
            &["job"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "version_app_job_duration_seconds",
                "How long each run of a background job took",
            )
            .buckets(vec![
                0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0,
            ]),
            &["job"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(runs.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(last_run.clone()),
            Box::new(last_success.clone()),
            Box::new(last_duration.clone()),
            Box::new(last_outcome.clone()),
            Box::new(interval.clone()),
            Box::new(duration.clone()),
        ] {
            registry
                .register(collector)
                .expect("job metric names are unique");
        }
        JobMetrics {
            runs,
            last_run,
            last_success,
            last_duration,
            last_outcome,
            interval,
            duration,
        }
    }

    /// Publishes a job's schedule.
    pub fn set_interval(&self, job: &str, every: Duration) {
        self.interval
            .with_label_values(&[job])
            .set(every.as_secs_f64());
    }

    /// Records one run; `took` is `None` when the work did not start (a skip, a panic).
    pub fn record(&self, job: &str, outcome: JobOutcome, took: Option<Duration>) {
        self.runs.with_label_values(&[job, outcome.label()]).inc();
        for each in [
            JobOutcome::Ok,
            JobOutcome::Failed,
            JobOutcome::Skipped,
            JobOutcome::NotDue,
        ] {
            self.last_outcome
                .with_label_values(&[job, each.label()])
                .set(i64::from(each == outcome));
        }
        if matches!(outcome, JobOutcome::Skipped | JobOutcome::NotDue) {
            return;
        }
        let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
        self.last_run.with_label_values(&[job]).set(now);
        if outcome == JobOutcome::Ok {
            self.last_success.with_label_values(&[job]).set(now);
        }
        if let Some(took) = took {
            self.last_duration
                .with_label_values(&[job])
                .set(took.as_secs_f64());
            self.duration
                .with_label_values(&[job])
                .observe(took.as_secs_f64());
        }
    }
}
