//! Each process keeps the window lists' latest reports (`insights::window`), and what the
//! backport report, the vulnerable list and the licence lists computed from them.
//!
//! Why: those lists need every installation's latest Service Ping and every host's latest
//! version check of the last N days, one row per report read, so their cost grows with the
//! fleet. But the latest reports change only when the rollup places a submission or a
//! version-check flush writes a day, and each such write adds 1 to its week's change counter
//! (`insights_generations`) in the same transaction. So a process keeps the latest report
//! of every installation and host since a week start, with the week counters it saw; at the
//! next ask it reads the counters (one small read) and reads again only the weeks whose
//! counter moved, folding their rows in (a report is kept where it is later than the one
//! held, so reading a week twice changes nothing). A change of the shared counter (rebuild,
//! retention, an erasure) or a window reaching further back reads everything again.
//!
//! A window starting later than the kept reports is exact by filtering: a kept report older
//! than the window's start was its installation's latest, so nothing of that installation
//! is in the window. What a list computed from one window is kept too, valid while the
//! kept reports are the same, the release table is the same, and the window's start has not
//! passed the oldest report it included ([`WindowEdge`]). Counters are read before rows, so
//! rows newer than their counters are read again at the next ask, never missed.

use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime};
use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::window::{latest_reports, LatestReports, WindowEdge};
use crate::db::models::insights_generations::{self as generations, CHECKS, PINGS};
use crate::db::models::insights_queries as q;
use crate::db::{AnyConnection, DbError};
use crate::domain::insights::generations::stale_periods;
use crate::domain::insights::periods::PeriodKind;
use crate::domain::verdict::ReleaseTable;

/// Most computed lists kept; past it, those of older reports go, then all.
const MAX_ANSWERS: usize = 64;

/// Tells kept states apart (a new number for every state of the kept reports).
static NEXT_EPOCH: AtomicU64 = AtomicU64::new(1);

/// The kept reports and the counters they were read under.
struct Held {
    /// The state of the kept Service Pings and of the kept version checks: a new number
    /// whenever either is read.
    ping_epoch: u64,
    check_epoch: u64,
    /// The shared counter's sum.
    all: i64,
    /// Monday of the first week held.
    from: NaiveDate,
    /// Week counters of the Service Ping rollup and of the version-check days, from `from` on.
    ping_weeks: BTreeMap<NaiveDate, i64>,
    check_weeks: BTreeMap<NaiveDate, i64>,
    /// Every installation's and host's latest report since `from` (internal ones too).
    reports: LatestReports,
}

/// A list computed from one window of the kept reports.
struct Answer {
    /// The kept state it was computed from (`ping_epoch`, `check_epoch` if it reads checks).
    epochs: (u64, Option<u64>),
    since: NaiveDateTime,
    edge: WindowEdge,
    table: Option<Arc<ReleaseTable>>,
    value: Arc<dyn Any + Send + Sync>,
}

/// What a kept answer depends on besides the window's reports.
pub(crate) struct Depends<'a> {
    /// The list and its filters (and today's date where it matters).
    pub(crate) key: String,
    /// The release table it applies, if any.
    pub(crate) table: Option<&'a Arc<ReleaseTable>>,
    /// Whether it reads the version checks (else the Service Pings only).
    pub(crate) reads_checks: bool,
}

/// The per-process cache of the window lists (`insights_cache_rows` 0 turns it off).
pub(crate) struct WindowCache {
    enabled: bool,
    held: Mutex<Option<Arc<Held>>>,
    answers: Mutex<HashMap<String, Answer>>,
    /// `version_app_insights_window_asks_total{outcome}`.
    answer_reused: IntCounter,
    reports_reused: IntCounter,
    weeks_read: IntCounter,
    read_in_full: IntCounter,
    /// `version_app_insights_window_reports`.
    size: IntGauge,
}

