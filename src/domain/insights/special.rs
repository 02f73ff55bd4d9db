//! Special values: the sentinels GitLab writes instead of a measurement are never counted.
//!
//! `-1` (the query timed out or failed), `-2` (a Redis HLL failure), `-3` (a placeholder),
//! `-1000` (deprecated) and a failed histogram `{"-1": -1}` (flattened by ingest as the leaf
//! `<path>.-1 = -1`) are excluded from every aggregate, and how many were excluded is shown.

use crate::domain::payload::SpecialValue;

/// True when a stored leaf is a sentinel and must be excluded.
pub fn is_special(key_path: &str, value: f64) -> bool {
    SpecialValue::from_value(value).is_some() || (key_path.ends_with(".-1") && value == -1.0)
}

/// The metric a histogram-failure leaf stands for: `a.b.-1` reports on `a.b`.
pub fn reported_key(key_path: &str) -> &str {
    key_path.strip_suffix(".-1").unwrap_or(key_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_are_special() {
        for v in [-1.0, -2.0, -3.0, -1000.0] {
            assert!(is_special("counts.issues", v), "{v}");
        }
        for v in [0.0, 1.0, -4.0, -1.5, -999.0, 1000.0] {
            assert!(!is_special("counts.issues", v), "{v}");
        }
        assert!(is_special("topology.duration_histogram.-1", -1.0));
        assert_eq!(
            reported_key("topology.duration_histogram.-1"),
            "topology.duration_histogram"
        );
        assert_eq!(reported_key("counts.issues"), "counts.issues");
    }
}
