//! `/metrics` for background jobs: runs by outcome, last run and last success, duration.

use std::time::Duration;

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use super::JobOutcome;

/// The job metrics, labelled by `job`.
#[derive(Clone)]
pub struct JobMetrics {
    runs: IntCounterVec,
    last_run: GaugeVec,
    last_success: GaugeVec,
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
            duration,
        }
    }

    /// Records one run; `took` is `None` when the work did not start (a skip, a panic).
    pub fn record(&self, job: &str, outcome: JobOutcome, took: Option<Duration>) {
        self.runs.with_label_values(&[job, outcome.label()]).inc();
        if outcome == JobOutcome::Skipped {
            return;
        }
        let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
        self.last_run.with_label_values(&[job]).set(now);
        if outcome == JobOutcome::Ok {
            self.last_success.with_label_values(&[job]).set(now);
        }
        if let Some(took) = took {
            self.duration
                .with_label_values(&[job])
                .observe(took.as_secs_f64());
        }
    }
}
