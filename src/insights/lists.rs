//! The window lists as the API and the pages ask for them: the backport report, the
//! vulnerable list and the licence lists, each computed by `insights::window` or
//! `insights::licences` from the latest reports the process keeps (`insights::window_cache`).

use chrono::NaiveDateTime;
use std::sync::Arc;

use super::licences::{self, LicenceList, LicenceRow};
use super::period_cache::PeriodCache;
use super::window::{self, AffectedRange, BackportRow, VulnerableRow};
use super::window_cache::Depends;
use crate::db::{AnyConnection, DbError};
use crate::domain::verdict::ReleaseTable;

/// The backport report over the last `days` days before `now`, with the what-if range.
pub(crate) fn backport(
    conn: &mut AnyConnection,
    cache: &PeriodCache,
    table: &Arc<ReleaseTable>,
    now: NaiveDateTime,
    window: (i64, bool),
    what_if: Option<&AffectedRange>,
) -> Result<Arc<Vec<BackportRow>>, DbError> {
    let key = match what_if {
        Some(r) => format!("backport|affected={}..={}", r.from, r.to),
        None => "backport".to_owned(),
    };
    cache.window.answer(
        conn,
        now,
        window,
        depends(key, Some(table), true),
        |_, reports| Ok(window::backport(reports, table, what_if)),
    )
}

/// The active hosts on a vulnerable version (critical ones only with `critical_only`).
pub(crate) fn vulnerable(
    conn: &mut AnyConnection,
    cache: &PeriodCache,
    table: &Arc<ReleaseTable>,
    now: NaiveDateTime,
    window: (i64, bool),
    critical_only: bool,
) -> Result<Arc<Vec<VulnerableRow>>, DbError> {
    let key = format!("vulnerable|critical={critical_only}");
    cache.window.answer(
        conn,
        now,
        window,
        depends(key, Some(table), true),
        |_, reports| Ok(window::vulnerable(reports, table, critical_only)),
    )
}

/// The licence lists `which` over the window (one read of the licence fields for all).
pub(crate) fn licence_lists(
    conn: &mut AnyConnection,
    cache: &PeriodCache,
    now: NaiveDateTime,
    window: (i64, bool),
    which: &[LicenceList],
) -> Result<Arc<Vec<Vec<LicenceRow>>>, DbError> {
    // What expires within N days, and in how many days, depends on today.
    let today = now.date();
    let key = format!("licences|{which:?}|today={today}");
    cache.window.answer(
        conn,
        now,
        window,
        depends(key, None, false),
        |c, reports| licences::lists(c, reports, today, which),
    )
}

fn depends(key: String, table: Option<&Arc<ReleaseTable>>, reads_checks: bool) -> Depends<'_> {
    Depends {
        key,
        table,
        reads_checks,
    }
}
