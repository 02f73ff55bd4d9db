//! Release sync: follow an upstream version-app's release table (issue 9, item 4).
//!
//! A sync reads every page of the upstream's `GET /api/v1/versions` ([`fetch`], within the
//! caps), plans the difference with the pure rule in [`crate::domain::release_sync`]
//! (upstream wins for the fields it carries, local additions stay), and applies it in one
//! transaction through the audited writer with `via` = `sync` and the actor `sync:URL`.
//! Anything wrong (an upstream answering 500, HTML, broken JSON, too much, paging forever,
//! timing out, or lowering a security level without `release_sync_allow_downgrade`)
//! changes nothing and reports why; the next sync retries.
//!
//! The periodic sync is the job `release_sync` (once across processes), registered only
//! when `release_sync_url` is set; `version-app releases sync --from URL` runs one by hand.

pub mod fetch;
mod metrics;

use std::sync::Arc;
use url::Url;

use crate::config::Settings;
use crate::db::models::release_changes::{self, Actor, ChangeRow, Expect, WriteError};
use crate::db::models::releases;
use crate::db::AnyConnection;
use crate::domain::release_edit::{Edit, Via};
use crate::domain::release_sync::{plan, upstream_url, Downgrade};
use crate::jobs::{Jobs, RunScope};
use crate::metrics::Metrics;
use crate::snapshot::Releases;

pub use fetch::{Caps, Fetched};
pub use metrics::SyncMetrics;

/// The job's name (metrics label and advisory lock).
pub const JOB_NAME: &str = "release_sync";

/// Why a sync changed nothing; the label of `version_app_release_sync_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The upstream could not be reached (refused, DNS, TLS, cut answer).
    Connect,
    /// No complete answer within `release_sync_timeout_secs`.
    Timeout,
    /// An answer other than 2xx, or too many redirects.
    HttpStatus,
    /// An answer that is not JSON (an HTML page, a proxy's error page).
    NotJson,
    /// JSON that is not the versions API (or invalid releases, or broken paging).
    BadJson,
    /// A page over `release_sync_max_page_bytes`.
    TooLarge,
    /// More than `release_sync_max_pages` pages.
    TooManyPages,
    /// More than `release_sync_max_versions` versions.
    TooManyVersions,
    /// The upstream lowers a security level and downgrades are not allowed.
    Downgrade,
    /// The local store failed, or a release changed here during the sync.
    Store,
    /// The app began shutting down during the sync.
    Cancelled,
}

impl Reason {
    /// Every reason, for zero-initialised metrics.
    pub const ALL: [Reason; 11] = [
        Reason::Connect,
        Reason::Timeout,
        Reason::HttpStatus,
        Reason::NotJson,
        Reason::BadJson,
        Reason::TooLarge,
        Reason::TooManyPages,
        Reason::TooManyVersions,
        Reason::Downgrade,
        Reason::Store,
        Reason::Cancelled,
    ];

    /// The label in logs and `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Connect => "connect",
            Reason::Timeout => "timeout",
            Reason::HttpStatus => "http_status",
            Reason::NotJson => "not_json",
            Reason::BadJson => "bad_json",
            Reason::TooLarge => "too_large",
            Reason::TooManyPages => "too_many_pages",
            Reason::TooManyVersions => "too_many_versions",
            Reason::Downgrade => "downgrade",
            Reason::Store => "store",
            Reason::Cancelled => "cancelled",
        }
    }
}

/// A sync that changed nothing, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("release sync failed ({}): {message}; nothing was changed, the next sync retries", reason.label())]
pub struct SyncError {
    /// The class of failure.
    pub reason: Reason,
    /// What happened, naming the cap or setting involved.
    pub message: String,
}

/// What one sync is told.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The upstream's versions API.
    pub url: Url,
    /// Timeout and caps.
    pub caps: Caps,
    /// Apply security levels the upstream lowers.
    pub allow_downgrade: bool,
}

impl SyncOptions {
    /// From the settings, with `url` instead of `release_sync_url` when given.
    pub fn from_settings(settings: &Settings, url: Option<&str>) -> Result<SyncOptions, String> {
        let sync = &settings.release_sync;
        let raw = url
            .or(sync.url.as_deref())
            .ok_or_else(|| "no upstream: give --from URL or set release_sync_url".to_string())?;
        Ok(SyncOptions {
            url: upstream_url(raw)?,
            caps: Caps {
                timeout: sync.timeout,
                max_page_bytes: sync.max_page_bytes.get(),
                max_pages: sync.max_pages.get(),
                max_versions: sync.max_versions.get(),
            },
            allow_downgrade: sync.allow_downgrade,
        })
    }
}

/// A sync ready to write: its edits, the levels they were planned against, and the actor.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Edits (creations and changes), in version order.
    pub edits: Vec<Edit>,
    /// Each edited release's security level when planned: a release changed here in the
    /// meantime makes the write refuse, so a downgrade can never slip through unplanned.
    pub expect: Vec<Expect>,
    /// `sync:URL`, via `sync`; a note when it carries allowed downgrades.
    pub actor: Actor,
    /// Security levels lowered (only when allowed).
    pub downgrades: Vec<Downgrade>,
    /// Versions the upstream listed.
    pub upstream_versions: usize,
    /// Pages read.
    pub pages: u32,
}

