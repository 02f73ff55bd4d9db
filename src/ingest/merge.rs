//! The merge job: moves staged metric values (one row per submission, written by ingest)
//! into blocks keyed by metric (`db::models::metric_values`), in batches of up to
//! [`MAX_BLOCK`] submissions, each in one transaction.
//!
//! Readers see staged values as well as merged ones, so the merge never delays an answer;
//! it exists for the store's size (about four bytes per value in a block on SQLite, one on
//! PostgreSQL, against a JSON
//! object per submission) and for the speed of reading one metric over many submissions.
//! It runs once across processes (an advisory lock on PostgreSQL), merges as soon as
//! `metric_block_min` submissions are staged, and merges fewer once the oldest staged one has
//! waited `metric_merge_max_wait_secs`, so a quiet store is merged too.

use chrono::Utc;

use super::metrics::IngestMetrics;
use crate::config::IngestSettings;
use crate::db::models::metric_values::{self, MergePolicy};
use crate::db::DbError;
use crate::jobs::JobContext;

/// Most submissions per block: a block's row of one metric then holds up to this many
/// values (~3 KB of JSON), and a merge transaction stays well under a second.
pub(crate) const MAX_BLOCK: usize = 1024;

/// The merge policy the settings ask for.
pub(crate) fn policy(settings: &IngestSettings) -> MergePolicy {
    let min_block = settings.metric_block_min.get().min(MAX_BLOCK);
    MergePolicy {
        min_block,
        max_block: MAX_BLOCK,
        max_wait: chrono::Duration::from_std(settings.metric_merge_max_wait)
            .unwrap_or(chrono::Duration::MAX),
    }
}

/// One run: merges blocks until too few are staged or shutdown begins (each block is its own
/// transaction, so a cancelled run loses nothing), then records the backlog.
pub(crate) fn run(
    ctx: &JobContext<'_>,
    policy: &MergePolicy,
    metrics: &IngestMetrics,
) -> Result<(), DbError> {
    let mut conn = ctx.db.get()?;
    while !ctx.cancel.is_cancelled() {
        // On SQLite, a waiting ingest writer commits before the next block.
        ctx.db.yield_to_ingest();
        let merged = metric_values::merge_staged(&mut conn, policy, Utc::now().naive_utc())?;
        if merged == 0 {
            break;
        }
        metrics.values_merged.inc_by(merged as u64);
        tracing::debug!(
            merge.submissions = merged,
            "metric values merged into a block"
        );
    }
    metrics
        .values_staged
        .set(metric_values::count_staged(&mut conn)?);
    Ok(())
}
