//! The metric values of one stored submission, as the rollup job reads them.
//!
//! The stored values (`db::models::metric_values`: staged rows, blocks keyed by metric, and
//! the narrow `usage_data_metrics` rows of earlier releases) are keyed by metric first, which
//! suits the analysts' per-metric queries but not "every value of submission N": that is one
//! read per key in the whole dictionary (~4,200), and the job needs it up to eleven times
//! per submission (its own values, the month's and week's previous counted submissions, the
//! next periods). Measured: 0.4–0.6 s per submission (docs/benchmarks-insights.md).
//!
//! So the values are read from the submission's own stored payload instead
//! (`usage_data_raw`: one primary-key read, zstd, then the ingest flattener
//! [`crate::domain::payload::parse_payload`]), which yields exactly the rows ingest stored
//! from it (tested against the table in `tests/api/insights_values.rs`). The read costs the
//! same whatever the store's size. Where the payload cannot vouch for the rows — retention
//! removed it, it no longer parses, a path is missing from the dictionary, or its leaf count
//! differs from the `metrics_count` stored with the submission — the table is probed as
//! before: slower, same values.
//!
//! A small per-pass cache keeps the last few submissions' values: one submission's values
//! are read by the catalogue, the month and the week, and the previous period's counted
//! submission is usually shared between month and week.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::db::models::{insights as store, usage_data_raw};
use crate::db::{AnyConnection, Db, DbError};
use crate::domain::payload::{parse_payload, PayloadLimits, PARSER_MAX_DEPTH};

/// `(key_id, value)` of every metric of a submission, sorted by key id.
pub(super) type Values = Rc<[(i64, f64)]>;

/// Submissions whose values are kept per pass (a few are enough: one submission and its
/// neighbours in the month and the week).
const CAPACITY: usize = 16;

/// Where a submission's values came from, counted per pass for the job's log line.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ReadCounts {
    /// Read from the stored payload.
    pub(super) payload: usize,
    /// Read from the stored metric values key by key.
    pub(super) probed: usize,
    /// Served from the cache.
    pub(super) cached: usize,
}

/// The per-pass cache of submission values.
pub(super) struct ValueCache {
    entries: HashMap<i64, Values>,
    order: VecDeque<i64>,
    pub(super) counts: ReadCounts,
}

impl ValueCache {
    pub(super) fn new() -> ValueCache {
        ValueCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            counts: ReadCounts::default(),
        }
    }

    /// The values of submission `usage_data_id`, read at most once per pass while cached.
    pub(super) fn values_of(
        &mut self,
        conn: &mut AnyConnection,
        keys: &super::keys::Keys,
        usage_data_id: i64,
    ) -> Result<Values, DbError> {
        if let Some(values) = self.entries.get(&usage_data_id) {
            self.counts.cached += 1;
            return Ok(values.clone());
        }
        let values: Values = match from_payload(conn, &keys.by_path, usage_data_id)? {
            Some(values) => {
                self.counts.payload += 1;
                values.into()
            }
            None => {
                self.counts.probed += 1;
                store::list_metric_values_of(conn, usage_data_id, &keys.ids)?.into()
            }
        };
        if self.order.len() >= CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
        self.order.push_back(usage_data_id);
        self.entries.insert(usage_data_id, values.clone());
        Ok(values)
    }
}

/// The values of a submission from its stored payload, or `None` when the payload cannot
/// vouch for the stored rows (see the module documentation).
fn from_payload(
    conn: &mut AnyConnection,
    key_ids: &HashMap<String, i64>,
    usage_data_id: i64,
) -> Result<Option<Vec<(i64, f64)>>, DbError> {
    let Some(stored_count) = store::find_metrics_count(conn, usage_data_id)? else {
        return Ok(None);
    };
    let bytes = match usage_data_raw::find_raw_payload(conn, usage_data_id) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        // A damaged payload is not this job's to report: the table still has the values.
        Err(DbError::Corrupt { .. }) => return Ok(None),
        Err(err) => return Err(err),
    };
    // The ingest limits, except depth: ingest's depth is a setting, and whatever it accepted
    // must parse here (depth decides only acceptance, never which leaves are kept).
    let limits = PayloadLimits {
        max_depth: PARSER_MAX_DEPTH,
        ..PayloadLimits::default()
    };
    let Ok(parsed) = parse_payload(&bytes, &limits) else {
        return Ok(None);
    };
    if i64::try_from(parsed.metrics.len()).ok() != Some(stored_count) {
        return Ok(None);
    }
    let mut values = Vec::with_capacity(parsed.metrics.len());
    for metric in parsed.metrics.iter() {
        let Some(&key_id) = key_ids.get(metric.key) else {
            return Ok(None);
        };
        values.push((key_id, metric.value));
    }
    values.sort_unstable_by_key(|(key, _)| *key);
    Ok(Some(values))
}

/// The values the rollup job reads for submission `usage_data_id` from its stored payload,
/// `(key_id, value)` sorted by key id; `None` when it falls back to the metric table (no
/// payload, or one that does not match the stored rows). Public so that tests can hold it
/// against the stored metric values.
pub fn values_from_payload(db: &Db, usage_data_id: i64) -> anyhow::Result<Option<Vec<(i64, f64)>>> {
    let mut conn = db.get()?;
    let keys = super::keys::Keys::load(&mut conn)?;
    Ok(from_payload(&mut conn, &keys.by_path, usage_data_id)?)
}
