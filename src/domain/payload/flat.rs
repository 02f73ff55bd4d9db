//! [`FlatMetrics`]: every numeric or boolean leaf of a payload under its dotted key path.

use super::special::SpecialValue;
use super::{PayloadError, PayloadLimits};

/// One flattened leaf, borrowed from [`FlatMetrics`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric<'a> {
    /// Dotted key path, e.g. `usage_activity_by_stage_monthly.plan.issues`; array elements
    /// appear as `[i]`, e.g. `topology.nodes[0].node_cpus`.
    pub key: &'a str,
    /// The value; booleans are `1.0` / `0.0`.
    pub value: f64,
    /// True when the JSON leaf was a boolean.
    pub is_bool: bool,
    /// The exact value when the leaf was a JSON integer that fits an `i64` (booleans: 0/1);
    /// `None` for a float. `value` loses precision above 2^53, this does not.
    pub exact: Option<i64>,
    /// The sentinel this leaf carries, if any.
    pub special: Option<SpecialValue>,
}

impl Metric<'_> {
    /// True for a real measurement: neither a sentinel nor part of a failed histogram.
    pub fn is_valid(&self) -> bool {
        self.special.is_none()
    }
}

/// Where one leaf's key lives in the shared key buffer, plus its value.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) start: u32,
    pub(super) len: u32,
    pub(super) value: f64,
    pub(super) is_bool: bool,
    pub(super) exact: Option<i64>,
    pub(super) special: Option<SpecialValue>,
}

/// All numeric and boolean leaves of a payload, sorted by key path for binary-search lookups.
///
/// Keys live in one contiguous buffer rather than one `String` each: a full payload has ~4,200
/// leaves and per-key allocations would dominate flattening time.
///
/// What is flattened, and why:
/// * numbers and booleans: they are the metrics;
/// * objects: descended into, segments joined with `.`;
/// * arrays: descended into with an `[i]` segment. Arrays in payloads are positional lists
///   (`topology.nodes[]`, `node_services[]`) whose numbers are real measurements, while
///   string lists (`gitaly.filesystems`, `omniauth_providers`) yield nothing anyway;
/// * strings and `null`: skipped. Strings are versions, names, or (in "metrics queries"
///   payloads such as the 13.9 sample) SQL text; none is a measurement. The raw payload keeps
///   them for analysts.
///
/// Numbers are kept as `f64`, and integers also exactly as `i64` ([`Metric::exact`]): the
/// few identifiers above 2^53 (`database.pg_system_id`) would lose precision as doubles.
/// If a path occurs twice (a key repeated in one object, or a key that itself contains a `.`
/// colliding with a nested path: `{"a.b":1,"a":{"b":2}}`), the **last value in document
/// order wins**, as in JSON parsers that keep one value per key; the earlier ones are dropped
/// here, before anything is stored, so both stores keep the same single row
/// (docs/hardening.md).
#[derive(Debug, Clone, Default)]
pub struct FlatMetrics {
    pub(super) keys: String,
    pub(super) entries: Vec<Entry>,
    pub(super) skipped_long_keys: usize,
}

impl FlatMetrics {
    /// Number of leaves kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no numeric/boolean leaf was found.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Leaves dropped because their key path exceeded [`PayloadLimits::max_key_len`].
    pub fn skipped_long_keys(&self) -> usize {
        self.skipped_long_keys
    }

    fn key_of(&self, entry: &Entry) -> &str {
        let start = entry.start as usize;
        &self.keys[start..start + entry.len as usize]
    }

