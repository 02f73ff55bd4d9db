//! Service Ping payloads: validation, the identity summary, and flattened metrics.
//!
//! A GitLab instance posts one JSON object a week (protocol.md §2.5). This module turns the raw
//! bytes into three things, without any I/O:
//!
//! * a precise [`PayloadError`] when the bytes are not a usable payload (the message is meant to
//!   be shown to the admin who uploaded the file, so it names the problem and where it is);
//! * a [`PayloadSummary`] of the identity fields the database keeps in columns;
//! * [`FlatMetrics`]: every numeric or boolean leaf as a dotted key path and an `f64`, the form
//!   the DevOps score and the analysts' queries read.
//!
//! Special values (`-1`, `-2`, `-3`, `-1000`, `{"-1":-1}`) are data and are kept exactly; they are
//! flagged (see [`SpecialValue`]) so that consumers such as the DevOps score can leave them out.
//!
//! The module deliberately depends on nothing else in the crate so it can be compiled and tested
//! on its own.

use super::version::Version;
use std::borrow::Cow;
use std::fmt::{self, Write as _};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::{Map, Value};

/// Default cap on JSON nesting. Real payloads nest 6 levels at most (`topology.nodes[].…`);
/// 64 leaves ample room while staying well under serde_json's own recursion limit.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// serde_json refuses to nest deeper than this (its built-in recursion limit, which is what
/// keeps its recursive parser off the end of the stack). A `max_depth` above it has no effect.
pub const PARSER_MAX_DEPTH: usize = 127;

/// Default cap on flattened metrics. GitLab 18.9 defines 4,214 key paths; `topology` adds a few
/// dozen per node. Five times the full set still parses in milliseconds, while a hostile payload
/// made of tiny leaves cannot make us build an unbounded index.
pub const DEFAULT_MAX_METRICS: usize = 20_000;

/// Default cap on a single key path's length in bytes. The longest 18.9 path has 173 bytes.
/// Longer paths are skipped (and counted), which bounds the flattened index to
/// `max_metrics × max_key_len` bytes whatever the payload's shape.
pub const DEFAULT_MAX_KEY_LEN: usize = 512;

/// Longest accepted `uuid` / `unique_instance_id`. GitLab sends 36-character UUIDs; anything far
/// longer is not an instance id and would only bloat an indexed column.
pub const MAX_ID_LEN: usize = 128;

/// Longest timestamp text echoed back inside an error message.
const MAX_ECHO_LEN: usize = 64;

/// Size limits applied while parsing. Body-size limits belong to the HTTP layer; these bound
/// the work done on a body that has already been accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadLimits {
    /// Deepest allowed nesting of arrays and objects (the top-level object is depth 1).
    /// Effective values are capped at [`PARSER_MAX_DEPTH`].
    pub max_depth: usize,
    /// Most numeric/boolean leaves accepted before the payload is rejected.
    pub max_metrics: usize,
    /// Longest key path (bytes) kept in [`FlatMetrics`]; longer ones are skipped and counted.
    pub max_key_len: usize,
}

impl Default for PayloadLimits {
    fn default() -> Self {
        PayloadLimits {
            max_depth: DEFAULT_MAX_DEPTH,
            max_metrics: DEFAULT_MAX_METRICS,
            max_key_len: DEFAULT_MAX_KEY_LEN,
        }
    }
}

/// Why a body is not a usable Service Ping payload. Every message names the problem in words
/// an admin can act on; all variants are client errors (HTTP 400/422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The body was empty or only white space.
    #[error("payload is empty")]
    Empty,
    /// The body is not syntactically valid JSON (or not UTF-8).
    #[error("payload is not valid JSON at line {line} column {column}: {reason}")]
    InvalidJson {
        /// 1-based line of the first error.
        line: usize,
        /// 1-based column of the first error.
        column: usize,
        /// serde_json's description, e.g. `expected value`.
        reason: String,
    },
    /// Arrays/objects nest deeper than [`PayloadLimits::max_depth`].
    #[error("JSON nesting deeper than {max_depth} levels")]
    TooDeep {
        /// The limit that was exceeded.
        max_depth: usize,
    },
    /// The top-level value is valid JSON but not an object.
    #[error("payload must be a JSON object, not {found}")]
    NotAnObject {
        /// What was found instead (`an array`, `a string`, …).
        found: &'static str,
    },
    /// A required identity field is absent or `null`.
    #[error("missing required field `{field}`")]
    MissingField {
        /// The field's name.
        field: &'static str,
    },
    /// A required identity field is an empty (or blank) string.
    #[error("field `{field}` must not be empty")]
    EmptyField {
        /// The field's name.
        field: &'static str,
    },
    /// An identity field has the wrong JSON type.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// The field's name.
        field: &'static str,
        /// What it must be, with its article (`a string`, `a string timestamp`).
        expected: &'static str,
    },
    /// An identity field is longer than makes sense for it.
    #[error("field `{field}` is longer than {max} characters")]
    TooLong {
        /// The field's name.
        field: &'static str,
        /// The limit.
        max: usize,
    },
    /// A timestamp field is a string in none of the accepted forms.
    #[error("field `{field}` is not a recognised timestamp: {value:?}")]
    BadTimestamp {
        /// The field's name.
        field: &'static str,
        /// The offending text (truncated to 64 characters).
        value: String,
    },
    /// More numeric/boolean leaves than [`PayloadLimits::max_metrics`].
    #[error("payload has more than {max} numeric or boolean metrics")]
    TooManyMetrics {
        /// The limit that was exceeded.
        max: usize,
    },
}

/// A parsed, validated payload: what the ingest route stores next to the raw bytes.
#[derive(Debug, Clone)]
pub struct ParsedPayload {
    /// Identity and license fields.
    pub summary: PayloadSummary,
    /// Every numeric/boolean leaf, sorted by key path.
    pub metrics: FlatMetrics,
    /// Number of top-level keys as sent (58 for the 13.9 sample); handy for logs and sanity
    /// checks.
    pub top_level_keys: usize,
}

/// The identity of a submission, as the database keeps it in columns.
///
/// Optional fields are `None` when missing, `null`, empty, or (for license and count fields)
/// of an unusable type: those do not identify the instance, so a wrong type there must not
/// cost us the whole submission. Counts keep special values as sent (`-1` stays `-1`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PayloadSummary {
    /// Instance UUID (`uuid`), trimmed; never empty.
    pub uuid: String,
    /// `unique_instance_id` (GitLab ≥ 16.x), when sent.
    pub unique_instance_id: Option<String>,
    /// `hostname` as sent (trimmed, case kept).
    pub hostname: Option<String>,
    /// `version`, raw and normalised.
    pub version: Option<PayloadVersion>,
    /// `edition`: `CE`, `EE`, `EES`, `EEP`, `EEU`, `EE Free`, …
    pub edition: Option<String>,
    /// `installation_type`: `omnibus-gitlab`, `gitlab-helm-chart`, `source`, …
    pub installation_type: Option<String>,
    /// `active_user_count`.
    pub active_user_count: Option<i64>,
    /// `historical_max_users`.
    pub historical_max_users: Option<i64>,
    /// `license_md5` (older GitLab).
    pub license_md5: Option<String>,
    /// `license_sha256`.
    pub license_sha256: Option<String>,
    /// `license_id`.
    pub license_id: Option<i64>,
    /// `license_plan`: `premium`, `ultimate`, …
    pub license_plan: Option<String>,
    /// `license_trial`.
    pub license_trial: Option<bool>,
    /// `license_expires_at` (a date; a full timestamp is reduced to its UTC date).
    pub license_expires_at: Option<NaiveDate>,
    /// `license_user_count`.
    pub license_user_count: Option<i64>,
    /// `licensee.Name`.
    pub licensee_name: Option<String>,
    /// `recorded_at`, converted to UTC.
    pub recorded_at: DateTime<Utc>,
}

