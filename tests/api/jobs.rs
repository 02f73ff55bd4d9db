//! The background-job runner: metrics, one run at a time across processes, panics, shutdown.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use version_app::config::Settings;
use version_app::db::Db;
use version_app::jobs::{JobOutcome, Jobs, RunScope};
use version_app::metrics::Metrics;

use crate::helpers::{test_settings, TestApp, TestDb};

fn store(db: &TestDb) -> Db {
    let settings: Settings = test_settings(db);
    Db::connect(&settings.store).expect("store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_jobs_report_their_runs_in_metrics() {
    let app = TestApp::spawn().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = app.get("/metrics").await.text().await.unwrap();
        let ran = |job: &str| {
            text.contains(&format!(
                "version_app_job_runs_total{{job=\"{job}\",outcome=\"ok\"}}"
            )) && text.contains(&format!(
                "version_app_job_last_success_timestamp_seconds{{job=\"{job}\"}}"
            ))
        };
        if ran("release_refresh") && ran("devops_leaders") {
            assert!(text.contains("version_app_job_duration_seconds_bucket"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "jobs never reported a run:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_shared_state_runs_in_one_process_at_a_time() {
    let db = TestDb::new();
    let postgres = db.is_postgres();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    // Two runners on one store stand for two processes: on PostgreSQL each takes the lock on
    // a connection of its own, exactly as two processes do.
    let runners: Vec<Jobs> = (0..2)
        .map(|_| {
            let jobs = Jobs::new(store(&db), &Metrics::new());
            let (running, most) = (running.clone(), most.clone());
            jobs.every(
                "exclusive_test_job",
                Duration::from_secs(3600),
                RunScope::OnceAcrossProcesses,
                move |_| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(400));
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                },
            );
            jobs
        })
        .collect();
    // Let the scheduled first runs pass, then race two explicit runs.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    most.store(0, Ordering::SeqCst);
    let outcomes: Vec<JobOutcome> = runners
        .iter()
        .map(|jobs| {
            let jobs = jobs.clone();
            std::thread::spawn(move || jobs.run_now_blocking("exclusive_test_job").unwrap())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    if postgres {
        let mut sorted = outcomes.clone();
        sorted.sort_by_key(|o| o.label());
        assert_eq!(
            sorted,
            [JobOutcome::Ok, JobOutcome::Skipped],
            "{outcomes:?}"
        );
        assert_eq!(most.load(Ordering::SeqCst), 1, "the job ran twice at once");
    } else {
        // One process per SQLite store: nothing to exclude, both runs happen.
        assert_eq!(outcomes, [JobOutcome::Ok, JobOutcome::Ok]);
    }
    // The lock is released after the run: the job runs again.
    assert_eq!(
        runners[0].run_now_blocking("exclusive_test_job").unwrap(),
        JobOutcome::Ok
    );
    for jobs in &runners {
        assert!(jobs.shutdown(Duration::from_secs(5)).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_is_counted_and_runs_again() {
    let db = TestDb::new();
    let metrics = Metrics::new();
    let jobs = Jobs::new(store(&db), &metrics);
    let runs = Arc::new(AtomicUsize::new(0));
    {
        let runs = runs.clone();
        jobs.every(
            "panicky",
            Duration::from_millis(50),
            RunScope::EveryProcess,
            move |_| {
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("first run fails");
                }
                anyhow::bail!("then it reports an error")
            },
        );
    }
    // A panic's backtrace can take a while to print on a loaded machine: poll, don't guess.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while runs.load(Ordering::SeqCst) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the job stopped after a panic"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The third run's outcome is recorded just after it returns.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = metrics.render();
    let failed = text
        .lines()
        .find(|l| l.starts_with("version_app_job_runs_total{job=\"panicky\",outcome=\"failed\"}"))
        .unwrap_or_else(|| panic!("no failure count:\n{text}"));
    let count: f64 = failed.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{failed}");
    assert!(jobs.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_and_joins_every_task() {
    let db = TestDb::new();
    let jobs = Jobs::new(store(&db), &Metrics::new());
    let finished = Arc::new(AtomicBool::new(false));
    {
        let (cancel, finished) = (jobs.cancel_token(), finished.clone());
        jobs.spawn_loop("waits_for_cancel", async move {
            cancel.cancelled().await;
            // Work that must be done before the process exits (like the last check flush).
            tokio::time::sleep(Duration::from_millis(200)).await;
            finished.store(true, Ordering::SeqCst);
        });
    }
    jobs.every(
        "periodic",
        Duration::from_millis(20),
        RunScope::EveryProcess,
        |_| Ok(()),
    );
    assert!(jobs.shutdown(Duration::from_secs(5)).await);
    assert!(
        finished.load(Ordering::SeqCst),
        "shutdown did not wait for the task"
    );
    assert!(jobs.run_now_blocking("nonexistent").is_err());
}

/// Two runners on one PostgreSQL store with the same schedule run a once-across-processes
/// job once per interval between them, not once each (the lock alone would only stop two
/// runs overlapping). The shared count in `job_schedule` agrees with the runners' metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_shared_state_runs_once_per_interval_across_processes() {
    let db = TestDb::new();
    let postgres = db.is_postgres();
    let first = store(&db);
    first.migrate().expect("migrate");
    let runs = Arc::new(AtomicUsize::new(0));
    let every = Duration::from_millis(400);
    let metrics: Vec<Metrics> = (0..2).map(|_| Metrics::new()).collect();
    let runners: Vec<Jobs> = metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let jobs = Jobs::new(if i == 0 { first.clone() } else { store(&db) }, m);
            let runs = runs.clone();
            jobs.every(
                "interval_test_job",
                every,
                RunScope::OnceAcrossProcesses,
                move |_| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                },
            );
            jobs
        })
        .collect();
    let window = Duration::from_millis(4000);
    tokio::time::sleep(window).await;
    for jobs in &runners {
        assert!(jobs.shutdown(Duration::from_secs(5)).await);
    }
    let total = runs.load(Ordering::SeqCst);
    let count = |text: &str, outcome: &str| -> usize {
        let prefix = format!(
            "version_app_job_runs_total{{job=\"interval_test_job\",outcome=\"{outcome}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    let texts: Vec<String> = metrics.iter().map(Metrics::render).collect();
    let ok: usize = texts.iter().map(|t| count(t, "ok")).sum();
    assert_eq!(ok, total, "metrics count every run");
    let per_interval = (window.as_millis() / every.as_millis()) as usize; // 10
    if postgres {
        // Runs are at least 0.9 intervals apart by the store's clock: at most 12 in 4 s.
        let most = (window.as_millis() * 10 / (every.as_millis() * 9)) as usize + 1;
        assert!(
            total <= most && total + 3 >= per_interval,
            "{total} runs in {window:?} at one per {every:?} (two runners)"
        );
        // A tick is left to the other runner in one of two ways: its run was already claimed
        // for this interval (`not_due`), or it was running right then (`skipped`, lock held).
        // Which one depends on how the two runners' ticks fall, so either counts.
        let left: usize = texts
            .iter()
            .map(|t| count(t, "not_due") + count(t, "skipped"))
            .sum();
        assert!(left >= 1, "no tick was left to the other runner");
        let shared = version_app::db::models::job_schedule::runs(
            &mut first.get().unwrap(),
            "interval_test_job",
        )
        .unwrap();
        assert_eq!(shared, total as i64, "job_schedule counts the runs");
        assert!(
            texts[0].contains("version_app_job_interval_seconds{job=\"interval_test_job\"} 0.4")
        );
    } else {
        // One process per SQLite store: nothing changes, each runner runs every tick.
        assert!(total >= 2 * per_interval - 4, "{total}");
    }
}
