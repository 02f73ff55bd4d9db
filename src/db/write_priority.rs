//! In-process priority for the ingest writers on SQLite's one write lock.
//!
//! SQLite lets one connection write at a time. A connection that finds the lock taken sleeps
//! in its busy handler (1, 2, 5, … up to 100 ms between tries) and tries again. A background
//! job that commits short transactions back to back, such as the insights rollup catching up
//! (~10 ms per submission), takes the lock again in the gap between two of them, so a waiting
//! ingest writer can sleep for seconds. Measured: full payloads posted to a restarted server
//! while its rollup caught up on 1,000 submissions waited up to 8 s (p99 8,062 ms;
//! docs/benchmarks-ingest.md). Ingest writers announce themselves here, and the background
//! loops of back-to-back write transactions (the rollup, the metric merge, retention) call
//! [`WritePriority::yield_to_writers`], through `Db::yield_to_ingest`, between them. That wait is bounded,
//! so a background job still progresses under constant ingest.
//!
//! PostgreSQL has no store-wide write lock (rows lock on their own), so [`crate::db::Db`]
//! only asks on SQLite.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often a yielding job looks whether the announced writers are done.
const POLL: Duration = Duration::from_millis(1);

/// Counts the ingest writers that want or hold the write lock.
#[derive(Debug, Default)]
pub(crate) struct WritePriority {
    announced: AtomicUsize,
}

/// Held by an ingest writer from before its transaction until after its commit.
#[must_use = "the announcement ends when the ticket is dropped"]
pub(crate) struct PriorityTicket<'a>(&'a WritePriority);

impl WritePriority {
    /// Announces a writer until the ticket is dropped.
    pub(crate) fn announce(&self) -> PriorityTicket<'_> {
        self.announced.fetch_add(1, Ordering::AcqRel);
        PriorityTicket(self)
    }

    /// Waits while a writer is announced, at most `max`; returns how long it waited.
    pub(crate) fn yield_to_writers(&self, max: Duration) -> Duration {
        let started = Instant::now();
        while self.announced.load(Ordering::Acquire) > 0 && started.elapsed() < max {
            std::thread::sleep(POLL);
        }
        started.elapsed()
    }
}

impl Drop for PriorityTicket<'_> {
    fn drop(&mut self) {
        self.0.announced.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_job_waits_for_announced_writers_within_its_bound() {
        let priority = Arc::new(WritePriority::default());
        // Nobody announced: no wait.
        assert!(priority.yield_to_writers(Duration::from_secs(5)) < Duration::from_secs(1));
        // A writer holds its ticket for 50 ms: the job waits at least that long, and stops
        // waiting once it is dropped, well before its bound.
        let ticket_held = Arc::new(std::sync::Barrier::new(2));
        let writer = {
            let (priority, ticket_held) = (priority.clone(), ticket_held.clone());
            std::thread::spawn(move || {
                let _ticket = priority.announce();
                ticket_held.wait();
                std::thread::sleep(Duration::from_millis(50));
            })
        };
        ticket_held.wait();
        let waited = priority.yield_to_writers(Duration::from_secs(30));
        writer.join().unwrap();
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        assert!(waited < Duration::from_secs(30), "{waited:?}");
        // A writer that never leaves: the job goes on after its bound.
        let _ticket = priority.announce();
        let waited = priority.yield_to_writers(Duration::from_millis(20));
        assert!(waited >= Duration::from_millis(20), "{waited:?}");
    }

    /// On a real SQLite file: a job commits 10 ms write transactions back to back for 3 s,
    /// yielding between them as the rollup does; an announced writer's transaction must not
    /// wait for the job to end. Without the yield it waited for (nearly) all of it.
    #[test]
    fn an_announced_writer_is_not_starved_by_back_to_back_transactions() {
        use crate::db::{AnyConnection, Db};
        use diesel::connection::SimpleConnection;
        use secrecy::SecretString;

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&crate::config::StoreSettings {
            url: SecretString::from(url),
            pool_size: std::num::NonZeroU32::new(4).unwrap(),
            timeout: Duration::from_secs(30),
            read_url: None,
            read_max_lag: Duration::from_secs(2),
            allow_newer_schema: false,
        })
        .unwrap();
        let exec = |conn: &mut AnyConnection, sql: &str| {
            crate::with_conn!(conn, |c| c.batch_execute(sql)).unwrap();
        };
        exec(&mut db.get().unwrap(), "CREATE TABLE t (n INTEGER)");
        let job = {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut conn = db.get().unwrap();
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(3) {
                    db.yield_to_ingest();
                    exec(&mut conn, "BEGIN IMMEDIATE; INSERT INTO t VALUES (1)");
                    std::thread::sleep(Duration::from_millis(10));
                    exec(&mut conn, "COMMIT");
                }
            })
        };
        std::thread::sleep(Duration::from_millis(300)); // the job is in its loop
        let mut conn = db.get().unwrap();
        let asked = Instant::now();
        {
            let _first = db.announce_ingest_write();
            exec(
                &mut conn,
                "BEGIN IMMEDIATE; INSERT INTO t VALUES (2); COMMIT",
            );
        }
        let waited = asked.elapsed();
        job.join().unwrap();
        assert!(waited < Duration::from_millis(1500), "waited {waited:?}");
    }
}
