//! Service Ping ingest: admission, decoding, and the group-commit writer.
//!
//! A payload goes through three stages:
//!
//! 1. **Admission** ([`Ingest::admit`]): a permit from a semaphore of
//!    `ingest_max_concurrent`, taken once the body is read (the body itself is bounded by the
//!    in-flight byte budget of `routes::body`); when none frees up within
//!    `ingest_admission_wait_ms` the client gets 503 + `Retry-After` and keeps its payload.
//! 2. **Decoding** ([`Ingest::decoder`], on the blocking pool): gunzip with a cap on the
//!    decompressed size, the streaming, depth-capped parse of `domain::payload`, the
//!    compression of the raw bytes, and the staged body of the values.
//! 3. **Storing** ([`Ingest::submit`]): the parsed payload goes to a writer thread, which
//!    takes every payload that queued up while it was committing and stores them in one
//!    transaction ("group commit": one fsync and a few multi-row statements for many
//!    payloads). Each sender is answered only after that commit.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::Utc;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::{Backend, Settings};
use crate::db::models::usage_data::{
    self, KeyDictionary, NewSubmission, StoredSubmission, SubmissionSource,
};
use crate::db::models::usage_data_raw::RawPayload;
use crate::db::models::version_checks::{self, VersionStatus};
use crate::db::{AnyConnection, Db, DbError};
use crate::domain::devops::{self, FeatureScores, ScoreMapping};
use crate::domain::payload::{self, ParsedPayload, PayloadError, PayloadLimits};
use crate::domain::version::Version;
use crate::domain::version_status::version_facts;
use crate::error::ApiError;
use crate::jobs::{Jobs, RunScope};
use crate::snapshot::Releases;

mod merge;
mod metrics;
mod store;

pub(crate) use metrics::decode_reason;
pub use metrics::IngestMetrics;

/// Why a body could not be turned into a payload.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body, or its decompressed form, exceeds a configured cap.
    #[error("{0}")]
    TooLarge(String),
    /// The gzip stream is damaged or truncated.
    #[error("the gzip-encoded body cannot be decompressed: {0}")]
    BadGzip(String),
    /// The JSON is not a usable Service Ping payload.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// A field breaks a rule every store needs (`domain::input_rules`).
    #[error("{0}")]
    Invalid(String),
}

