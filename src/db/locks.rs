//! Locks that make a background job run in one process at a time across a shared store.
//!
//! PostgreSQL: a session-level advisory lock held on a connection of its own, opened for the
//! run and closed after it. A dedicated connection rather than a pooled one, so that the lock
//! can never go back into the pool still held, and so that a process that dies (or loses its
//! connection) releases the lock with it and another process takes the job over.
//! SQLite: one process per store file, so there is nothing to exclude.

use diesel::sql_types::{BigInt, Bool};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use sha2::{Digest, Sha256};

use crate::config::Backend;
use crate::db::{Db, DbError};

/// Held while a job runs; dropping it releases the lock.
pub struct JobLock {
    /// The connection holding the advisory lock (`None` on SQLite).
    _held: Option<PgConnection>,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// The advisory-lock key of a job: a stable hash of its name, so every version of the
/// application agrees on it.
pub fn job_lock_key(name: &str) -> i64 {
    let digest = Sha256::digest(format!("version-app job:{name}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// The advisory-lock key held while a process migrates the store, so that nodes starting
/// together migrate one after another.
pub fn migration_lock_key() -> i64 {
    job_lock_key("\u{0}schema migration")
}

/// Takes the job's lock if no other process holds it: `Ok(None)` means another process is
/// running the job now.
pub fn try_job_lock(db: &Db, name: &str) -> Result<Option<JobLock>, DbError> {
    match db.backend() {
        Backend::Sqlite => Ok(Some(JobLock { _held: None })),
        Backend::Postgres => {
            let mut conn = PgConnection::establish(db.url())?;
            let Locked { locked } = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
                .bind::<BigInt, _>(job_lock_key(name))
                .get_result(&mut conn)?;
            Ok(locked.then_some(JobLock { _held: Some(conn) }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(job_lock_key("rollups"), job_lock_key("rollups"));
        assert_ne!(job_lock_key("rollups"), job_lock_key("retention"));
    }
}
