//! The ingest service's write of one group: scores first, then one short transaction.
//!
//! Everything that only reads (the answers of payloads stored already, the earlier
//! submissions the DevOps score compares with) and the scoring itself happen BEFORE the
//! transaction, so the store's write lock is held only for the inserts. A payload another
//! writer commits in between is caught by the unique (uuid, recorded_at) key inside the
//! transaction and answered from the stored row.

use std::borrow::Cow;

use chrono::NaiveDateTime;

use super::metrics::IngestMetrics;
use crate::db::models::usage_data::{
    self, KeyDictionary, KeyIds, NewSubmission, StoredScore, StoredSubmission,
};
use crate::db::models::{metric_values, usage_data_raw};
use crate::db::{AnyConnection, DbError};
use crate::domain::devops::{FeatureScores, ScoreMapping};
use crate::domain::payload::stored::{self, StoredValue};
use crate::domain::payload::FlatMetrics;
use crate::domain::submission_score::{self, CandidateRef, ScoreCandidate, SubmissionScore};

/// What the group does with one submission.
enum Plan {
    /// Stored already: answer as the first time.
    Answer(StoredSubmission),
    /// New: insert with this score.
    Insert(Box<SubmissionScore>),
}

/// Stores a group of submissions in ONE transaction and returns one result per submission,
/// in order. Keys must have been [`KeyDictionary::resolve`]d first. Re-deliveries (same uuid
/// and recorded_at, also within the group) get the stored id and scores.
pub(crate) fn store_group(
    conn: &mut AnyConnection,
    keys: &KeyDictionary,
    mapping: &ScoreMapping,
    leaders: &FeatureScores,
    batch: &[NewSubmission],
    received_at: NaiveDateTime,
    metrics: &IngestMetrics,
) -> Result<Vec<StoredSubmission>, DbError> {
    let plans = plan_group(conn, mapping, leaders, batch)?;
    usage_data::make_commits_durable(conn)?;
    let started = std::time::Instant::now();
    let stored =
        conn.transaction(|conn| write_group(conn, keys, mapping, batch, &plans, received_at))?;
    metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(stored)
}

/// Reads what the scores need and computes them, outside any transaction.
fn plan_group(
    conn: &mut AnyConnection,
    mapping: &ScoreMapping,
    leaders: &FeatureScores,
    batch: &[NewSubmission],
) -> Result<Vec<Plan>, DbError> {
    let mut plans: Vec<Plan> = Vec::with_capacity(batch.len());
    for (index, submission) in batch.iter().enumerate() {
        let summary = &submission.summary;
        let recorded_at = summary.recorded_at;
        if let Some(stored) = usage_data::find_stored(conn, &summary.uuid, recorded_at.naive_utc())?
        {
            plans.push(Plan::Answer(stored));
            continue;
        }
        let from = submission_score::candidate_window_start(mapping, recorded_at);
        let mut candidates: Vec<ScoreCandidate> = usage_data::list_score_candidates(
            conn,
            &summary.uuid,
            from.naive_utc(),
            recorded_at.naive_utc(),
        )?
        .into_iter()
        .map(|(id, at, inputs)| ScoreCandidate {
            id: CandidateRef::Stored(id),
            recorded_at: at.and_utc(),
            inputs,
        })
        .collect();
        // Earlier members of this group are not in the store yet but count as history.
        for (earlier_index, (earlier, plan)) in batch[..index].iter().zip(&plans).enumerate() {
            if let (true, Plan::Insert(score)) = (earlier.summary.uuid == summary.uuid, plan) {
                candidates.push(ScoreCandidate {
                    id: CandidateRef::Group(earlier_index),
                    recorded_at: earlier.summary.recorded_at,
                    inputs: score.inputs.clone(),
                });
            }
        }
        plans.push(Plan::Insert(Box::new(submission_score::score_submission(
            mapping,
            leaders,
            &submission.metrics,
            recorded_at,
            summary.active_user_count,
            &candidates,
        ))));
    }
    Ok(plans)
}

/// The staged body of a payload's values (`domain::payload::stored`), or `None` when a key
/// has no id yet (the writer resolves it, then makes the body itself).
pub(crate) fn staged_body(ids: &KeyIds, metrics: &FlatMetrics) -> Option<String> {
    let mut values: Vec<(i64, StoredValue)> = Vec::with_capacity(metrics.len());
    for metric in metrics.iter() {
        values.push((
            *ids.get(metric.key)?,
            StoredValue::new(metric.value, metric.exact),
        ));
    }
    values.sort_unstable_by_key(|(key, _)| *key);
    Some(stored::format_body(values.iter().map(|(k, v)| (*k, v))))
}

/// The inserts of one group, inside its transaction.
fn write_group(
    conn: &mut AnyConnection,
    keys: &KeyDictionary,
    mapping: &ScoreMapping,
    batch: &[NewSubmission],
    plans: &[Plan],
    received_at: NaiveDateTime,
) -> Result<Vec<StoredSubmission>, DbError> {
    let mut results: Vec<StoredSubmission> = Vec::with_capacity(batch.len());
    // One staged row per new submission: its values as one JSON object (metric_values.rs).
    let mut staged: Vec<(i64, Cow<'_, str>)> = Vec::new();
    let ids = keys.ids();
    for (submission, plan) in batch.iter().zip(plans) {
        let score = match plan {
            Plan::Answer(stored) => {
                results.push(stored.clone());
                continue;
            }
            Plan::Insert(score) => score,
        };
        let previous_id = match score.previous {
            None => None,
            Some(CandidateRef::Stored(id)) => Some(id),
            Some(CandidateRef::Group(index)) => Some(results[index].usage_data_id),
        };
        let conv_index = score.answer.to_json_map();
        let columns = StoredScore {
            inputs: &score.inputs,
            instance: &score.instance,
            previous_id,
            formula_version: i64::from(mapping.formula_version),
            conv_index: &conv_index,
        };
        let summary = &submission.summary;
        let Some(id) = usage_data::insert_submission(conn, submission, &columns, received_at)?
        else {
            let stored =
                usage_data::find_stored(conn, &summary.uuid, summary.recorded_at.naive_utc())?
                    .ok_or_else(|| {
                        DbError::Inconsistent("conflicting submission vanished".into())
                    })?;
            results.push(stored);
            continue;
        };
        usage_data_raw::insert_raw(conn, id, &submission.raw)?;
        usage_data::insert_extra(conn, id, summary)?;
        let body = match &submission.staged {
            Some(body) => Cow::Borrowed(body.as_str()),
            None => Cow::Owned(staged_body(&ids, &submission.metrics).ok_or_else(|| {
                DbError::Inconsistent("a metric key of the group was not resolved".into())
            })?),
        };
        staged.push((id, body));
        results.push(StoredSubmission {
            usage_data_id: id,
            scores: conv_index,
            metrics_count: submission.metrics.len() as i64,
            duplicate: false,
        });
    }
    drop(ids);
    let started = std::time::Instant::now();
    metric_values::insert_staged(conn, &staged)?;
    tracing::debug!(
        batch.staged = staged.len(),
        batch.values_ms = started.elapsed().as_secs_f64() * 1000.0,
        "metric values staged"
    );
    Ok(results)
}