impl From<DecodeError> for ApiError {
    fn from(err: DecodeError) -> Self {
        match err {
            DecodeError::TooLarge(message) => ApiError::PayloadTooLarge(message),
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

/// Gunzips (when `gzip`) with a cap on the output, then parses. Returns the parsed payload
/// and the JSON bytes to keep verbatim, compressed for storage. CPU-bound: call on the
/// blocking pool.
fn decode_payload(
    body: bytes::Bytes,
    gzip: bool,
    max_decompressed: usize,
    limits: &PayloadLimits,
) -> Result<(ParsedPayload, RawPayload), DecodeError> {
    let json = if gzip {
        let mut out = Vec::with_capacity((body.len() * 8).min(max_decompressed));
        // Reading one byte past the cap tells "exactly at the cap" from "over it" without
        // ever inflating a bomb further than that.
        flate2::read::MultiGzDecoder::new(&body[..])
            .take(max_decompressed as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| DecodeError::BadGzip(e.to_string()))?;
        if out.len() > max_decompressed {
            return Err(DecodeError::TooLarge(format!(
                "the decompressed body exceeds {max_decompressed} bytes"
            )));
        }
        out
    } else {
        // Usually no copy: the body buffer is handed over whole.
        Vec::from(body)
    };
    let parsed = payload::parse_payload(&json, limits)?;
    crate::domain::input_rules::check_payload(&parsed).map_err(DecodeError::Invalid)?;
    Ok((parsed, RawPayload::compress(&json)))
}

/// How often an idle writer looks whether shutdown has begun.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Raw bytes after which a writer stops adding payloads to its group.
const BATCH_MAX_BYTES: usize = 16 * 1024 * 1024;

struct Job {
    submission: NewSubmission,
    reply: oneshot::Sender<Result<StoredSubmission, ApiError>>,
}

/// The ingest pipeline's shared parts; one per application.
pub struct Ingest {
    admission: Arc<Semaphore>,
    admission_wait: Duration,
    queue: Sender<Job>,
    /// Parse limits derived from the settings.
    pub limits: PayloadLimits,
    /// Cap on a gzip body's decompressed size (`ingest_max_decompressed_bytes`).
    max_decompressed: usize,
    /// The DevOps score mapping (from `assets/devops_score.toml`).
    pub mapping: Arc<ScoreMapping>,
    /// The cached leaders, recomputed in the background.
    pub leaders: Arc<ArcSwap<FeatureScores>>,
    /// Ingest counters and histograms in `/metrics`.
    pub metrics: Arc<IngestMetrics>,
    keys: Arc<KeyDictionary>,
}

impl Ingest {
    /// Starts the writers on the job runner, which joins them at shutdown: each stops once
    /// shutdown has begun and the queue is drained, so nothing admitted is lost.
    pub fn start(
        db: Db,
        releases: Releases,
        settings: &Settings,
        registry: &prometheus::Registry,
        jobs: &Jobs,
    ) -> Ingest {
        let metrics = Arc::new(IngestMetrics::new(registry));
        let mapping = Arc::new(ScoreMapping::default());
        let leaders = Arc::new(ArcSwap::from_pointee(FeatureScores::default()));
        let keys = Arc::new(KeyDictionary::default());
        // Every queued job holds an admission permit, so the queue never holds more than
        // `ingest_max_concurrent`; the writers share the one receiver (multi-consumer).
        let ingest = &settings.ingest;
        let (queue, receiver) = crossbeam_channel::bounded(ingest.max_concurrent.get());
        let writers = match (ingest.writers, db.backend()) {
            (None, Backend::Sqlite) => 1, // SQLite has one writer at a time anyway
            (None, Backend::Postgres) => 2,
            (Some(n), _) => n.get(),
        };
        for n in 0..writers {
            let writer = Writer {
                receiver: receiver.clone(),
                db: db.clone(),
                keys: keys.clone(),
                mapping: mapping.clone(),
                leaders: leaders.clone(),
                batch_max: ingest.batch_max.get(),
                releases: releases.clone(),
                metrics: metrics.clone(),
            };
            jobs.spawn_blocking_loop(format!("ingest-writer-{n}"), move |cancel| {
                writer.run(&cancel);
            });
        }
        Ingest {
            admission: Arc::new(Semaphore::new(ingest.max_concurrent.get())),
            admission_wait: ingest.admission_wait,
            queue,
            limits: PayloadLimits {
                max_depth: ingest.max_json_depth,
                ..PayloadLimits::default()
            },
            max_decompressed: ingest.max_decompressed_bytes,
            mapping,
            leaders,
            metrics,
            keys,
        }
    }

    /// Waits (briefly) for room to take one more body; 503 + Retry-After when there is none.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout(self.admission_wait, self.admission.clone().acquire_owned())
            .await
        {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                tracing::warn!("ingest saturated: payload refused with 503");
                // Not the store's fault: its own message and metric label (issue 8, #12).
                Err(ApiError::Busy(
                    "ingest is at capacity: too many payloads are being stored at once, \
                     retry later"
                        .into(),
                ))
            }
        }
    }

    /// The decoding of one body, to run on the blocking pool (`decode_payload`), which also
    /// makes the staged body of its values when every key is known already (almost always):
    /// made there, in parallel across requests, the one writer thread only writes it, and no
    /// second hop to the blocking pool is needed.
    pub fn decoder(
        &self,
        body: bytes::Bytes,
        gzip: bool,
    ) -> impl FnOnce() -> Result<Decoded, DecodeError> + Send + 'static {
        let (keys, limits, max_decompressed) =
            (self.keys.clone(), self.limits, self.max_decompressed);
        move || {
            let (parsed, raw) = decode_payload(body, gzip, max_decompressed, &limits)?;
            let staged = store::staged_body(&keys.ids(), &parsed.metrics);
            Ok(Decoded {
                parsed,
                raw,
                staged,
            })
        }
    }

