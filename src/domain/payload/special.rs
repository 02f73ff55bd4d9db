//! GitLab's sentinel values and the failed-histogram marker.

use serde::Serialize;
use serde_json::{Map, Value};

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
