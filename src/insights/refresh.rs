//! The rollup job: folds new Service Ping submissions into the insights tables.
//!
//! For each new submission: its installation is found or made, the submission is recorded,
//! and for its month and its ISO week it replaces the counted submission when it is later
//! (by effective recorded_at, then id). When it does, the period keeps the counted
//! submission of the installation's period before it, and the next period is pointed at it
//! (all-time differences start from the previous period's value; the values themselves are
//! read when asked, `super::period_values`). The outcome depends only on the set of
//! submissions, not on their arrival order, which is why a rebuild gives the same tables.

use crate::db::models::insights::{
    self as store, Neighbour, PeriodRow, SourceSubmission, SubmissionRow,
};
use crate::db::models::insights_catalogue as catalogue;
use crate::db::{AnyConnection, Db, DbError};
use crate::domain::insights::installation::{is_excluded_by_default, Installation};
use crate::domain::insights::periods::{effective_recorded_at, is_later, PeriodKind};
use crate::domain::insights::tier::Tier;

use super::keys::Keys;
use super::values::ValueCache;

/// The job's name on the runner and in `/metrics`.
pub const JOB_NAME: &str = "insights_rollup";
/// `insights_state` row holding the highest processed `usage_data.id`.
const WATERMARK: &str = "usage_data_watermark";
/// Submissions per pass.
const BATCH: i64 = 200;
/// How far below the watermark to look for submissions committed late (concurrent
/// PostgreSQL writers can commit a lower id after a higher one).
const LOOKBACK_IDS: i64 = 1_000;

/// Processes every submission not yet folded in; returns how many were.
/// `cancelled` is asked between batches, so a shutdown does not wait for a long catch-up.
pub fn refresh_until(db: &Db, cancelled: &dyn Fn() -> bool) -> anyhow::Result<usize> {
    let mut conn = db.get()?;
    let mut processed = 0;
    let mut cache = ValueCache::new();
    let started = std::time::Instant::now();
    let watermark = store::get_state(&mut conn, WATERMARK)?.unwrap_or(0);
    let late = store::list_unprocessed_between(&mut conn, watermark - LOOKBACK_IDS, watermark)?;
    if !late.is_empty() {
        let keys = Keys::load(&mut conn)?;
        for submission in &late {
            db.yield_to_ingest();
            process(&mut conn, &keys, &mut cache, submission, watermark)?;
            processed += 1;
        }
    }
    let mut watermark = watermark;
    while !cancelled() {
        let batch = store::list_submissions_after(&mut conn, watermark, BATCH)?;
        if batch.is_empty() {
            break;
        }
        // Key paths can be new in any payload: the dictionary is read per batch.
        let keys = Keys::load(&mut conn)?;
        for submission in &batch {
            watermark = watermark.max(submission.id);
            // One transaction per submission, back to back: on SQLite a waiting ingest
            // writer would otherwise lose the write lock to the next one for seconds
            // (db/write_priority.rs).
            db.yield_to_ingest();
            process(&mut conn, &keys, &mut cache, submission, watermark)?;
            processed += 1;
        }
    }
    if processed > 0 {
        // The rollup cost per submission, the figure docs/benchmarks-insights.md tracks.
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let reads = cache.counts;
        tracing::debug!(
            insights.processed = processed,
            insights.ms_per_submission = ms / processed as f64,
            insights.values_from_payload = reads.payload,
            insights.values_probed = reads.probed,
            insights.values_cached = reads.cached,
            "insights rollups refreshed"
        );
    }
    Ok(processed)
}

/// Processes every submission not yet folded in.
pub fn refresh(db: &Db) -> anyhow::Result<usize> {
    refresh_until(db, &|| false)
}

/// Empties the rollups and folds every submission again; returns how many were.
pub fn rebuild(db: &Db) -> anyhow::Result<usize> {
    let mut conn = db.get()?;
    store::reset_all(&mut conn)?;
    catalogue::reset(&mut conn)?;
    drop(conn);
    refresh(db)
}