impl WindowCache {
    /// A cache (or, with `enabled` false, a pass-through), its metrics in `registry`.
    pub(crate) fn new(enabled: bool, registry: &Registry) -> WindowCache {
        let asks = IntCounterVec::new(
            Opts::new(
                "version_app_insights_window_asks_total",
                "Asks of the insights window lists (backport, vulnerable, licence lists), by outcome: answer_reused, reports_reused (kept reports, list computed), weeks_read (changed weeks read again) or read_in_full",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let size = IntGauge::new(
            "version_app_insights_window_reports",
            "Latest reports (installations and hosts) this process keeps for the insights window lists",
        )
        .expect("valid metric");
        for collector in [
            Box::new(asks.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(size.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        WindowCache {
            enabled,
            held: Mutex::new(None),
            answers: Mutex::new(HashMap::new()),
            answer_reused: asks.with_label_values(&["answer_reused"]),
            reports_reused: asks.with_label_values(&["reports_reused"]),
            weeks_read: asks.with_label_values(&["weeks_read"]),
            read_in_full: asks.with_label_values(&["read_in_full"]),
            size,
        }
    }

    /// What `compute` makes of the latest reports of the last `days` days before `now`,
    /// shared with the cache (a list of thousands of rows is not copied per ask).
    pub(crate) fn answer<T: Send + Sync + 'static>(
        &self,
        conn: &mut AnyConnection,
        now: NaiveDateTime,
        (days, include_internal): (i64, bool),
        depends: Depends<'_>,
        compute: impl FnOnce(&mut AnyConnection, &LatestReports) -> Result<T, DbError>,
    ) -> Result<Arc<T>, DbError> {
        let Depends {
            key,
            table,
            reads_checks,
        } = depends;
        if !self.enabled {
            let reports = latest_reports(conn, now, days, include_internal)?;
            return compute(conn, &reports).map(Arc::new);
        }
        let since = now - Duration::days(days);
        let (held, outcome) = self.held(conn, since)?;
        let key = format!("{key}|days={days}|internal={include_internal}");
        let epochs = (held.ping_epoch, reads_checks.then_some(held.check_epoch));
        if let Some(value) = self.kept_answer::<T>(&key, epochs, since, table) {
            self.answer_reused.inc();
            return Ok(value);
        }
        outcome.inc();
        let reports = held.reports.window(since, include_internal);
        let value = Arc::new(compute(conn, &reports)?);
        let mut answers = lock(&self.answers);
        if answers.len() >= MAX_ANSWERS {
            answers.retain(|_, a| a.epochs.0 == held.ping_epoch);
            if answers.len() >= MAX_ANSWERS {
                answers.clear();
            }
        }
        answers.insert(
            key,
            Answer {
                epochs,
                since,
                edge: reports.edge(reads_checks),
                table: table.cloned(),
                value: value.clone(),
            },
        );
        Ok(value)
    }

    fn kept_answer<T: Send + Sync + 'static>(
        &self,
        key: &str,
        epochs: (u64, Option<u64>),
        since: NaiveDateTime,
        table: Option<&Arc<ReleaseTable>>,
    ) -> Option<Arc<T>> {
        let answers = lock(&self.answers);
        let a = answers.get(key)?;
        let same_table = match (&a.table, table) {
            (Some(kept), Some(asked)) => Arc::ptr_eq(kept, asked),
            (None, None) => true,
            _ => false,
        };
        // A clock stepping back would give an earlier start, which may hold reports the kept
        // answer left out.
        let valid = a.epochs == epochs && since >= a.since && a.edge.holds(since) && same_table;
        if !valid {
            return None;
        }
        a.value.clone().downcast::<T>().ok()
    }

    /// The kept reports, brought up to date for a window from `since` on, and the counter
    /// of what that took.
    fn held(
        &self,
        conn: &mut AnyConnection,
        since: NaiveDateTime,
    ) -> Result<(Arc<Held>, &IntCounter), DbError> {
        let week = PeriodKind::Week.start_of(since.date());
        let (counters, all) =
            generations::list_each(conn, PeriodKind::Week.as_str(), &[PINGS, CHECKS])?;
        let (ping_counters, check_counters) = (&counters[0], &counters[1]);
        let kept = lock(&self.held).clone();
        let (next, outcome) = match kept.filter(|h| h.all == all && h.from <= week) {
            Some(h) => {
                let pings = stale_periods(&h.ping_weeks, ping_counters, h.from);
                let checks = stale_periods(&h.check_weeks, check_counters, h.from);
                if pings.is_empty() && checks.is_empty() {
                    return Ok((h, &self.reports_reused));
                }
                let mut reports = h.reports.clone();
                // A source whose weeks are unchanged keeps its state number, so the answers
                // that read it only stay valid.
                let next = Held {
                    ping_epoch: if pings.is_empty() {
                        h.ping_epoch
                    } else {
                        new_epoch()
                    },
                    check_epoch: if checks.is_empty() {
                        h.check_epoch
                    } else {
                        new_epoch()
                    },
                    ..held_at(h.from, all)
                };
                for start in pings {
                    let (from, before) = week_bounds(start);
                    reports.add(
                        q::list_window_submissions(conn, from, Some(before))?,
                        Vec::new(),
                    );
                }
                for start in checks {
                    let before = PeriodKind::Week.next_start(start);
                    reports.add(
                        Vec::new(),
                        q::list_window_checks(conn, start, Some(before))?,
                    );
                }
                (Held { reports, ..next }, &self.weeks_read)
            }
            None => {
                let reports = LatestReports::read(conn, week.and_time(NaiveTime::MIN))?;
                (
                    Held {
                        reports,
                        ..held_at(week, all)
                    },
                    &self.read_in_full,
                )
            }
        };
        let next = Arc::new(Held {
            ping_weeks: from_on(ping_counters, next.from),
            check_weeks: from_on(check_counters, next.from),
            ..next
        });
        self.size
            .set((next.reports.pings.len() + next.reports.checks.len()) as i64);
        *lock(&self.held) = Some(next.clone());
        Ok((next, outcome))
    }
}

/// A new state from `from` on under the shared counter `all` (counters and reports to fill).
fn held_at(from: NaiveDate, all: i64) -> Held {
    Held {
        ping_epoch: new_epoch(),
        check_epoch: new_epoch(),
        all,
        from,
        ping_weeks: BTreeMap::new(),
        check_weeks: BTreeMap::new(),
        reports: LatestReports::default(),
    }
}

fn new_epoch() -> u64 {
    NEXT_EPOCH.fetch_add(1, Ordering::Relaxed)
}

/// `[Monday 00:00, next Monday 00:00)` of the week starting `start`.
fn week_bounds(start: NaiveDate) -> (NaiveDateTime, NaiveDateTime) {
    (
        start.and_time(NaiveTime::MIN),
        PeriodKind::Week.next_start(start).and_time(NaiveTime::MIN),
    )
}

/// The counters of the weeks from `from` on.
fn from_on(counters: &[(NaiveDate, i64)], from: NaiveDate) -> BTreeMap<NaiveDate, i64> {
    counters
        .iter()
        .filter(|(w, _)| *w >= from)
        .copied()
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves whole values behind: still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