/// The `version` field as sent and in the normalised form used for comparisons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PayloadVersion {
    /// Exactly as sent (trimmed), e.g. `18.9.0-ee`.
    pub raw: String,
    /// Without a leading `v`, the edition suffix (`-ee`, `+ee`) and build metadata, e.g.
    /// `18.9.0`, `13.9.0-pre`. Equal to `raw` minus the suffix when semver cannot read it.
    pub normalized: String,
    /// Major number, when the normalised text is valid semver.
    pub major: Option<i64>,
    /// Minor number, when the normalised text is valid semver.
    pub minor: Option<i64>,
    /// Patch number, when the normalised text is valid semver.
    pub patch: Option<i64>,
}

/// The sentinel values GitLab writes instead of a measurement (protocol.md §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecialValue {
    /// `-1`: the metric's query failed.
    Failure,
    /// `-2`: a Redis HyperLogLog counter failed.
    HllFailure,
    /// `-3`: placeholder for a metric not yet implemented.
    Placeholder,
    /// `-1000`: deprecated metric.
    Deprecated,
    /// `{"-1": -1}`: a histogram metric failed; flattened as `<path>.-1 = -1`.
    HistogramFailure,
}

impl SpecialValue {
    /// Classifies a numeric leaf. Only the exact sentinel numbers qualify: `-1.5` or `-7` are
    /// odd but are not sentinels.
    pub fn from_value(value: f64) -> Option<SpecialValue> {
        // Exact comparison is intended: sentinels are integers, sent as integer literals.
        if value == -1.0 {
            Some(SpecialValue::Failure)
        } else if value == -2.0 {
            Some(SpecialValue::HllFailure)
        } else if value == -3.0 {
            Some(SpecialValue::Placeholder)
        } else if value == -1000.0 {
            Some(SpecialValue::Deprecated)
        } else {
            None
        }
    }
}

/// True when `value` is one of GitLab's sentinel numbers (`-1`, `-2`, `-3`, `-1000`).
pub fn is_special_value(value: f64) -> bool {
    SpecialValue::from_value(value).is_some()
}

/// True when `value` is the histogram failure marker `{"-1": -1}` (exactly one key).
pub fn is_histogram_failure(value: &Value) -> bool {
    match value {
        Value::Object(map) => is_histogram_failure_map(map),
        _ => false,
    }
}

fn is_histogram_failure_map(map: &Map<String, Value>) -> bool {
    map.len() == 1 && map.get("-1").and_then(Value::as_f64) == Some(-1.0)
}

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
struct Entry {
    start: u32,
    len: u32,
    value: f64,
    is_bool: bool,
    special: Option<SpecialValue>,
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
/// Numbers are stored as `f64`: exact up to 2^53, which covers every count; the few
/// identifiers above that (`database.pg_system_id`) lose precision here but not in the raw
/// payload. If a path occurs twice (a key repeated in one object, or a key that itself
/// contains a `.` colliding with a nested path: `{"a.b":1,"a":{"b":2}}`), the **last value in
/// document order wins**, as in JSON parsers that keep one value per key; the earlier ones are
/// dropped here, before anything is stored, so both stores keep the same single row
/// (docs/hardening.md).
#[derive(Debug, Clone, Default)]
pub struct FlatMetrics {
    keys: String,
    entries: Vec<Entry>,
    skipped_long_keys: usize,
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

    /// The value at `key` only when it is a real measurement (not a sentinel).
    pub fn get_valid(&self, key: &str) -> Option<f64> {
        self.metric(key)
            .filter(Metric::is_valid)
            .map(|metric| metric.value)
    }

    /// All leaves, sorted by key path.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Metric<'_>> + '_ {
        self.entries.iter().map(|entry| self.metric_of(entry))
    }

    /// Paths of failed histograms (`{"-1": -1}` objects), e.g.
    /// `usage_activity_by_stage.monitor.projects_with_enabled_alert_integrations_histogram`.
    pub fn histogram_failures(&self) -> impl Iterator<Item = &str> + '_ {
        self.iter()
            .filter(|metric| metric.special == Some(SpecialValue::HistogramFailure))
            .map(|metric| metric.key.strip_suffix(".-1").unwrap_or(metric.key))
    }

    /// Owned `(key, value)` pairs, e.g. for storage; booleans are `1.0` / `0.0`.
    pub fn to_pairs(&self) -> Vec<(String, f64)> {
        self.iter()
            .map(|metric| (metric.key.to_owned(), metric.value))
            .collect()
    }

    fn push(
        &mut self,
        path: &str,
        value: f64,
        is_bool: bool,
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
            special,
        });
        Ok(())
    }
}

/// Parses and validates a Service Ping body.
///
/// Order of checks: empty body, JSON syntax, top-level type, nesting depth and metric count
/// (while flattening), then identity fields.
///
/// The body is flattened while it is parsed, without building a `serde_json::Value` for the
/// metric buckets: no per-key `String`s, no maps, which roughly halves the cost of a full
/// payload. Only the top-level identity fields are kept as values, for [`PayloadSummary`].
///
/// Depth is enforced without unbounded recursion: the parser follows nesting by recursion,
/// but each level first checks [`PayloadLimits::max_depth`] (and serde_json's own recursion
/// limit, [`PARSER_MAX_DEPTH`], backs it up), so a megabyte of `[` fails at level 64 instead
/// of exhausting the stack.
pub fn parse_payload(bytes: &[u8], limits: &PayloadLimits) -> Result<ParsedPayload, PayloadError> {
    // Files saved by some Windows editors start with a BOM; serde_json rejects it.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    let mut state = Flattener::new(limits);
    let mut identity = Map::new();
    let mut top_level_keys = 0;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let outcome = TopLevel {
        state: &mut state,
        identity: &mut identity,
        keys: &mut top_level_keys,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    if let Err(error) = outcome {
        // Our own checks stop the parser through a serde error; the precise cause is kept
        // aside, everything else is a JSON syntax problem.
        return Err(state
            .failure
            .take()
            .unwrap_or_else(|| json_error(error, limits)));
    }
    let metrics = state.finish();
    let summary = summarize(&identity)?;
    Ok(ParsedPayload {
        summary,
        metrics,
        top_level_keys,
    })
}

/// Top-level fields read into the summary; the parser keeps them as values while it streams
/// everything else into the flattened metrics.
const IDENTITY_FIELDS: [&str; 17] = [
    "uuid",
    "recorded_at",
    "unique_instance_id",
    "hostname",
    "version",
    "edition",
    "installation_type",
    "active_user_count",
    "historical_max_users",
    "license_md5",
    "license_sha256",
    "license_id",
    "license_plan",
    "license_trial",
    "license_expires_at",
    "license_user_count",
    "licensee",
];

/// Shared state of one streaming flatten: the path buffer, the output, and the precise
/// reason when one of our limits stopped the parser.
struct Flattener<'l> {
    path: String,
    metrics: FlatMetrics,
    limits: &'l PayloadLimits,
    max_depth: usize,
    failure: Option<PayloadError>,
}