    /// Stores one payload (grouped with others arriving at the same time); resolves after
    /// the commit.
    pub async fn submit(&self, submission: NewSubmission) -> Result<StoredSubmission, ApiError> {
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Job { submission, reply }) {
            Ok(()) => {}
            // Cannot happen while every sender holds a permit; refused like a full admission.
            Err(TrySendError::Full(_)) => {
                return Err(ApiError::Busy(
                    "ingest is at capacity: the write queue is full, retry later".into(),
                ))
            }
            Err(TrySendError::Disconnected(_)) => return Err(ApiError::Unavailable(None)),
        }
        self.metrics.queue_depth.inc();
        answer.await.map_err(|_| ApiError::Unavailable(None))?
    }

    /// Registers the ingest path's background jobs: the DevOps-leaders recomputation (a
    /// per-process cache, so every process runs it; the first run is at once, before traffic
    /// arrives).
    pub fn register_jobs(&self, jobs: &Jobs, settings: &Settings) {
        let (mapping, leaders) = (self.mapping.clone(), self.leaders.clone());
        jobs.every(
            "devops_leaders",
            settings.ingest.devops_leaders_refresh,
            RunScope::EveryProcess,
            move |ctx| Ok(refresh_leaders(ctx.db, &mapping, &leaders)?),
        );
        // Raw-payload retention is part of the one retention job (lifecycle/retention.rs).
        let (policy, metrics) = (merge::policy(&settings.ingest), self.metrics.clone());
        jobs.every(
            "metric_merge",
            settings.ingest.metric_merge_interval,
            RunScope::OnceAcrossProcesses,
            move |ctx| Ok(merge::run(ctx, &policy, &metrics)?),
        );
    }
}

fn refresh_leaders(
    db: &Db,
    mapping: &ScoreMapping,
    leaders: &ArcSwap<FeatureScores>,
) -> Result<(), DbError> {
    let since =
        Utc::now().naive_utc() - chrono::Duration::days(i64::from(mapping.leaders.lookback_days));
    let population = usage_data::list_latest_scores(&mut db.get()?, since)?;
    let computed = devops::leaders(&population, &mapping.leaders);
    tracing::debug!(
        devops.instances = population.len(),
        "DevOps leaders recomputed"
    );
    leaders.store(Arc::new(computed));
    Ok(())
}

struct Writer {
    receiver: Receiver<Job>,
    db: Db,
    keys: Arc<KeyDictionary>,
    mapping: Arc<ScoreMapping>,
    leaders: Arc<ArcSwap<FeatureScores>>,
    batch_max: usize,
    releases: Releases,
    metrics: Arc<IngestMetrics>,
}

