//! `job_schedule`: when each once-across-processes job last started, so that several
//! processes on one store run it once per interval rather than once each.
//!
//! Time is the store's clock, not each node's, so that nodes whose clocks disagree still
//! agree on whether a job is due.

use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, RunQueryDsl};

use crate::db::{AnyConnection, DbError};

/// Milliseconds since the Unix epoch by the store's clock.
const PG_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
const SQLITE_NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

fn claim_sql(now: &str) -> String {
    format!(
        "INSERT INTO job_schedule (job, last_started_ms, runs) VALUES ($1, {now}, 1) \
         ON CONFLICT (job) DO UPDATE SET last_started_ms = excluded.last_started_ms, \
         runs = job_schedule.runs + 1 \
         WHERE job_schedule.last_started_ms <= excluded.last_started_ms - $2"
    )
}

/// Claims the next run of `job` when it last started at least `min_gap_ms` ago (or never):
/// one atomic upsert, so of several processes asking at once exactly one gets `true`.
pub fn claim_run(conn: &mut AnyConnection, job: &str, min_gap_ms: i64) -> Result<bool, DbError> {
    let changed = match conn {
        AnyConnection::Sqlite(c) => diesel::sql_query(claim_sql(SQLITE_NOW_MS))
            .bind::<Text, _>(job)
            .bind::<BigInt, _>(min_gap_ms)
            .execute(&mut **c)?,
        AnyConnection::Postgres(c) => diesel::sql_query(claim_sql(PG_NOW_MS))
            .bind::<Text, _>(job)
            .bind::<BigInt, _>(min_gap_ms)
            .execute(&mut **c)?,
    };
    Ok(changed == 1)
}

#[derive(QueryableByName)]
struct Runs {
    #[diesel(sql_type = BigInt)]
    runs: i64,
}

/// Runs of `job` started so far, all processes together (0 when it never ran).
pub fn runs(conn: &mut AnyConnection, job: &str) -> Result<i64, DbError> {
    let sql = "SELECT runs FROM job_schedule WHERE job = $1";
    let found: Vec<Runs> = crate::with_conn!(conn, |c| diesel::sql_query(sql)
        .bind::<Text, _>(job)
        .load(c))?;
    Ok(found.first().map_or(0, |r| r.runs))
}