impl<'l> Flattener<'l> {
    fn new(limits: &'l PayloadLimits) -> Self {
        Flattener {
            path: String::with_capacity(256),
            metrics: FlatMetrics {
                // A full payload has ~4,200 leaves and ~170 KB of key paths; reserving close
                // to that avoids most regrowth.
                keys: String::with_capacity(64 * 1024),
                entries: Vec::with_capacity(1024),
                skipped_long_keys: 0,
            },
            limits,
            max_depth: limits.max_depth.min(PARSER_MAX_DEPTH),
            failure: None,
        }
    }

    fn fail<E: de::Error>(&mut self, error: PayloadError) -> E {
        let message = error.to_string();
        self.failure = Some(error);
        E::custom(message)
    }

    fn leaf<E: de::Error>(&mut self, value: f64, is_bool: bool) -> Result<(), E> {
        let special = if is_bool {
            None
        } else {
            SpecialValue::from_value(value)
        };
        let pushed = self
            .metrics
            .push(&self.path, value, is_bool, special, self.limits);
        pushed.map_err(|error| self.fail(error))
    }

    fn enter<E: de::Error>(&mut self, depth: usize) -> Result<(), E> {
        if depth > self.max_depth {
            let max_depth = self.max_depth;
            return Err(self.fail(PayloadError::TooDeep { max_depth }));
        }
        Ok(())
    }

    fn finish(mut self) -> FlatMetrics {
        sort_entries(&mut self.metrics);
        self.metrics
    }
}

/// The payload object itself: counts keys, captures identity fields, streams the rest.
struct TopLevel<'s, 'l> {
    state: &'s mut Flattener<'l>,
    identity: &'s mut Map<String, Value>,
    keys: &'s mut usize,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl TopLevel<'_, '_> {
    fn not_an_object<E: de::Error>(self, found: &'static str) -> Result<(), E> {
        Err(self.state.fail(PayloadError::NotAnObject { found }))
    }
}

impl<'de> Visitor<'de> for TopLevel<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.state;
        state.enter(1)?;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            *self.keys += 1;
            state.path.clear();
            state.path.push_str(&key);
            if IDENTITY_FIELDS.contains(&key.as_ref()) {
                // Identity fields are few and small: keep the value for the summary, then
                // flatten it like any other (active_user_count is also a metric).
                let value: Value = map.next_value()?;
                Node {
                    state: &mut *state,
                    depth: 2,
                }
                .deserialize(&value)
                .map_err(de::Error::custom)?;
                self.identity.insert(key.into_owned(), value);
            } else {
                map.next_value_seed(Node {
                    state: &mut *state,
                    depth: 2,
                })?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.not_an_object("an array")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.not_an_object("a string")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.not_an_object("a boolean")
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.not_an_object("a number")
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.not_an_object("a number")
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.not_an_object("a number")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_an_object("null")
    }
}

/// Any value below the top level, `depth` being the depth it has if it is a container.
struct Node<'s, 'l> {
    state: &'s mut Flattener<'l>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.state.leaf(if value { 1.0 } else { 0.0 }, true)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.state.leaf(value as f64, false)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.state.leaf(value as f64, false)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        self.state.leaf(value, false)
    }

    // Strings and nulls are not metrics (see FlatMetrics).
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.state;
        state.enter(self.depth)?;
        let base = state.path.len();
        let first_entry = state.metrics.entries.len();
        let mut count = 0usize;
        let mut only_key_is_minus_one = false;
        while map
            .next_key_seed(KeySegment {
                path: &mut state.path,
                base,
            })?
            .is_some()
        {
            if count == 0 {
                only_key_is_minus_one = state.path[base..].trim_start_matches('.') == "-1";
            }
            count += 1;
            map.next_value_seed(Node {
                state: &mut *state,
                depth: self.depth + 1,
            })?;
        }
        state.path.truncate(base);
        // `{"-1": -1}` is a failed histogram, not a bucket: relabel the one leaf it produced.
        let entries = &mut state.metrics.entries;
        if count == 1 && only_key_is_minus_one && entries.len() == first_entry + 1 {
            let entry = &mut entries[first_entry];
            if !entry.is_bool && entry.value == -1.0 {
                entry.special = Some(SpecialValue::HistogramFailure);
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let state = self.state;
        state.enter(self.depth)?;
        let base = state.path.len();
        let mut index = 0usize;
        loop {
            state.path.truncate(base);
            // Writing to a String cannot fail.
            let _ = write!(state.path, "[{index}]");
            let element = seq.next_element_seed(Node {
                state: &mut *state,
                depth: self.depth + 1,
            })?;
            if element.is_none() {
                break;
            }
            index += 1;
        }
        state.path.truncate(base);
        Ok(())
    }
}

/// A map key: appended to the path buffer in place (`.key`), never allocated.
struct KeySegment<'s> {
    path: &'s mut String,
    base: usize,
}

impl<'de> DeserializeSeed<'de> for KeySegment<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySegment<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        self.path.truncate(self.base);
        if self.base > 0 {
            self.path.push('.');
        }
        self.path.push_str(key);
        Ok(())
    }
}

fn json_error(error: serde_json::Error, limits: &PayloadLimits) -> PayloadError {
    // serde_json's Display appends " at line L column C"; we report those separately.
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let reason = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    // The parser's own depth guard tripped: report it as the depth problem it is.
    if reason == "recursion limit exceeded" {
        return PayloadError::TooDeep {
            max_depth: limits.max_depth.min(PARSER_MAX_DEPTH),
        };
    }
    PayloadError::InvalidJson {
        line: error.line(),
        column: error.column(),
        reason,
    }
}

/// Flattens any JSON value (see [`FlatMetrics`] for the rules). A top-level scalar yields one
/// leaf with an empty key path.
///
/// The walk uses an explicit stack, not recursion, so it is safe on values built by other
/// code whatever their depth, and it enforces [`PayloadLimits::max_depth`] (a top-level
/// container is depth 1). The key path is one buffer extended and truncated in place.
pub fn flatten(value: &Value, limits: &PayloadLimits) -> Result<FlatMetrics, PayloadError> {
    match value {
        Value::Object(map) => flatten_object(map, limits),
        other => {
            let mut metrics = FlatMetrics::default();
            let mut path = String::new();
            let mut stack = Vec::new();
            visit(other, &mut path, &mut stack, &mut metrics, limits)?;
            drain(&mut path, &mut stack, &mut metrics, limits)?;
            sort_entries(&mut metrics);
            Ok(metrics)
        }
    }
}