impl Writer {
    /// Takes groups off the queue until shutdown has begun and the queue is empty.
    fn run(self, cancel: &CancellationToken) {
        loop {
            let batch = {
                let receiver = &self.receiver;
                let first = match receiver.recv_timeout(IDLE_POLL) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) if !cancel.is_cancelled() => continue,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
                };
                let mut bytes = first.submission.raw.original_len;
                let mut batch = vec![first];
                // Bounded in count and in bytes, so a group of 5 MB bodies does not pile up
                // bind buffers beside the bodies themselves.
                while batch.len() < self.batch_max && bytes < BATCH_MAX_BYTES {
                    match receiver.try_recv() {
                        Ok(job) => {
                            bytes += job.submission.raw.original_len;
                            batch.push(job);
                        }
                        Err(_) => break,
                    }
                }
                batch
            };
            self.metrics.queue_depth.sub(batch.len() as i64);
            let busy = std::time::Instant::now();
            self.process(batch);
            self.metrics
                .writer_busy_seconds
                .inc_by(busy.elapsed().as_secs_f64());
        }
    }

    fn process(&self, batch: Vec<Job>) {
        let (submissions, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|job| (job.submission, job.reply))
            .unzip();
        match self.store(&submissions) {
            Ok(stored) => {
                for (reply, stored) in replies.into_iter().zip(stored) {
                    let _ = reply.send(Ok(stored));
                }
            }
            // One bad payload must not fail the others of its group: store them one by one.
            Err(err) if !err.is_unavailable() && submissions.len() > 1 => {
                tracing::warn!(error.cause = %crate::error::Chain(&err), batch.size = submissions.len(),
                    "group commit failed; storing its payloads one by one");
                for (submission, reply) in submissions.into_iter().zip(replies) {
                    let outcome = self
                        .store(std::slice::from_ref(&submission))
                        .map(|mut stored| stored.remove(0))
                        .map_err(ApiError::from);
                    let _ = reply.send(outcome);
                }
            }
            Err(err) => {
                self.db.note_fault(&err);
                let message = crate::error::Chain(&err).to_string();
                let unavailable = err.is_unavailable();
                if unavailable {
                    // Logged once for the group; the answers carry no cause to log again.
                    tracing::warn!(error.cause = %message, batch.size = replies.len(),
                        "store unavailable: payloads refused with 503");
                }
                for reply in replies {
                    let _ = reply.send(Err(if unavailable {
                        ApiError::Unavailable(None)
                    } else {
                        ApiError::Internal(message.clone())
                    }));
                }
            }
        }
    }

    fn store(&self, submissions: &[NewSubmission]) -> Result<Vec<StoredSubmission>, DbError> {
        // Background jobs on SQLite let this group's transaction go first (db/write_priority.rs).
        let _first = self.db.announce_ingest_write();
        let started = std::time::Instant::now();
        let mut conn = self.db.get()?;
        self.keys.resolve(
            &mut conn,
            submissions
                .iter()
                .filter(|s| s.staged.is_none())
                .flat_map(|s| s.metrics.iter().map(|metric| metric.key)),
        )?;
        let resolved = started.elapsed();
        let leaders = self.leaders.load_full();
        let stored = store::store_group(
            &mut conn,
            &self.keys,
            &self.mapping,
            &leaders,
            submissions,
            Utc::now().naive_utc(),
            &self.metrics,
        );
        if stored.is_ok() {
            self.metrics.group_size.observe(submissions.len() as f64);
        }
        tracing::debug!(
            batch.size = submissions.len(),
            batch.resolve_ms = resolved.as_secs_f64() * 1000.0,
            batch.total_ms = started.elapsed().as_secs_f64() * 1000.0,
            "ingest group committed"
        );
        if stored.is_ok() {
            self.materialise_verdicts(&mut conn, submissions);
        }
        stored
    }

    /// Makes sure `version_status` knows the versions these instances report, so the
    /// analysts' "reporting instances on a vulnerable version" join sees instances that
    /// never sent a version check. Best effort and after the commit: a failure here costs
    /// nothing but a later retry by the next submission of that version.
    fn materialise_verdicts(&self, conn: &mut AnyConnection, submissions: &[NewSubmission]) {
        let table = self.releases.current();
        let now = Utc::now().naive_utc();
        let statuses: Vec<VersionStatus> = submissions
            .iter()
            .filter_map(|s| s.summary.version.as_ref())
            .filter_map(|v| Version::parse(&v.normalized).ok())
            .map(|version| VersionStatus::stamped(version_facts(&table, &version), now))
            .collect();
        if let Err(err) = version_checks::insert_missing_statuses(conn, &statuses) {
            tracing::warn!(error.cause = %crate::error::Chain(&err), "could not record the verdicts of reported versions");
        }
    }
}

/// A body decoded by [`Ingest::decoder`], ready for [`new_submission`].
pub struct Decoded {
    /// The parsed payload.
    pub parsed: ParsedPayload,
    /// The JSON bytes, compressed for storage.
    pub raw: RawPayload,
    /// The staged body of its values; `None` when a key has no id yet.
    staged: Option<String>,
}

/// Which way a submission arrived, for [`NewSubmission`].
pub fn new_submission(
    decoded: Decoded,
    source: SubmissionSource,
    country: Option<String>,
) -> NewSubmission {
    NewSubmission {
        summary: decoded.parsed.summary,
        metrics: decoded.parsed.metrics,
        raw: decoded.raw,
        source,
        country,
        staged: decoded.staged,
    }
}
