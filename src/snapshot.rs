//! The in-memory release snapshot that every verdict reads.
//!
//! Readers get an `Arc` to an immutable [`ReleaseTable`] without locking (`arc-swap`);
//! writers rebuild a whole new table and swap it in. Changes made by other processes
//! (a second app instance, the CLI) are noticed by a cheap periodic fingerprint query.

use arc_swap::ArcSwap;
use chrono::NaiveDateTime;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

use crate::db::models::releases;
use crate::db::{AnyConnection, Db, DbError};
use crate::domain::verdict::ReleaseTable;

type Marker = (i64, Option<NaiveDateTime>);

/// Shared handle to the current release table.
#[derive(Clone)]
pub struct Releases {
    current: Arc<ArcSwap<ReleaseTable>>,
    marker: Arc<Mutex<Option<Marker>>>,
    generation: Arc<watch::Sender<u64>>,
}

impl Releases {
    /// Starts with an empty table (replaced by the first load).
    pub fn empty() -> Releases {
        let (sender, _) = watch::channel(0);
        Releases {
            current: Arc::new(ArcSwap::from_pointee(ReleaseTable::default())),
            marker: Arc::new(Mutex::new(None)),
            generation: Arc::new(sender),
        }
    }

    /// The table as of now.
    pub fn current(&self) -> Arc<ReleaseTable> {
        self.current.load_full()
    }

    /// The table as of now, without touching its reference count: cheaper on the hot path
    /// (no cache line shared by every worker). Do not hold the guard across an `.await`.
    pub fn load(&self) -> arc_swap::Guard<Arc<ReleaseTable>> {
        self.current.load()
    }

    /// Notified with a new generation number every time the table is swapped; lets other
    /// parts (e.g. materialised verdicts) follow release changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Reloads from the store if it changed (or unconditionally with `force`).
    /// Blocking: call off the async workers. Returns true when the table was swapped.
    pub fn reload_blocking(&self, conn: &mut AnyConnection, force: bool) -> Result<bool, DbError> {
        let marker = releases::change_marker(conn)?;
        {
            let last = self.marker.lock().expect("marker lock");
            if !force && *last == Some(marker) {
                return Ok(false);
            }
        }
        let table = ReleaseTable::new(releases::list_domain(conn)?);
        let count = table.len();
        self.current.store(Arc::new(table));
        *self.marker.lock().expect("marker lock") = Some(marker);
        self.generation.send_modify(|g| *g += 1);
        tracing::info!(releases.count = count, "release snapshot loaded");
        Ok(true)
    }

    /// Reloads unconditionally, after this process changed the table.
    pub async fn reload(&self, db: &Db) -> Result<(), DbError> {
        let this = self.clone();
        db.run(move |conn| this.reload_blocking(conn, true).map(|_| ()))
            .await
    }
}