/// Runs `work` holding the rollup job's lock, so a CLI refresh or rebuild never runs beside
/// the server's job on a shared PostgreSQL (it waits up to a minute for a running pass).
pub fn with_job_lock<T>(db: &Db, work: impl FnOnce(&Db) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(_lock) = crate::db::locks::try_job_lock(db, JOB_NAME)? {
            return work(db);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the insights rollup job has been running in another process for a minute; try again later"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Registers the rollup job on the runner: once across processes, every
/// `insights_refresh_secs`, stopping between batches at shutdown.
pub fn register_job(jobs: &crate::jobs::Jobs, settings: &crate::config::Settings) {
    jobs.every(
        JOB_NAME,
        settings.insights.refresh_interval,
        crate::jobs::RunScope::OnceAcrossProcesses,
        |ctx| {
            refresh_until(ctx.db, &|| ctx.cancel.is_cancelled())?;
            Ok(())
        },
    );
}

/// Folds one submission in, in one transaction with the new watermark.
fn process(
    conn: &mut AnyConnection,
    keys: &Keys,
    cache: &mut ValueCache,
    s: &SourceSubmission,
    watermark: i64,
) -> Result<(), DbError> {
    store::transaction(conn, |conn| {
        let recorded_at = effective_recorded_at(s.recorded_at, s.received_at);
        let installation = Installation::new(&s.uuid, s.hostname.as_deref());
        let excluded = is_excluded_by_default(&installation.hostname);
        let installation_id =
            store::upsert_installation(conn, &installation.uuid, &installation.hostname, excluded)?;
        let tier = Tier::of(s.edition.as_deref(), s.license_expires_at, recorded_at);
        store::insert_submission(
            conn,
            &SubmissionRow {
                usage_data_id: s.id,
                installation_id,
                recorded_at,
                version: s.version.clone(),
                version_major: s.version_major,
                version_minor: s.version_minor,
                version_patch: s.version_patch,
                edition: s.edition.clone(),
                tier: tier.as_str().to_owned(),
                installation_type: s.installation_type.clone(),
                country: s.country.clone(),
                active_user_count: s.active_user_count,
            },
        )?;
        for kind in PeriodKind::ALL {
            let start = kind.start_of(recorded_at.date());
            let current = store::find_period(conn, kind.as_str(), installation_id, start, None)?;
            let wins = current
                .as_ref()
                .is_none_or(|c| is_later((recorded_at, s.id), (c.recorded_at, c.usage_data_id)));
            if !wins {
                continue;
            }
            if kind == PeriodKind::Month && !excluded {
                super::catalogue::count_month(conn, keys, cache, start, current.as_ref(), s.id)?;
            }
            // The neighbours by period start, whether or not this period was new: the period
            // before is this one's baseline, and this one becomes the baseline of the next.
            let previous = match current.as_ref().and_then(|c| c.previous_usage_data_id) {
                Some(known) => known,
                None => store::find_period(
                    conn,
                    kind.as_str(),
                    installation_id,
                    start,
                    Some(Neighbour::Previous),
                )?
                .map_or(store::NO_PREVIOUS, |p| p.usage_data_id),
            };
            store::upsert_period(
                conn,
                &PeriodRow {
                    period_kind: kind.as_str().to_owned(),
                    period_start: start,
                    installation_id,
                    usage_data_id: s.id,
                    recorded_at,
                    version: s.version.clone(),
                    version_major: s.version_major,
                    version_minor: s.version_minor,
                    edition: s.edition.clone(),
                    tier: tier.as_str().to_owned(),
                    installation_type: s.installation_type.clone(),
                    country: s.country.clone(),
                    excluded,
                    previous_usage_data_id: Some(previous),
                },
            )?;
            let next = store::find_period(
                conn,
                kind.as_str(),
                installation_id,
                start,
                Some(Neighbour::Next),
            )?;
            if let Some(next) = next {
                store::set_previous(
                    conn,
                    kind.as_str(),
                    installation_id,
                    next.period_start,
                    Some(s.id),
                )?;
            }
        }
        super::catalogue::note_versions(conn, keys, cache, s)?;
        let stored = store::get_state(conn, WATERMARK)?.unwrap_or(0);
        if watermark > stored {
            store::set_state(conn, WATERMARK, watermark)?;
        }
        Ok(())
    })
}
