//! Each process keeps the per-period rows of the insights series views it has computed, and
//! recomputes a period only when a write could have changed it.
//!
//! Why: a series view reads one row per installation and period of its range (or one value
//! probe for a metric), so its cost grows with the fleet; but a period's rows change only
//! when the rollup places a submission in it (or in an earlier period: the previous
//! period's baseline, an installation's first period) or a version-check flush writes one
//! of its days. Every such write adds 1 to its period's change counter in the same
//! transaction (`insights_generations`), so a view asks for the counters (one small read),
//! reuses every period whose token is unchanged, and computes the others, usually only the
//! current period, as one contiguous sub-range with the view's own code. A warm view then
//! costs a read of the counters plus its periods' rows, whatever the store's size.
//!
//! Tokens (`domain::insights::generations`) are read before the rows are computed, so rows
//! are never newer-looking than they are: rows that include a change committed in between
//! are stored under the older token and recomputed at the next ask. Whether a period is
//! complete depends on today, so it is set when rows are served, not kept. What a view's
//! rows depend on beyond the store's rows (filters, the metric's key and time frame) goes
//! into its key, [`View::params`]. The cache is bounded by the rows it holds: when full it
//! is emptied and refilled by the next asks.

use chrono::NaiveDate;
use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::report::Range;
use crate::db::models::insights_generations::{self as generations, CHECKS, PINGS};
use crate::db::{AnyConnection, DbError};
use crate::domain::insights::generations::tokens;
use crate::domain::insights::periods::PeriodKind;

/// A row of a series view: it belongs to one period and carries that period's completeness.
pub(crate) trait PeriodRow: Clone + Send + Sync + 'static {
    /// The period it belongs to.
    fn period(&self) -> NaiveDate;
    /// Marks it complete (false for the current, incomplete period).
    fn set_complete(&mut self, complete: bool);
    /// What it counts for against the cache's bound (rows it holds).
    fn weight(&self) -> usize {
        1
    }
}

/// Implements [`PeriodRow`] for rows with `period` and `complete` fields.
macro_rules! period_row {
    ($($t:ty),* $(,)?) => {$(
        impl $crate::insights::period_cache::PeriodRow for $t {
            fn period(&self) -> chrono::NaiveDate {
                self.period
            }
            fn set_complete(&mut self, complete: bool) {
                self.complete = complete;
            }
        }
    )*};
}
pub(crate) use period_row;

/// Which writes change a view's periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reads {
    /// The rollup's period rows only.
    Pings,
    /// The rollup's period rows and the version-check days.
    PingsAndChecks,
}

/// A view as the cache knows it.
#[derive(Debug, Clone)]
pub(crate) struct View {
    /// Its name (one row type per name).
    pub(crate) name: &'static str,
    /// Everything its rows depend on besides the period and the store's rows: filters, a
    /// metric's key and defined time frame. `include_internal` is added by the cache.
    pub(crate) params: String,
    /// Which writes change it.
    pub(crate) reads: Reads,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    view: &'static str,
    params: String,
    include_internal: bool,
    kind: PeriodKind,
    period: NaiveDate,
    /// The range's end when it cuts this period short (days of the period on or after it
    /// are not read), else `None`.
    cut_at: Option<NaiveDate>,
}

struct Entry {
    token: i64,
    weight: usize,
    rows: Arc<dyn Any + Send + Sync>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<Key, Entry>,
    /// Sum of the entries' weights.
    weight: usize,
}

impl Entries {
    /// Keeps `entry` under `key` (replacing what was kept there), emptying everything first
    /// when it would not fit in `capacity`; an entry heavier than `capacity` is not kept.
    fn keep(&mut self, key: Key, entry: Entry, capacity: usize) {
        if let Some(old) = self.map.remove(&key) {
            self.weight -= old.weight;
        }
        if self.weight + entry.weight > capacity {
            self.map.clear();
            self.weight = 0;
        }
        if entry.weight <= capacity {
            self.weight += entry.weight;
            self.map.insert(key, entry);
        }
    }
}

/// The per-process cache of computed periods (and, beside it, of the window lists).
pub struct PeriodCache {
    /// The window lists' latest reports and answers (off when `capacity` is 0).
    pub(crate) window: super::window_cache::WindowCache,
    entries: Mutex<Entries>,
    /// Most rows kept (sum of weights).
    capacity: usize,
    /// `version_app_insights_cache_periods_total{outcome}`: `reused` or `computed`.
    reused: IntCounter,
    computed: IntCounter,
    /// `version_app_insights_cache_rows`.
    size: IntGauge,
}

