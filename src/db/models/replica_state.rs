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
    /// Seconds behind the primary: 0 when everything received is replayed, else the age of
    /// the last replayed transaction; `None` on a server that is not a standby.
    #[diesel(sql_type = Nullable<Double>)]
    pub lag: Option<f64>,
}

const STATE_SQL: &str = "SELECT pg_is_in_recovery() AS standby, \
     CASE WHEN NOT pg_is_in_recovery() THEN NULL \
          WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0.0 \
          ELSE COALESCE(EXTRACT(EPOCH FROM (clock_timestamp() - pg_last_xact_replay_timestamp())), 0.0)::float8 \
     END AS lag";

/// The server's state; on SQLite (never a replica) an error.
pub fn read(conn: &mut AnyConnection) -> Result<ReplicaState, DbError> {
    match conn {
        AnyConnection::Postgres(c) => Ok(diesel::sql_query(STATE_SQL).get_result(&mut **c)?),
        AnyConnection::Sqlite(_) => Err(DbError::Unsupported("a read replica must be PostgreSQL")),
    }
}
