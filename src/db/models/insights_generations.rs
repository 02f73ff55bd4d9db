//! Change counters behind the insights views' per-period cache (`insights::period_cache`).
//!
//! A write that changes what a period's view shows adds 1 to the counter of its (source,
//! kind, period) in the same transaction; a write that may touch any period adds 1 to the
//! `all` counter. Readers sum the counters (see `domain::insights::generations`), and a sum
//! only grows, so any committed change is seen by every process whatever the commit order.

use chrono::NaiveDate;
use diesel::prelude::*;

use crate::db::schema::insights_generations;
use crate::db::{AnyConnection, DbError};
use crate::with_conn;

/// Source of the rollup's period rows (Service Ping).
pub(crate) const PINGS: &str = "pings";
/// Source of the version-check days.
pub(crate) const CHECKS: &str = "checks";
/// Source and kind of the counter every period depends on.
pub(crate) const ALL: &str = "all";

/// The `(kind, start)` of the counter every period depends on.
pub(crate) fn all_key() -> (&'static str, NaiveDate) {
    (
        ALL,
        NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date"),
    )
}

/// Adds 1 to each `(kind, start)` counter of `source`, one statement, keys in order (so two
/// transactions bumping the same counters take their row locks in the same order).
/// Used inside a `with_conn!` arm, where `$c` is the store's own connection.
macro_rules! bump_generations {
    ($c:ident, $source:expr, $periods:expr) => {{
        use diesel::prelude::*;
        // Full paths, no `use … as`: an item declared here would also rename the caller's
        // paths in `$source` and `$periods` (macro hygiene does not cover items).
        let source: &str = $source;
        let mut keys: Vec<(&str, chrono::NaiveDate)> = $periods;
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            Ok(0)
        } else {
            let rows: Vec<_> = keys
                .iter()
                .map(|(kind, start)| {
                    (
                        $crate::db::schema::insights_generations::source.eq(source),
                        $crate::db::schema::insights_generations::period_kind.eq(*kind),
                        $crate::db::schema::insights_generations::period_start.eq(*start),
                        $crate::db::schema::insights_generations::generation.eq(1_i64),
                    )
                })
                .collect();
            diesel::insert_into($crate::db::schema::insights_generations::table)
                .values(rows)
                .on_conflict((
                    $crate::db::schema::insights_generations::source,
                    $crate::db::schema::insights_generations::period_kind,
                    $crate::db::schema::insights_generations::period_start,
                ))
                .do_update()
                .set(
                    $crate::db::schema::insights_generations::generation
                        .eq($crate::db::schema::insights_generations::generation + 1_i64),
                )
                .execute($c)
        }
    }};
}
pub(crate) use bump_generations;

/// Adds 1 to each `(kind, start)` counter of `source`.
pub(crate) fn bump(
    conn: &mut AnyConnection,
    source: &str,
    periods: Vec<(&str, NaiveDate)>,
) -> Result<(), DbError> {
    with_conn!(conn, |c| bump_generations!(c, source, periods.clone()))?;
    Ok(())
}

/// Adds 1 to the counter every period depends on (a change that may touch any period:
/// a rebuild, retention, an erasure).
pub(crate) fn bump_all(conn: &mut AnyConnection) -> Result<(), DbError> {
    bump(conn, ALL, vec![all_key()])
}

/// The counters of `kind` from `sources`, `(period_start, generation)`, and the sum of the
/// `all` counters.
pub(crate) fn list(
    conn: &mut AnyConnection,
    kind: &str,
    sources: &[&str],
) -> Result<(Vec<(NaiveDate, i64)>, i64), DbError> {
    let (each, all) = list_each(conn, kind, sources)?;
    Ok((each.concat(), all))
}

/// One source's counters: `(period_start, generation)`.
pub(crate) type Counters = Vec<(NaiveDate, i64)>;

/// The counters of `kind` of each of `sources` apart (in the order given), and the sum of
/// the `all` counters: one read.
pub(crate) fn list_each(
    conn: &mut AnyConnection,
    kind: &str,
    sources: &[&str],
) -> Result<(Vec<Counters>, i64), DbError> {
    let rows: Vec<(String, String, NaiveDate, i64)> =
        with_conn!(conn, |c| insights_generations::table
            .filter(
                insights_generations::period_kind
                    .eq(kind)
                    .and(insights_generations::source.eq_any(sources))
                    .or(insights_generations::period_kind.eq(ALL)),
            )
            .select((
                insights_generations::source,
                insights_generations::period_kind,
                insights_generations::period_start,
                insights_generations::generation,
            ))
            .load(c))?;
    let mut all = 0;
    let mut each: Vec<Counters> = sources.iter().map(|_| Vec::new()).collect();
    for (source, row_kind, start, generation) in rows {
        if row_kind == ALL {
            all += generation;
        } else if let Some(at) = sources.iter().position(|s| *s == source) {
            each[at].push((start, generation));
        }
    }
    Ok((each, all))
}