    fn metric_of<'a>(&'a self, entry: &Entry) -> Metric<'a> {
        Metric {
            key: self.key_of(entry),
            value: entry.value,
            is_bool: entry.is_bool,
            exact: entry.exact,
            special: entry.special,
        }
    }

    /// The leaf at `key`, if present.
    pub fn metric(&self, key: &str) -> Option<Metric<'_>> {
        let index = self
            .entries
            .partition_point(|entry| self.key_of(entry) < key);
        let entry = self.entries.get(index)?;
        (self.key_of(entry) == key).then(|| self.metric_of(entry))
    }

    /// The value at `key` (sentinels included), if present.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.metric(key).map(|metric| metric.value)
    }

    /// The first key path (in key order) that contains a NUL character, if any.
    pub fn key_with_nul(&self) -> Option<&str> {
        // One scan of the shared key buffer (memchr) instead of one search per key: that was
        // ~3 % of ingest CPU. The buffer holds only kept keys and duplicates of them.
        if !self.keys.as_bytes().contains(&0) {
            return None;
        }
        self.iter().map(|m| m.key).find(|key| key.contains('\0'))
    }

    /// All leaves, sorted by key path.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Metric<'_>> + '_ {
        self.entries.iter().map(|entry| self.metric_of(entry))
    }

    pub(super) fn push(
        &mut self,
        path: &str,
        value: f64,
        is_bool: bool,
        exact: Option<i64>,
        special: Option<SpecialValue>,
        limits: &PayloadLimits,
    ) -> Result<(), PayloadError> {
        if path.len() > limits.max_key_len {
            self.skipped_long_keys += 1;
            return Ok(());
        }
        if self.entries.len() >= limits.max_metrics {
            return Err(PayloadError::TooManyMetrics {
                max: limits.max_metrics,
            });
        }
        // u32 offsets keep entries small; with the default limits the buffer stays far below
        // 4 GiB, and we refuse to grow it past that rather than wrap.
        let too_big = |_| PayloadError::TooManyMetrics {
            max: limits.max_metrics,
        };
        let start = u32::try_from(self.keys.len() + path.len())
            .map(|end| end - path.len() as u32)
            .map_err(too_big)?;
        self.keys.push_str(path);
        self.entries.push(Entry {
            start,
            len: path.len() as u32,
            value,
            is_bool,
            exact,
            special,
        });
        Ok(())
    }
}

pub(super) fn sort_entries(metrics: &mut FlatMetrics) {
    let FlatMetrics { keys, entries, .. } = metrics;
    // Duplicates must stay in document order (the last one is kept below). Keys are appended
    // to the buffer in document order, so their offset is that order: an unstable sort with
    // the offset as tie-break gives the stable result without the stable sort's buffer.
    entries.sort_unstable_by(|a, b| {
        let key_a = &keys[a.start as usize..(a.start + a.len) as usize];
        let key_b = &keys[b.start as usize..(b.start + b.len) as usize];
        key_a.cmp(key_b).then(a.start.cmp(&b.start))
    });
    // Last value wins (issue 8, #3): of a run of equal keys, keep the last one in document
    // order. Done once here so no store sees two rows for one path.
    let key = |e: &Entry| &keys[e.start as usize..(e.start + e.len) as usize];
    let mut kept = 0;
    for read in 0..entries.len() {
        if read + 1 < entries.len() && key(&entries[read]) == key(&entries[read + 1]) {
            continue;
        }
        entries[kept] = entries[read];
        kept += 1;
    }
    entries.truncate(kept);
}

/// Views the unit tests read (`payload/tests.rs`); nothing in the library needs them, so
/// they are not part of its API (issue 7, item 9).
#[cfg(test)]
impl FlatMetrics {
    /// The value at `key` only when it is a real measurement (not a sentinel).
    pub(crate) fn get_valid(&self, key: &str) -> Option<f64> {
        self.metric(key)
            .filter(Metric::is_valid)
            .map(|metric| metric.value)
    }

    /// Paths of failed histograms (`{"-1": -1}` objects).
    pub(crate) fn histogram_failures(&self) -> impl Iterator<Item = &str> + '_ {
        self.iter()
            .filter(|metric| metric.special == Some(SpecialValue::HistogramFailure))
            .map(|metric| metric.key.strip_suffix(".-1").unwrap_or(metric.key))
    }

    /// Owned `(key, value)` pairs.
    pub(crate) fn to_pairs(&self) -> Vec<(String, f64)> {
        self.iter()
            .map(|metric| (metric.key.to_owned(), metric.value))
            .collect()
    }
}