impl PeriodCache {
    /// A cache of at most `capacity` rows (0 computes every ask in full), its metrics
    /// registered in `registry`.
    pub fn new(capacity: usize, registry: &Registry) -> PeriodCache {
        let periods = IntCounterVec::new(
            Opts::new(
                "version_app_insights_cache_periods_total",
                "Periods of insights series served, by outcome: reused (unchanged since computed) or computed",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let size = IntGauge::new(
            "version_app_insights_cache_rows",
            "Rows of insights series this process keeps computed",
        )
        .expect("valid metric");
        for collector in [
            Box::new(periods.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(size.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        PeriodCache {
            window: super::window_cache::WindowCache::new(capacity > 0, registry),
            entries: Mutex::new(Entries::default()),
            capacity,
            reused: periods.with_label_values(&["reused"]),
            computed: periods.with_label_values(&["computed"]),
            size,
        }
    }

    /// The rows of `view` over `range`: kept periods whose token is unchanged are reused,
    /// the others computed by `compute` over contiguous sub-ranges (a range of whole periods
    /// whose results per period are exactly those of the full range), then kept.
    pub(crate) fn rows<T, E>(
        &self,
        conn: &mut AnyConnection,
        view: &View,
        range: &Range,
        mut compute: impl FnMut(&mut AnyConnection, &Range) -> Result<Vec<T>, E>,
    ) -> Result<Vec<T>, E>
    where
        T: PeriodRow,
        E: From<DbError>,
    {
        let kind = range.kind;
        let periods: Vec<NaiveDate> = kind
            .starts_between(range.from, range.to)
            .into_iter()
            .filter(|p| *p >= range.from)
            .collect();
        if self.capacity == 0 || periods.is_empty() {
            return compute(conn, range);
        }
        let sources: &[&str] = match view.reads {
            Reads::Pings => &[PINGS],
            Reads::PingsAndChecks => &[PINGS, CHECKS],
        };
        let (counters, all) = generations::list(conn, kind.as_str(), sources)?;
        let tokens = tokens(&counters, all, &periods);
        let keys: Vec<Key> = periods
            .iter()
            .map(|p| Key {
                view: view.name,
                params: view.params.clone(),
                include_internal: range.include_internal,
                kind,
                period: *p,
                cut_at: (kind.next_start(*p) > range.to).then_some(range.to),
            })
            .collect();
        let mut found: Vec<Option<Arc<Vec<T>>>> = {
            let entries = self.lock();
            keys.iter()
                .zip(&tokens)
                .map(|(key, token)| {
                    entries
                        .map
                        .get(key)
                        .filter(|e| e.token == *token)
                        .and_then(|e| e.rows.clone().downcast::<Vec<T>>().ok())
                })
                .collect()
        };
        let reused = found.iter().filter(|f| f.is_some()).count();
        self.reused.inc_by(reused as u64);
        self.computed.inc_by((periods.len() - reused) as u64);
        let mut first = 0;
        while first < periods.len() {
            if found[first].is_some() {
                first += 1;
                continue;
            }
            let mut last = first;
            while last + 1 < periods.len() && found[last + 1].is_none() {
                last += 1;
            }
            let sub = Range {
                from: periods[first],
                to: kind.next_start(periods[last]).min(range.to),
                ..*range
            };
            let mut by_period: BTreeMap<NaiveDate, Vec<T>> = BTreeMap::new();
            for row in compute(conn, &sub)? {
                by_period.entry(row.period()).or_default().push(row);
            }
            let mut entries = self.lock();
            for at in first..=last {
                let rows = Arc::new(by_period.remove(&periods[at]).unwrap_or_default());
                // An empty period still takes a slot.
                let weight = rows.iter().map(PeriodRow::weight).sum::<usize>().max(1);
                entries.keep(
                    keys[at].clone(),
                    Entry {
                        token: tokens[at],
                        weight,
                        rows: rows.clone(),
                    },
                    self.capacity,
                );
                found[at] = Some(rows);
            }
            self.size.set(entries.weight as i64);
            first = last + 1;
        }
        let mut out = Vec::new();
        for (period, rows) in periods.iter().zip(found) {
            let complete = kind.is_complete(*period, range.today);
            for row in rows.iter().flat_map(|r| r.iter()) {
                let mut row = row.clone();
                row.set_complete(complete);
                out.push(row);
            }
        }
        Ok(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves a map of whole entries: still usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(period: &str) -> Key {
        Key {
            view: "v",
            params: String::new(),
            include_internal: false,
            kind: PeriodKind::Week,
            period: period.parse().unwrap(),
            cut_at: None,
        }
    }

    fn entry(weight: usize) -> Entry {
        Entry {
            token: 0,
            weight,
            rows: Arc::new(()),
        }
    }

    #[test]
    fn keeping_replaces_empties_when_full_and_skips_what_cannot_fit() {
        let mut e = Entries::default();
        e.keep(key("2026-03-02"), entry(2), 3);
        e.keep(key("2026-03-02"), entry(1), 3); // replaced, not added
        assert_eq!((e.map.len(), e.weight), (1, 1));
        e.keep(key("2026-03-09"), entry(2), 3);
        assert_eq!((e.map.len(), e.weight), (2, 3));
        e.keep(key("2026-03-16"), entry(1), 3); // full: emptied first
        assert_eq!((e.map.len(), e.weight), (1, 1));
        e.keep(key("2026-03-23"), entry(4), 3); // heavier than the bound: not kept
        assert_eq!((e.map.len(), e.weight), (0, 0));
    }
}