/// A container being walked, with the path length to restore before each child.
enum Frame<'a> {
    Object(serde_json::map::Iter<'a>, usize),
    Array(std::iter::Enumerate<std::slice::Iter<'a, Value>>, usize),
}

fn flatten_object(
    map: &Map<String, Value>,
    limits: &PayloadLimits,
) -> Result<FlatMetrics, PayloadError> {
    let mut metrics = FlatMetrics {
        // ~45 bytes per key path on average in a full payload; one early reservation avoids
        // most regrowth of the key buffer.
        keys: String::with_capacity(map.len() * 64 * 8),
        entries: Vec::with_capacity(map.len() * 8),
        skipped_long_keys: 0,
    };
    if limits.max_depth == 0 {
        return Err(PayloadError::TooDeep { max_depth: 0 });
    }
    let mut path = String::with_capacity(256);
    let mut stack = vec![Frame::Object(map.iter(), 0)];
    drain(&mut path, &mut stack, &mut metrics, limits)?;
    sort_entries(&mut metrics);
    Ok(metrics)
}

fn sort_entries(metrics: &mut FlatMetrics) {
    let FlatMetrics { keys, entries, .. } = metrics;
    // Stable sort: duplicates keep document order (the last one is kept below).
    entries.sort_by(|a, b| {
        let key_a = &keys[a.start as usize..(a.start + a.len) as usize];
        let key_b = &keys[b.start as usize..(b.start + b.len) as usize];
        key_a.cmp(key_b)
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

fn drain<'a>(
    path: &mut String,
    stack: &mut Vec<Frame<'a>>,
    metrics: &mut FlatMetrics,
    limits: &PayloadLimits,
) -> Result<(), PayloadError> {
    while let Some(frame) = stack.last_mut() {
        let next = match frame {
            Frame::Object(iter, base) => iter.next().map(|(key, child)| {
                path.truncate(*base);
                if *base > 0 {
                    path.push('.');
                }
                path.push_str(key);
                child
            }),
            Frame::Array(iter, base) => iter.next().map(|(index, child)| {
                path.truncate(*base);
                // Writing to a String cannot fail.
                let _ = write!(path, "[{index}]");
                child
            }),
        };
        match next {
            Some(child) => visit(child, path, stack, metrics, limits)?,
            None => {
                stack.pop();
            }
        }
    }
    Ok(())
}

fn visit<'a>(
    value: &'a Value,
    path: &mut String,
    stack: &mut Vec<Frame<'a>>,
    metrics: &mut FlatMetrics,
    limits: &PayloadLimits,
) -> Result<(), PayloadError> {
    // Every open container is on the stack, so entering one more means depth len + 1.
    if matches!(value, Value::Object(_) | Value::Array(_)) && stack.len() >= limits.max_depth {
        return Err(PayloadError::TooDeep {
            max_depth: limits.max_depth,
        });
    }
    match value {
        Value::Number(number) => {
            // Without serde_json's arbitrary_precision every Number converts.
            if let Some(v) = number.as_f64() {
                metrics.push(path, v, false, SpecialValue::from_value(v), limits)?;
            }
        }
        Value::Bool(flag) => {
            let v = if *flag { 1.0 } else { 0.0 };
            metrics.push(path, v, true, None, limits)?;
        }
        Value::Object(map) if is_histogram_failure_map(map) => {
            let base = path.len();
            if base > 0 {
                path.push('.');
            }
            path.push_str("-1");
            let pushed = metrics.push(
                path,
                -1.0,
                false,
                Some(SpecialValue::HistogramFailure),
                limits,
            );
            path.truncate(base);
            pushed?;
        }
        Value::Object(map) => stack.push(Frame::Object(map.iter(), path.len())),
        Value::Array(items) => stack.push(Frame::Array(items.iter().enumerate(), path.len())),
        Value::String(_) | Value::Null => {}
    }
    Ok(())
}

fn summarize(object: &Map<String, Value>) -> Result<PayloadSummary, PayloadError> {
    let uuid = required_id(object, "uuid")?;
    let recorded_at = required_timestamp(object, "recorded_at")?;
    let unique_instance_id = identity_string(object, "unique_instance_id")?;
    if unique_instance_id
        .as_ref()
        .is_some_and(|id| id.chars().count() > MAX_ID_LEN)
    {
        return Err(PayloadError::TooLong {
            field: "unique_instance_id",
            max: MAX_ID_LEN,
        });
    }
    let hostname = identity_string(object, "hostname")?;
    let version = identity_string(object, "version")?.map(|raw| normalize_version(&raw));
    let licensee_name = match object.get("licensee") {
        Some(Value::Object(licensee)) => lenient_string(licensee.get("Name")),
        _ => None,
    };
    Ok(PayloadSummary {
        uuid,
        unique_instance_id,
        hostname,
        version,
        edition: lenient_string(object.get("edition")),
        installation_type: lenient_string(object.get("installation_type")),
        active_user_count: lenient_count(object.get("active_user_count")),
        historical_max_users: lenient_count(object.get("historical_max_users")),
        license_md5: lenient_string(object.get("license_md5")),
        license_sha256: lenient_string(object.get("license_sha256")),
        license_id: lenient_count(object.get("license_id")),
        license_plan: lenient_string(object.get("license_plan")),
        license_trial: lenient_bool(object.get("license_trial")),
        license_expires_at: lenient_date(object.get("license_expires_at")),
        license_user_count: lenient_count(object.get("license_user_count")),
        licensee_name,
        recorded_at,
    })
}

fn required_id(object: &Map<String, Value>, field: &'static str) -> Result<String, PayloadError> {
    match object.get(field) {
        None | Some(Value::Null) => Err(PayloadError::MissingField { field }),
        Some(Value::String(text)) => {
            let text = text.trim();
            if text.is_empty() {
                Err(PayloadError::EmptyField { field })
            } else if text.chars().count() > MAX_ID_LEN {
                Err(PayloadError::TooLong {
                    field,
                    max: MAX_ID_LEN,
                })
            } else {
                Ok(text.to_owned())
            }
        }
        Some(_) => Err(PayloadError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn required_timestamp(
    object: &Map<String, Value>,
    field: &'static str,
) -> Result<DateTime<Utc>, PayloadError> {
    match object.get(field) {
        None | Some(Value::Null) => Err(PayloadError::MissingField { field }),
        Some(Value::String(text)) if text.trim().is_empty() => {
            Err(PayloadError::EmptyField { field })
        }
        Some(Value::String(text)) => {
            parse_timestamp(text).ok_or_else(|| PayloadError::BadTimestamp {
                field,
                value: text.chars().take(MAX_ECHO_LEN).collect(),
            })
        }
        Some(_) => Err(PayloadError::WrongType {
            field,
            expected: "a string timestamp",
        }),
    }
}

/// An optional identity field: absent, `null` or blank is `None`; any non-string is an error,
/// because a number where the hostname belongs means the sender is not a GitLab instance.
fn identity_string(
    object: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, PayloadError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(non_blank(text)),
        Some(_) => Err(PayloadError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn non_blank(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn lenient_string(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => non_blank(text),
        _ => None,
    }
}

/// Reads a count given as an integer, an integral float (`12.0`) or a numeric string (`"12"`).
/// Anything else, e.g. the SQL text of a "metrics queries" payload, is `None`.
fn lenient_count(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(number) => number.as_i64().or_else(|| {
            number
                .as_f64()
                .filter(|v| v.fract() == 0.0 && v.abs() < 9.0e15)
                .map(|v| v as i64)
        }),
        Value::String(text) => text.trim().parse::<i64>().ok(),
        _ => None,
    }
}

fn lenient_bool(value: Option<&Value>) -> Option<bool> {
    match value? {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) => match text.trim() {
            "true" | "TRUE" | "True" => Some(true),
            "false" | "FALSE" | "False" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn lenient_date(value: Option<&Value>) -> Option<NaiveDate> {
    let Value::String(text) = value? else {
        return None;
    };
    let text = text.trim();
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .or_else(|| parse_timestamp(text).map(|at| at.date_naive()))
}

/// Reads the timestamp forms GitLab has used for `recorded_at` over the years, always
/// returning UTC:
///
/// * `2021-02-09 11:32:05 UTC` (Ruby `Time#to_s` in UTC; 13.x and many later versions)
/// * `2024-01-05 10:00:00 +0000`, `2024-01-05 10:00:00 -0500` (`Time#to_s` in a local zone)
/// * `2024-01-05T10:00:00.123Z`, `2020-04-17T07:43:54.162+00:00` (ISO 8601 / RFC 3339)
/// * `2024-01-05T10:00:00` and `2024-01-05 10:00:00` without a zone (read as UTC)
///
/// Fractional seconds are accepted in every form.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if text.len() > MAX_ECHO_LEN {
        return None;
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    // Explicit offsets: "+0000", "+00:00", with or without a space before them.
    for format in [
        "%Y-%m-%d %H:%M:%S%.f %z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f %z",
    ] {
        if let Ok(at) = DateTime::parse_from_str(text, format) {
            return Some(at.with_timezone(&Utc));
        }
    }
    // "UTC"/"Z" suffixes and zone-less forms are UTC by GitLab's convention.
    let naive_text = text
        .strip_suffix("UTC")
        .or_else(|| text.strip_suffix('Z'))
        .map(str::trim_end)
        .unwrap_or(text);
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(naive_text, format).ok())
        .map(|naive| naive.and_utc())
}

/// Normalises a reported version the way version checks do (`domain::version`): drop a
/// leading `v`, an edition suffix (`-ee`, `+ee`, also after a pre-release: `-rc42-ee`) and
/// build metadata. Keeps `-pre` / `-rcN`.
pub fn normalize_version(raw: &str) -> PayloadVersion {
    let raw = raw.trim();
    // One normalisation rule for the whole application: the version check's.
    let parsed = Version::parse(raw).ok();
    let to_i64 = |n: u64| i64::try_from(n).ok();
    PayloadVersion {
        raw: raw.to_owned(),
        normalized: parsed
            .as_ref()
            .map_or_else(|| raw.to_owned(), ToString::to_string),
        major: parsed.as_ref().and_then(|v| to_i64(v.major())),
        minor: parsed.as_ref().and_then(|v| to_i64(v.minor())),
        patch: parsed.as_ref().and_then(|v| to_i64(v.patch())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The complete 13.9.0-pre "metrics queries" payload (database metrics are SQL text).
    const PAYLOAD_13_9: &[u8] = include_bytes!("../../tests/fixtures/payload_13.9.0-pre.json");
    /// A full-size 18.9 payload from `scripts/gen_payload.py --seed 21 --special-rate 0.02`.
    const PAYLOAD_18_9: &[u8] =
        include_bytes!("../../tests/fixtures/payload_18.9.0_generated.json");
    /// A "required categories only" 18.9 payload from `gen_payload.py --seed 2 --minimal`.
    const PAYLOAD_18_9_MINIMAL: &[u8] =
        include_bytes!("../../tests/fixtures/payload_18.9.0_minimal.json");

    fn parse(bytes: &[u8]) -> Result<ParsedPayload, PayloadError> {
        parse_payload(bytes, &PayloadLimits::default())
    }

    fn parse_str(text: &str) -> Result<ParsedPayload, PayloadError> {
        parse(text.as_bytes())
    }

    fn error_of(text: &str) -> String {
        parse_str(text).unwrap_err().to_string()
    }

    const ID: &str = r#""uuid":"abc","recorded_at":"2024-01-05 10:00:00 UTC""#;

    fn with_id(rest: &str) -> String {
        if rest.is_empty() {
            format!("{{{ID}}}")
        } else {
            format!("{{{ID},{rest}}}")
        }
    }

    #[test]
    fn fixture_13_9_summary() {
        let parsed = parse(PAYLOAD_13_9).unwrap();
        let s = &parsed.summary;
        assert_eq!(parsed.top_level_keys, 58);
        assert_eq!(s.uuid, "b4002b0e-666a-43ba-9422-6cc2cab3baff");
        assert_eq!(s.unique_instance_id, None);
        assert_eq!(s.hostname.as_deref(), Some("127.0.0.1"));
        let version = s.version.as_ref().unwrap();
        assert_eq!(version.raw, "13.9.0-pre");
        assert_eq!(version.normalized, "13.9.0-pre");
        assert_eq!(
            (version.major, version.minor, version.patch),
            (Some(13), Some(9), Some(0))
        );
        assert_eq!(s.edition.as_deref(), Some("EEU"));
        assert_eq!(
            s.installation_type.as_deref(),
            Some("gitlab-development-kit")
        );
        // The sample holds SQL text here: unusable, so None rather than an error.
        assert_eq!(s.active_user_count, None);
        assert_eq!(s.historical_max_users, Some(66));
        assert_eq!(
            s.license_md5.as_deref(),
            Some("106a4b25eca48a02bc6f30031a7cde05")
        );
        assert_eq!(s.license_sha256, None);
        assert_eq!(s.license_id, Some(32));
        assert_eq!(s.license_plan.as_deref(), Some("ultimate"));
        assert_eq!(s.license_trial, Some(false));
        assert_eq!(s.license_expires_at, None);
        assert_eq!(s.license_user_count, Some(30));
        assert!(s.licensee_name.is_some());
        assert_eq!(
            s.recorded_at,
            Utc.with_ymd_and_hms(2021, 2, 9, 13, 25, 42).unwrap()
        );
    }

    #[test]
    fn fixture_13_9_flattening() {
        let parsed = parse(PAYLOAD_13_9).unwrap();
        let metrics = &parsed.metrics;
        // 1,296 leaves in all: 717 strings (mostly SQL), 4 arrays of strings or empty, and 3
        // nulls are skipped; 525 integers, 1 float and 46 booleans remain.
        assert_eq!(metrics.len(), 572);
        assert_eq!(metrics.iter().filter(|m| m.is_bool).count(), 46);
        assert_eq!(metrics.skipped_long_keys(), 0);
        assert_eq!(metrics.get("license_id"), Some(32.0));
        assert_eq!(metrics.get("historical_max_users"), Some(66.0));
        let ldap = metrics.metric("ldap_enabled").unwrap();
        assert!(ldap.is_bool);
        assert_eq!(ldap.value, 0.0);
        assert_eq!(metrics.get("gitlab_shared_runners_enabled"), Some(1.0));
        // SQL text is not a metric.
        assert_eq!(metrics.get("counts.issues"), None);
        // Sorted, so binary search works and the order is stable across serde_json features.
        let keys: Vec<&str> = metrics.iter().map(|m| m.key).collect();
        assert!(keys.windows(2).all(|pair| pair[0] <= pair[1]));
        // Nested paths use dots.
        assert!(keys
            .iter()
            .any(|k| k.starts_with("usage_activity_by_stage_monthly.")));
        assert!(keys.iter().any(|k| k.starts_with("redis_hll_counters.")));
    }

    #[test]
    fn generated_18_9_payload() {
        let parsed = parse(PAYLOAD_18_9).unwrap();
        let s = &parsed.summary;
        assert!(s.unique_instance_id.is_some());
        let version = s.version.as_ref().unwrap();
        assert!(version.raw.starts_with("18.9.0"));
        assert_eq!(version.normalized, "18.9.0");
        assert_eq!(version.major, Some(18));
        assert!(s.active_user_count.is_some());
        // ~4,200 key paths; string-valued ones are skipped, topology adds a few per node.
        let n = parsed.metrics.len();
        assert!((3_900..=4_600).contains(&n), "{n} metrics");
        assert!(parsed.metrics.get("counts.issues").is_some());
        assert!(parsed
            .metrics
            .iter()
            .any(|m| m.key.contains("topology.nodes[0].")));
        // The generator sprinkles sentinels; they are kept, flagged, and exactly valued.
        let specials: Vec<_> = parsed.metrics.iter().filter(|m| !m.is_valid()).collect();
        assert!(!specials.is_empty());
        assert!(specials.iter().all(
            |m| is_special_value(m.value) || m.special == Some(SpecialValue::HistogramFailure)
        ));
    }

    #[test]
    fn generated_minimal_payload() {
        let parsed = parse(PAYLOAD_18_9_MINIMAL).unwrap();
        let n = parsed.metrics.len();
        assert!((200..=400).contains(&n), "{n} metrics");
        // Optional-category identity fields are absent in minimal payloads.
        assert_eq!(parsed.summary.unique_instance_id, None);
        assert_eq!(parsed.summary.installation_type, None);
        assert!(parsed.summary.hostname.is_some());
    }

    #[test]
    fn rejects_non_json_with_position() {
        assert_eq!(
            error_of("{\"a\": ?}"),
            "payload is not valid JSON at line 1 column 7: expected value"
        );
        let err = parse_str("{\n  \"uuid\": \"x\",\n}").unwrap_err();
        assert!(
            matches!(err, PayloadError::InvalidJson { line: 3, .. }),
            "{err}"
        );
        assert!(matches!(
            parse(b"{\"uuid\": \"\xff\"}").unwrap_err(),
            PayloadError::InvalidJson { .. }
        ));
        assert!(error_of("{\"uuid\":").starts_with("payload is not valid JSON at line 1"));
    }

    #[test]
    fn rejects_empty_and_non_objects() {
        assert_eq!(error_of(""), "payload is empty");
        assert_eq!(error_of("  \n "), "payload is empty");
        assert_eq!(
            error_of("[1,2]"),
            "payload must be a JSON object, not an array"
        );
        assert_eq!(
            error_of("\"x\""),
            "payload must be a JSON object, not a string"
        );
        assert_eq!(error_of("null"), "payload must be a JSON object, not null");
        assert_eq!(
            error_of("42"),
            "payload must be a JSON object, not a number"
        );
    }

    #[test]
    fn accepts_bom_and_whitespace() {
        let body = format!("\u{feff}\n  {}\n", with_id(""));
        assert_eq!(parse_str(&body).unwrap().summary.uuid, "abc");
    }

    #[test]
    fn uuid_is_required_non_empty_string() {
        let at = r#""recorded_at":"2024-01-05 10:00:00 UTC""#;
        assert_eq!(
            error_of(&format!("{{{at}}}")),
            "missing required field `uuid`"
        );
        assert_eq!(
            error_of(&format!("{{{at},\"uuid\":null}}")),
            "missing required field `uuid`"
        );
        assert_eq!(
            error_of(&format!("{{{at},\"uuid\":\"  \"}}")),
            "field `uuid` must not be empty"
        );
        assert_eq!(
            error_of(&format!("{{{at},\"uuid\":123}}")),
            "field `uuid` must be a string"
        );
        let long = "a".repeat(MAX_ID_LEN + 1);
        assert_eq!(
            error_of(&format!("{{{at},\"uuid\":\"{long}\"}}")),
            format!("field `uuid` is longer than {MAX_ID_LEN} characters")
        );
        let parsed = parse_str(&format!("{{{at},\"uuid\":\" u-1 \"}}")).unwrap();
        assert_eq!(parsed.summary.uuid, "u-1");
    }

    #[test]
    fn recorded_at_is_required_and_parsed() {
        assert_eq!(
            error_of(r#"{"uuid":"a"}"#),
            "missing required field `recorded_at`"
        );
        assert_eq!(
            error_of(r#"{"uuid":"a","recorded_at":1704448800}"#),
            "field `recorded_at` must be a string timestamp"
        );
        assert_eq!(
            error_of(r#"{"uuid":"a","recorded_at":""}"#),
            "field `recorded_at` must not be empty"
        );
        assert_eq!(
            error_of(r#"{"uuid":"a","recorded_at":"last tuesday"}"#),
            "field `recorded_at` is not a recognised timestamp: \"last tuesday\""
        );
    }

    #[test]
    fn timestamp_forms() {
        let utc = |y, mo, d, h, mi, s| Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap();
        let ms = chrono::Duration::milliseconds(123);
        let cases = [
            ("2021-02-09 11:32:05 UTC", utc(2021, 2, 9, 11, 32, 5)),
            ("2021-02-09 11:32:05UTC", utc(2021, 2, 9, 11, 32, 5)),
            ("2024-01-05T10:00:00.123Z", utc(2024, 1, 5, 10, 0, 0) + ms),
            ("2024-01-05 10:00:00 +0000", utc(2024, 1, 5, 10, 0, 0)),
            ("2024-01-05 10:00:00 -0500", utc(2024, 1, 5, 15, 0, 0)),
            ("2024-01-05 10:00:00 +01:00", utc(2024, 1, 5, 9, 0, 0)),
            (
                "2020-04-17T07:43:54.162+00:00",
                utc(2020, 4, 17, 7, 43, 54) + chrono::Duration::milliseconds(162),
            ),
            ("2024-01-05T10:00:00+02:00", utc(2024, 1, 5, 8, 0, 0)),
            ("2024-01-05 10:00:00Z", utc(2024, 1, 5, 10, 0, 0)),
            ("2024-01-05T10:00:00", utc(2024, 1, 5, 10, 0, 0)),
            (
                "2024-01-05 10:00:00.5",
                utc(2024, 1, 5, 10, 0, 0) + chrono::Duration::milliseconds(500),
            ),
            (" 2024-01-05 10:00:00 UTC\n", utc(2024, 1, 5, 10, 0, 0)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_timestamp(text), Some(expected), "{text}");
        }
        for bad in [
            "",
            "2024-01-05",
            "2024-13-05 10:00:00 UTC",
            "10:00",
            "2024-01-05 25:00:00",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn identity_fields_must_be_strings() {
        for field in ["unique_instance_id", "hostname", "version"] {
            assert_eq!(
                error_of(&with_id(&format!("\"{field}\":42"))),
                format!("field `{field}` must be a string")
            );
            assert_eq!(
                error_of(&with_id(&format!("\"{field}\":{{}}"))),
                format!("field `{field}` must be a string")
            );
            // null and blank mean "not sent".
            assert!(parse_str(&with_id(&format!("\"{field}\":null"))).is_ok());
            assert!(parse_str(&with_id(&format!("\"{field}\":\" \""))).is_ok());
        }
    }

    #[test]
    fn optional_fields_are_lenient() {
        let parsed = parse_str(&with_id(
            r#""active_user_count":"123","historical_max_users":150.0,"license_id":"SELECT 1",
               "license_trial":"true","license_user_count":true,"edition":7,
               "license_expires_at":"2025-12-31","licensee":{"Name":"ACME","Email":"x@y"},
               "license_plan":"" "#,
        ))
        .unwrap();
        let s = parsed.summary;
        assert_eq!(s.active_user_count, Some(123));
        assert_eq!(s.historical_max_users, Some(150));
        assert_eq!(s.license_id, None);
        assert_eq!(s.license_trial, Some(true));
        assert_eq!(s.license_user_count, None);
        assert_eq!(s.edition, None);
        assert_eq!(s.license_expires_at, NaiveDate::from_ymd_opt(2025, 12, 31));
        assert_eq!(s.licensee_name.as_deref(), Some("ACME"));
        assert_eq!(s.license_plan, None);
        assert_eq!(s.hostname, None);
        assert_eq!(s.version, None);
    }

    #[test]
    fn special_counts_are_kept_in_the_summary() {
        let s = parse_str(&with_id(r#""active_user_count":-1"#))
            .unwrap()
            .summary;
        assert_eq!(s.active_user_count, Some(-1));
    }

    #[test]
    fn version_normalisation() {
        let cases = [
            ("18.9.0-ee", "18.9.0", Some((18, 9, 0))),
            ("10.0.4+ee", "10.0.4", Some((10, 0, 4))),
            ("13.9.0-pre", "13.9.0-pre", Some((13, 9, 0))),
            ("16.9.0-rc42", "16.9.0-rc42", Some((16, 9, 0))),
            ("16.9.0-rc42-ee", "16.9.0-rc42", Some((16, 9, 0))),
            ("v15.2.2", "15.2.2", Some((15, 2, 2))),
            ("15.2", "15.2", None),
            ("8.4-ee", "8.4-ee", None), // unreadable versions are kept as sent
            ("garbage", "garbage", None),
        ];
        for (raw, normalized, parts) in cases {
            let v = normalize_version(raw);
            assert_eq!(v.raw, raw);
            assert_eq!(v.normalized, normalized, "{raw}");
            let got = v
                .major
                .map(|major| (major, v.minor.unwrap(), v.patch.unwrap()));
            assert_eq!(got, parts, "{raw}");
        }
    }

    #[test]
    fn flattening_rules() {
        let parsed = parse_str(&with_id(
            r#""counts":{"issues":5,"ratio":0.5,"failed":-1,"hll":-2,"placeholder":-3,
                         "old":-1000,"odd":-7,"sql":"SELECT 1","none":null},
               "settings":{"ldap_enabled":true,"nested":{"deep":{"x":1}}},
               "histogram":{"-1":-1},
               "real_histogram":{"-1":3,"5":2},
               "topology":{"nodes":[{"node_cpus":8,"node_services":[{"process_count":2}]}],
                           "failures":[]},
               "gitaly":{"filesystems":["ext4"]},
               "flags":[true,1]"#,
        ))
        .unwrap();
        let m = &parsed.metrics;
        let pairs = m.to_pairs();
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "counts.failed",
                "counts.hll",
                "counts.issues",
                "counts.odd",
                "counts.old",
                "counts.placeholder",
                "counts.ratio",
                "flags[0]",
                "flags[1]",
                "histogram.-1",
                "real_histogram.-1",
                "real_histogram.5",
                "settings.ldap_enabled",
                "settings.nested.deep.x",
                "topology.nodes[0].node_cpus",
                "topology.nodes[0].node_services[0].process_count",
            ]
        );
        assert_eq!(m.get("counts.issues"), Some(5.0));
        assert_eq!(m.get("counts.ratio"), Some(0.5));
        // Sentinels are data: exact values kept, flagged, excluded by get_valid.
        for (key, value, kind) in [
            ("counts.failed", -1.0, SpecialValue::Failure),
            ("counts.hll", -2.0, SpecialValue::HllFailure),
            ("counts.placeholder", -3.0, SpecialValue::Placeholder),
            ("counts.old", -1000.0, SpecialValue::Deprecated),
            ("histogram.-1", -1.0, SpecialValue::HistogramFailure),
        ] {
            let metric = m.metric(key).unwrap();
            assert_eq!(metric.value, value, "{key}");
            assert_eq!(metric.special, Some(kind), "{key}");
            assert_eq!(m.get_valid(key), None, "{key}");
        }
        // Not a sentinel: -7 is odd but not one of GitLab's codes; a histogram with a
        // real "-1" bucket is not a failure.
        assert_eq!(m.metric("counts.odd").unwrap().special, None);
        assert_eq!(m.metric("real_histogram.-1").unwrap().special, None);
        assert_eq!(m.histogram_failures().collect::<Vec<_>>(), ["histogram"]);
        assert!(m.metric("flags[0]").unwrap().is_bool);
        assert!(!m.metric("flags[1]").unwrap().is_bool);
        assert_eq!(m.get("settings.ldap_enabled"), Some(1.0));
        assert_eq!(m.get("counts"), None);
        assert_eq!(m.get("counts.sql"), None);
        assert_eq!(m.get("counts.none"), None);
    }

    #[test]
    fn special_value_helpers() {
        for v in [-1.0, -2.0, -3.0, -1000.0] {
            assert!(is_special_value(v));
        }
        for v in [0.0, 1.0, -4.0, -1.5, -999.0, f64::NAN] {
            assert!(!is_special_value(v));
        }
        assert!(is_histogram_failure(&serde_json::json!({"-1": -1})));
        assert!(is_histogram_failure(&serde_json::json!({"-1": -1.0})));
        assert!(!is_histogram_failure(
            &serde_json::json!({"-1": -1, "0": 4})
        ));
        assert!(!is_histogram_failure(&serde_json::json!({"-1": 2})));
        assert!(!is_histogram_failure(&serde_json::json!(-1)));
    }

    #[test]
    fn top_level_histogram_failure_and_scalars_flatten() {
        let m = flatten(&serde_json::json!({"-1": -1}), &PayloadLimits::default()).unwrap();
        assert_eq!(m.to_pairs(), [("-1".to_owned(), -1.0)]);
        let m = flatten(&serde_json::json!(3), &PayloadLimits::default()).unwrap();
        assert_eq!(m.to_pairs(), [(String::new(), 3.0)]);
    }

    #[test]
    fn depth_limit_is_exact_and_ignores_brackets_in_strings() {
        // The payload object is depth 1, so 63 nested arrays inside it reach exactly 64.
        let nested = |n: usize| with_id(&format!("\"x\":{}1{}", "[".repeat(n), "]".repeat(n)));
        assert!(parse_str(&nested(63)).is_ok());
        assert_eq!(
            parse_str(&nested(64)).unwrap_err(),
            PayloadError::TooDeep { max_depth: 64 }
        );
        // Brackets in strings (even after an escaped quote) are text, not nesting.
        let tricky = with_id(&format!(r#""k\"[[[":"{}","v":[1]"#, "[".repeat(100)));
        let limits = PayloadLimits {
            max_depth: 2,
            ..PayloadLimits::default()
        };
        assert!(parse_payload(tricky.as_bytes(), &limits).is_ok());
        // A failed histogram is an object too.
        let histogram = with_id(r#""h":{"-1":-1}"#);
        assert!(parse_payload(histogram.as_bytes(), &limits).is_ok());
        let limits = PayloadLimits {
            max_depth: 1,
            ..PayloadLimits::default()
        };
        assert!(parse_payload(histogram.as_bytes(), &limits).is_err());
        assert!(parse_payload(with_id(r#""n":1"#).as_bytes(), &limits).is_ok());
    }

    #[test]
    fn deep_nesting_is_rejected_without_blowing_the_stack() {
        // 100,000 nested arrays inside a payload, unterminated, as an attacker would send them.
        let body = format!("{{{ID},\"x\":{}", "[".repeat(100_000));
        assert_eq!(
            parse_str(&body).unwrap_err().to_string(),
            "JSON nesting deeper than 64 levels"
        );
        // Terminated, and a full megabyte of it.
        let body = with_id(&format!(
            "\"x\":{}1{}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ));
        assert_eq!(
            parse_str(&body).unwrap_err(),
            PayloadError::TooDeep { max_depth: 64 }
        );
        let mut body = b"{\"x\":".to_vec();
        body.resize(1 << 20, b'[');
        assert_eq!(
            parse(&body).unwrap_err(),
            PayloadError::TooDeep { max_depth: 64 }
        );
        // Deep objects.
        assert_eq!(
            parse_str(&"{\"a\":".repeat(100_000)).unwrap_err(),
            PayloadError::TooDeep { max_depth: 64 }
        );
        // A bare array is refused for what it is before its depth matters.
        assert_eq!(
            parse_str(&"[".repeat(100_000)).unwrap_err().to_string(),
            "payload must be a JSON object, not an array"
        );
        // Objects count too; the configured limit applies.
        let limits = PayloadLimits {
            max_depth: 3,
            ..PayloadLimits::default()
        };
        let body = with_id(r#""a":{"b":{"c":{"d":1}}}"#);
        assert!(matches!(
            parse_payload(body.as_bytes(), &limits),
            Err(PayloadError::TooDeep { max_depth: 3 })
        ));
        let body = with_id(r#""a":{"b":{"c":1}}"#);
        assert!(parse_payload(body.as_bytes(), &limits).is_ok());
    }

    #[test]
    fn streaming_and_value_flattening_agree() {
        // parse_payload flattens while parsing; flatten() walks a Value. Same rules, same output.
        for bytes in [PAYLOAD_13_9, PAYLOAD_18_9, PAYLOAD_18_9_MINIMAL] {
            let streamed = parse(bytes).unwrap().metrics;
            let value: Value = serde_json::from_slice(bytes).unwrap();
            let walked = flatten(&value, &PayloadLimits::default()).unwrap();
            assert_eq!(streamed.len(), walked.len());
            assert!(streamed.iter().eq(walked.iter()));
        }
    }

    #[test]
    fn trailing_garbage_is_invalid_json() {
        let body = format!("{} x", with_id(""));
        assert!(matches!(
            parse_str(&body).unwrap_err(),
            PayloadError::InvalidJson { ref reason, .. } if reason == "trailing characters"
        ));
    }

    #[test]
    fn parser_depth_constant_matches_serde_json() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(serde_json::from_str::<Value>(&nested(PARSER_MAX_DEPTH)).is_ok());
        assert!(serde_json::from_str::<Value>(&nested(PARSER_MAX_DEPTH + 1)).is_err());
        // A limit above the parser's is reported as the parser's.
        let limits = PayloadLimits {
            max_depth: 1_000,
            ..PayloadLimits::default()
        };
        let body = with_id(&format!("\"x\":{}", nested(200)));
        assert_eq!(
            parse_payload(body.as_bytes(), &limits).unwrap_err(),
            PayloadError::TooDeep {
                max_depth: PARSER_MAX_DEPTH
            }
        );
    }

    #[test]
    fn flatten_is_iterative_on_deep_values() {
        // Built in code, so no parser limit applies; the walk must not recurse, and the
        // configured depth limit still applies.
        let mut value = serde_json::json!(1);
        for _ in 0..50_000 {
            value = Value::Array(vec![value]);
        }
        let limits = PayloadLimits {
            max_key_len: usize::MAX,
            max_depth: usize::MAX,
            ..PayloadLimits::default()
        };
        let m = flatten(&value, &limits).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m.iter().next().unwrap().key.len(), 3 * 50_000);
        assert_eq!(
            flatten(&value, &PayloadLimits::default()).unwrap_err(),
            PayloadError::TooDeep { max_depth: 64 }
        );
        // serde_json drops Values recursively; unwind it by hand to keep this test safe.
        let mut current = value;
        while let Value::Array(mut items) = current {
            current = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn metric_count_and_key_length_limits() {
        let limits = PayloadLimits {
            max_metrics: 3,
            max_key_len: 10,
            ..PayloadLimits::default()
        };
        let ok = with_id(r#""a":1,"b":2,"c":{"d":true},"a_very_long_key":4"#);
        let parsed = parse_payload(ok.as_bytes(), &limits).unwrap();
        assert_eq!(parsed.metrics.len(), 3);
        assert_eq!(parsed.metrics.skipped_long_keys(), 1);
        let too_many = with_id(r#""a":1,"b":2,"c":3,"d":4"#);
        assert_eq!(
            parse_payload(too_many.as_bytes(), &limits)
                .unwrap_err()
                .to_string(),
            "payload has more than 3 numeric or boolean metrics"
        );
    }

    #[test]
    fn duplicate_flattened_paths_keep_the_last_value() {
        let parsed = parse_str(&with_id(r#""a":{"b":1},"a.b":2"#)).unwrap();
        assert_eq!(parsed.metrics.len(), 1);
        assert_eq!(parsed.metrics.get("a.b"), Some(2.0));
        let parsed = parse_str(&with_id(r#""c":{"a":1,"a":2,"z":1,"a":3}"#)).unwrap();
        assert_eq!(parsed.metrics.get("c.a"), Some(3.0));
        assert_eq!(parsed.metrics.len(), 2);
    }
}
