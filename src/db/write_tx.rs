//! Write transactions that queue instead of failing (issue 8, defect 8).
//!
//! SQLite starts a plain `BEGIN` as a reader; the first write then has to upgrade the lock,
//! and when another process holds the write lock that upgrade fails at once with "database is
//! locked", without waiting for `busy_timeout` (waiting could deadlock). Beginning every write
//! transaction as `BEGIN IMMEDIATE` takes the write lock up front, where `busy_timeout`
//! applies, so two processes on one file take turns. PostgreSQL has no such upgrade: a plain
//! transaction.

use diesel::{Connection, PgConnection, SqliteConnection};

/// `write_transaction`: the transaction every write in `db::models` uses.
pub trait WriteTransaction: Connection {
    /// Runs `f` in a transaction that holds the write lock from its start.
    fn write_transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>;
}

impl WriteTransaction for SqliteConnection {
    fn write_transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        self.immediate_transaction(f)
    }
}

impl WriteTransaction for PgConnection {
    fn write_transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        self.transaction(f)
    }
}