/// Plans the sync of `fetched` against the store's table. Blocking.
pub fn plan_sync(
    conn: &mut AnyConnection,
    options: &SyncOptions,
    fetched: &Fetched,
) -> Result<Planned, SyncError> {
    let local = releases::list_domain(conn).map_err(|e| SyncError {
        reason: Reason::Store,
        message: format!("cannot read the local release table: {e}"),
    })?;
    let planned = plan(&local, &fetched.releases);
    let url = &options.url;
    if !planned.downgrades.is_empty() && !options.allow_downgrade {
        let list: Vec<String> = planned.downgrades.iter().map(ToString::to_string).collect();
        return Err(SyncError {
            reason: Reason::Downgrade,
            message: format!(
                "{url} lowers the security level of {} release(s): {}; refused (set \
                 release_sync_allow_downgrade = true, or run `releases sync --allow-downgrade`, \
                 to accept)",
                list.len(),
                list.join(", ")
            ),
        });
    }
    let expect = planned
        .edits
        .iter()
        .map(|edit| {
            let text = edit.version.to_string();
            let level = local
                .iter()
                .find(|r| r.version == edit.version)
                .map(|r| r.security.as_str().to_string());
            Expect {
                version: text,
                field: "security",
                value: level,
            }
        })
        .collect();
    let mut actor = Actor::new(format!("sync:{url}"), Via::Sync);
    if !planned.downgrades.is_empty() {
        let list: Vec<String> = planned.downgrades.iter().map(ToString::to_string).collect();
        actor.note = Some(format!(
            "security downgrade allowed by release_sync_allow_downgrade: {}",
            list.join(", ")
        ));
    }
    Ok(Planned {
        edits: planned.edits,
        expect,
        actor,
        downgrades: planned.downgrades,
        upstream_versions: fetched.releases.len(),
        pages: fetched.pages,
    })
}

/// Writes a planned sync (one transaction, audited). Blocking.
pub fn apply(conn: &mut AnyConnection, planned: &Planned) -> Result<Vec<ChangeRow>, SyncError> {
    if planned.edits.is_empty() {
        return Ok(Vec::new());
    }
    release_changes::write_edits(conn, &planned.edits, &planned.expect, &planned.actor).map_err(
        |e| SyncError {
            reason: Reason::Store,
            message: match e {
                WriteError::Stale(_) => {
                    "a release changed here while the upstream was read".to_string()
                }
                other => format!("the local write failed: {other}"),
            },
        },
    )
}

/// Registers the periodic sync when `release_sync_url` is set: once across processes,
/// every `release_sync_interval_secs`. After a sync that changed something, this process's
/// release snapshot is reloaded at once (others notice within `release_refresh_secs`).
pub fn register_job(jobs: &Jobs, metrics: &Metrics, settings: &Arc<Settings>, releases: Releases) {
    if settings.release_sync.url.is_none() {
        return;
    }
    // Settings read by `Settings::load` are validated; ones built in code may not be.
    let options = match SyncOptions::from_settings(settings, None) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error.cause = %e, "release_sync_url is unusable; release sync is off");
            return;
        }
    };
    let counters = SyncMetrics::register(metrics.registry());
    tracing::info!(release_sync.url = %options.url, "release sync enabled");
    jobs.every(
        JOB_NAME,
        settings.release_sync.interval,
        RunScope::OnceAcrossProcesses,
        move |ctx| {
            let cancelled = || ctx.cancel.is_cancelled();
            let outcome = fetch::fetch_until(&options.url, &options.caps, &cancelled).and_then(|fetched| {
                // The connection is taken only after the upstream answered: a slow upstream
                // holds no pooled connection.
                let mut conn = ctx.db.get().map_err(|e| SyncError {
                    reason: Reason::Store,
                    message: e.to_string(),
                })?;
                let planned = plan_sync(&mut conn, &options, &fetched)?;
                let written = apply(&mut conn, &planned)?;
                Ok((planned, written, conn))
            });
            match outcome {
                Ok((planned, written, mut conn)) => {
                    // Counted before the snapshot reloads: whoever sees the new verdicts
                    // then also sees this run in /metrics (the reverse order was a race).
                    counters.succeeded(&planned, &written);
                    if !written.is_empty() {
                        if let Err(e) = releases.reload_blocking(&mut conn, true) {
                            // Written and committed; the snapshot's own poll
                            // (`release_refresh_secs`) picks the change up.
                            tracing::warn!(error.cause = %crate::telemetry::Chain(&e), "release sync applied, but the snapshot did not reload now; its poll will");
                        }
                    }
                    let versions: std::collections::BTreeSet<&str> =
                        written.iter().map(|c| c.version.as_str()).collect();
                    tracing::info!(
                        release_sync.pages = planned.pages,
                        release_sync.upstream_versions = planned.upstream_versions,
                        release_sync.changes = written.len(),
                        release_sync.releases_changed = versions.len(),
                        release_sync.downgrades = planned.downgrades.len(),
                        "release sync done"
                    );
                    Ok(())
                }
                Err(err) => {
                    counters.failed(err.reason);
                    tracing::warn!(release_sync.reason = err.reason.label(), error.cause = %err, "release sync failed");
                    Err(anyhow::Error::new(err))
                }
            }
        },
    );
}
