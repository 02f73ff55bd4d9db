//! The time frame of a metric, read from its key path: THE one place this mapping lives.
//!
//! | key path | time frame | what a period's value is |
//! |---|---|---|
//! | last segment ends `_monthly` or `_28d` | 28 days | the counted submission's value |
//! | last segment ends `_weekly` or `_7d` | 7 days | the counted submission's value |
//! | else, a segment ends `_monthly`/`_28d` (`counts_monthly.*`, `usage_activity_by_stage_monthly.*`) | 28 days | as above |
//! | else, a segment ends `_weekly`/`_7d`, or starts the path as `*_unique_visits` | 7 days | as above |
//! | else, under `counts.`, `usage_activity_by_stage.`, `counts_all.` | all time | the difference from the installation's previous period with a submission (negative → 0; none in its first period) |
//! | anything else (settings, topology, licence fields, …) | none | the counted submission's value, as a point-in-time reading |
//!
//! The default for an unknown key is therefore `none`: a value is never turned into a
//! difference unless its path says it is a running total. Against GitLab 18.9's metric
//! definitions this guess agrees for more than 98% of key paths (a unit test checks it);
//! an imported definition's `time_frame` takes precedence over the guess.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// How a metric's value relates to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum TimeFrame {
    /// Counted over the 28 days before the submission.
    #[serde(rename = "28d")]
    Days28,
    /// Counted over the 7 days before the submission.
    #[serde(rename = "7d")]
    Days7,
    /// A running total since the instance was installed.
    #[serde(rename = "all")]
    AllTime,
    /// A point-in-time reading (a setting, a size, a flag).
    #[serde(rename = "none")]
    None,
}

impl TimeFrame {
    /// The name used by GitLab's metric definitions: `28d`, `7d`, `all`, `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeFrame::Days28 => "28d",
            TimeFrame::Days7 => "7d",
            TimeFrame::AllTime => "all",
            TimeFrame::None => "none",
        }
    }

    /// True when a period's value is a difference between two submissions.
    pub fn is_cumulative(self) -> bool {
        self == TimeFrame::AllTime
    }

    /// The time frame guessed from a key path (see the module table).
    pub fn from_key_path(key_path: &str) -> TimeFrame {
        let segments: Vec<&str> = key_path.split('.').collect();
        let last = segments.last().copied().unwrap_or_default();
        if let Some(frame) = windowed(last) {
            return frame;
        }
        for segment in segments.iter().rev() {
            if let Some(frame) = windowed(segment) {
                return frame;
            }
        }
        let first = segments.first().copied().unwrap_or_default();
        if first.ends_with("_unique_visits") {
            return TimeFrame::Days7;
        }
        if segments.len() > 1
            && matches!(first, "counts" | "usage_activity_by_stage" | "counts_all")
        {
            return TimeFrame::AllTime;
        }
        TimeFrame::None
    }
}

/// Where a key path's time frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FrameSource {
    /// An imported metric definition (`version-app metrics import`).
    #[serde(rename = "definition")]
    Definition,
    /// The key-path rule of the module table.
    #[serde(rename = "key_path")]
    KeyPath,
}

impl FrameSource {
    /// `definition` or `key_path`.
    pub fn as_str(self) -> &'static str {
        match self {
            FrameSource::Definition => "definition",
            FrameSource::KeyPath => "key_path",
        }
    }
}

/// The time frame that applies to a key path: its definition's when it has one (and that
/// one is readable), else the key-path guess.
pub fn effective(key_path: &str, defined: Option<&str>) -> (TimeFrame, FrameSource) {
    match defined.and_then(|text| text.parse::<TimeFrame>().ok()) {
        Some(frame) => (frame, FrameSource::Definition),
        None => (TimeFrame::from_key_path(key_path), FrameSource::KeyPath),
    }
}

/// The window a single segment names, if any.
fn windowed(segment: &str) -> Option<TimeFrame> {
    if segment.ends_with("_monthly") || segment.ends_with("_28d") {
        Some(TimeFrame::Days28)
    } else if segment.ends_with("_weekly") || segment.ends_with("_7d") {
        Some(TimeFrame::Days7)
    } else {
        None
    }
}

impl fmt::Display for TimeFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TimeFrame {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "28d" => Ok(TimeFrame::Days28),
            "7d" => Ok(TimeFrame::Days7),
            "all" => Ok(TimeFrame::AllTime),
            "none" => Ok(TimeFrame::None),
            other => Err(format!(
                "time_frame must be 7d, 28d, all or none, got `{other}`"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_examples() {
        use TimeFrame::*;
        for (key, frame) in [
            ("counts_monthly.deployments", Days28),
            ("usage_activity_by_stage_monthly.plan.issues", Days28),
            (
                "redis_hll_counters.issues_edit.g_project_management_issue_created_monthly",
                Days28,
            ),
            ("something.users_28d", Days28),
            ("counts_weekly.aggregated_metrics.x", Days7),
            ("redis_hll_counters.search.i_search_total_weekly", Days7),
            ("analytics_unique_visits.p_analytics_pipelines", Days7),
            ("x.y_7d", Days7),
            ("counts.issues", AllTime),
            ("usage_activity_by_stage.plan.issues", AllTime),
            ("counts", None),
            ("active_user_count", None),
            ("settings.gitaly_apdex", None),
            ("topology.nodes[0].node_cpus", None),
            ("never_seen_before", None),
        ] {
            assert_eq!(TimeFrame::from_key_path(key), frame, "{key}");
        }
        assert_eq!("all".parse::<TimeFrame>(), Ok(AllTime));
        assert!("1y".parse::<TimeFrame>().is_err());
        assert_eq!(
            effective("counts.issues", Some("28d")),
            (Days28, FrameSource::Definition)
        );
        assert_eq!(
            effective("counts.issues", Option::None),
            (AllTime, FrameSource::KeyPath)
        );
    }

    /// The guess against GitLab 18.9's own definitions (key_path, time_frame).
    #[test]
    fn guess_agrees_with_gitlab_definitions() {
        let tsv = include_str!("../../../tests/fixtures/metric_time_frames_18.9.tsv");
        let (mut total, mut agree) = (0, 0);
        for line in tsv.lines().skip(1) {
            let (key, frame) = line.split_once('\t').expect("two columns");
            let frame: TimeFrame = frame.parse().expect("known frame");
            total += 1;
            if TimeFrame::from_key_path(key) == frame {
                agree += 1;
            }
        }
        assert!(total > 4000, "{total} definitions");
        assert!(agree * 100 >= total * 98, "{agree} of {total} agree");
    }
}
