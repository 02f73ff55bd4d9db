//! A PostgreSQL server's replication state, for routing analyst reads (`read_replica`).

use diesel::sql_types::{Bool, Double, Nullable};
use diesel::{QueryableByName, RunQueryDsl};

use crate::db::{AnyConnection, DbError};

/// Whether a server is a standby and how far it lags.
#[derive(Debug, QueryableByName)]
pub struct ReplicaState {
    /// `pg_is_in_recovery()`.
    #[diesel(sql_type = Bool)]
    pub standby: bool,
    /// Seconds behind the primary: 0 when it streams from the primary and has replayed
    /// everything received, else the age of the last replayed transaction; `None` on a server
    /// that is not a standby, and on a standby whose lag is unknown (not streaming and no
    /// transaction replayed since it started).
    #[diesel(sql_type = Nullable<Double>)]
    pub lag: Option<f64>,
}

// "Everything received is replayed" only means "up to date" while a WAL receiver is connected
// (`pg_stat_wal_receiver` has a row, whatever the role's privileges): a standby cut off from
// its primary has received nothing new, and would otherwise read as 0 s behind for ever.
const STATE_SQL: &str = "SELECT pg_is_in_recovery() AS standby, \
     CASE WHEN NOT pg_is_in_recovery() THEN NULL \
          WHEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver) \
               AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0.0 \
          ELSE EXTRACT(EPOCH FROM (clock_timestamp() - pg_last_xact_replay_timestamp()))::float8 \
     END AS lag";

/// The server's state; on SQLite (never a replica) an error.
pub fn read(conn: &mut AnyConnection) -> Result<ReplicaState, DbError> {
    match conn {
        AnyConnection::Postgres(c) => Ok(diesel::sql_query(STATE_SQL).get_result(&mut **c)?),
        AnyConnection::Sqlite(_) => Err(DbError::Unsupported("a read replica must be PostgreSQL")),
    }
}
