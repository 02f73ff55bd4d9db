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
//!
//! Files: [`flat`] holds the flattened form, [`stream`] the flattening parser, [`special`]
//! the sentinel rules, [`summary`] the identity fields, [`stored`] the text form values are
//! stored in.

mod flat;
mod special;
pub mod stored;
mod stream;
mod summary;
#[cfg(test)]
mod tests;

pub use flat::{FlatMetrics, Metric};
pub use special::{is_histogram_failure, is_special_value, SpecialValue};
pub use summary::{normalize_version, parse_timestamp};

use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeSeed;
use serde::Serialize;
use serde_json::Map;

use stream::{Flattener, TopLevel};
use summary::summarize;

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
    /// `license_starts_at` (read like `license_expires_at`).
    pub license_starts_at: Option<NaiveDate>,
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
    let mut state = Flattener::new(limits, bytes.len());
    let mut identity = Map::new();
    let mut top_level_keys = 0;
    let top = TopLevel {
        state: &mut state,
        identity: &mut identity,
        keys: &mut top_level_keys,
    };
    // One UTF-8 check of the whole body, then a parser that trusts it: checking each of a
    // payload's ~10,000 strings on its own was ~3 % of ingest CPU. A body that is not UTF-8
    // goes through the checking parser, which names where it breaks, as before.
    let outcome = match std::str::from_utf8(bytes) {
        Ok(text) => deserialize_all(top, serde_json::Deserializer::from_str(text)),
        Err(_) => deserialize_all(top, serde_json::Deserializer::from_slice(bytes)),
    };
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

/// Runs the flattening parser over the whole input, then checks nothing follows the object.
fn deserialize_all<'de, R: serde_json::de::Read<'de>>(
    top: TopLevel<'_, '_>,
    mut deserializer: serde_json::Deserializer<R>,
) -> Result<(), serde_json::Error> {
    top.deserialize(&mut deserializer)?;
    deserializer.end()
}

/// Top-level fields read into the summary; the parser keeps them as values while it streams
/// everything else into the flattened metrics.
const IDENTITY_FIELDS: [&str; 18] = [
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
    "license_starts_at",
    "license_user_count",
    "licensee",
];

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
