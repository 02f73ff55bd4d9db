//! The DevOps score of one incoming submission, as a pure function: the ingest service runs
//! it before it opens the store's write transaction, so no score is computed under the lock.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::devops::{self, ConvScores, FeatureScores, ScoreMapping};
use super::payload::FlatMetrics;

/// Which earlier submission a candidate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateRef {
    /// A stored submission (`usage_data.id`).
    Stored(i64),
    /// An earlier member of the same write group, by its index in the group; it gets its id
    /// when the group is written.
    Group(usize),
}

/// An earlier submission of the same instance that may serve the cumulative sources.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreCandidate {
    /// Where it is.
    pub id: CandidateRef,
    /// Its `recorded_at`.
    pub recorded_at: DateTime<Utc>,
    /// Its stored score inputs.
    pub inputs: BTreeMap<String, f64>,
}

/// Everything stored with a submission about its score, and the answer it gets.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionScore {
    /// The values of the keys the mapping reads, so the score can be reproduced.
    pub inputs: BTreeMap<String, f64>,
    /// `instance_X` per feature.
    pub instance: FeatureScores,
    /// The earlier submission used for cumulative sources.
    pub previous: Option<CandidateRef>,
    /// The 30 numbers of the `conv_index` answer.
    pub answer: ConvScores,
}

/// Earliest `recorded_at` a candidate may have for a submission recorded at `recorded_at`.
pub fn candidate_window_start(mapping: &ScoreMapping, recorded_at: DateTime<Utc>) -> DateTime<Utc> {
    let days = mapping.cumulative.max_elapsed_days;
    recorded_at - Duration::seconds((days * 86_400.0) as i64)
}

/// Scores one submission against its instance's earlier ones (`candidates`, any order; those
/// not strictly earlier or outside the window are ignored) and the cached leaders.
pub fn score_submission(
    mapping: &ScoreMapping,
    leaders: &FeatureScores,
    metrics: &FlatMetrics,
    recorded_at: DateTime<Utc>,
    active_users: Option<i64>,
    candidates: &[ScoreCandidate],
) -> SubmissionScore {
    let window_start = candidate_window_start(mapping, recorded_at);
    let eligible: Vec<&ScoreCandidate> = candidates
        .iter()
        .filter(|c| c.recorded_at < recorded_at && c.recorded_at >= window_start)
        .collect();
    let times: Vec<_> = eligible.iter().map(|c| c.recorded_at).collect();
    let previous = devops::pick_previous(mapping, recorded_at, &times).map(|i| eligible[i]);
    let lookup = |key: &str| metrics.get(key);
    let current = devops::Submission {
        metrics: &lookup,
        recorded_at,
        active_users: active_users.map(|n| n as f64),
    };
    let earlier = previous.map(|c| devops::Submission {
        metrics: &c.inputs,
        recorded_at: c.recorded_at,
        active_users: None,
    });
    let instance = devops::instance_scores(mapping, &current, earlier.as_ref());
    SubmissionScore {
        inputs: devops::extract_inputs(mapping, &lookup),
        instance,
        previous: previous.map(|c| c.id),
        answer: devops::conv_scores(&instance, leaders),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::payload::{parse_payload, PayloadLimits};
    use chrono::TimeZone;

    fn metrics() -> FlatMetrics {
        let body = br#"{"uuid":"u","recorded_at":"2026-01-29T00:00:00Z",
            "counts":{"issues":10,"merge_requests":4}}"#;
        parse_payload(body, &PayloadLimits::default())
            .unwrap()
            .metrics
    }

    fn candidate(id: CandidateRef, day: u32) -> ScoreCandidate {
        ScoreCandidate {
            id,
            recorded_at: Utc.with_ymd_and_hms(2026, 1, day, 0, 0, 0).unwrap(),
            inputs: BTreeMap::new(),
        }
    }

    #[test]
    fn only_strictly_earlier_candidates_in_the_window_are_picked() {
        let mapping = ScoreMapping::default();
        let at = Utc.with_ymd_and_hms(2026, 1, 29, 0, 0, 0).unwrap();
        let later = candidate(CandidateRef::Stored(9), 30);
        let same = ScoreCandidate {
            recorded_at: at,
            ..candidate(CandidateRef::Stored(8), 1)
        };
        let scored = score_submission(
            &mapping,
            &FeatureScores::default(),
            &metrics(),
            at,
            Some(5),
            &[later, same],
        );
        assert_eq!(scored.previous, None);
        // A week earlier is within any sensible cumulative window.
        let week = candidate(CandidateRef::Group(0), 22);
        let scored = score_submission(
            &mapping,
            &FeatureScores::default(),
            &metrics(),
            at,
            Some(5),
            &[week],
        );
        assert_eq!(scored.previous, Some(CandidateRef::Group(0)));
    }

    #[test]
    fn answer_matches_conv_index_of_the_instance_scores() {
        let mapping = ScoreMapping::default();
        let at = Utc.with_ymd_and_hms(2026, 1, 29, 0, 0, 0).unwrap();
        let leaders = FeatureScores::default();
        let scored = score_submission(&mapping, &leaders, &metrics(), at, Some(5), &[]);
        let full = devops::conv_index(3, &scored.instance, &leaders);
        assert_eq!(scored.answer.0, full.features);
    }
}
