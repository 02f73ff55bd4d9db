//! What every handler can reach: the application's shared, read-mostly state.
//!
//! Its own module, below both `startup` (which builds it) and `routes` (which read it), so
//! that neither has to import the other.

use actix_web::http::header::HeaderValue;
use std::sync::Arc;

use crate::config::Settings;
use crate::db::Db;
use crate::geoip::GeoIp;
use crate::ingest::Ingest;
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::recorder::Recorder;
use crate::render::BadgeCache;
use crate::routes::body::BodyGuard;
use crate::snapshot::Releases;

/// Shared, read-mostly state every handler can reach.
pub struct AppState {
    /// The store.
    pub db: Db,
    /// Where read-only analyst queries go: a read replica when configured and usable.
    pub read_db: crate::read_replica::ReadDb,
    /// The release snapshot verdicts read.
    pub releases: Releases,
    /// Effective settings.
    pub settings: Arc<Settings>,
    /// Country lookup, when a GeoIP database is configured and readable.
    pub geoip: Option<Arc<GeoIp>>,
    /// Prometheus metrics (`/metrics`).
    pub metrics: Arc<Metrics>,
    /// The write-behind aggregate of version checks.
    pub recorder: Arc<Recorder>,
    /// Pre-rendered badges and resolved settings of the check routes.
    pub check: CheckState,
    /// Service Ping ingest: admission, group-commit writer, cached DevOps leaders.
    pub ingest: Ingest,
    /// The runner of every background job.
    pub jobs: Jobs,
    /// Body deadlines, the ingest byte budget and connection counts.
    pub body: Arc<BodyGuard>,
    /// The console's login throttle and metrics.
    pub console: crate::console::ConsoleState,
    /// The insights series computed so far, per period (`insights::period_cache`).
    pub insights_cache: Arc<crate::insights::period_cache::PeriodCache>,
}

/// Per-application settings of the check routes, resolved once.
pub struct CheckState {
    /// The process-wide badges.
    pub(crate) badges: &'static BadgeCache,
    /// `Cache-Control` of readable checks.
    pub(crate) cache_control: HeaderValue,
    /// Longest query string read.
    pub(crate) max_query_bytes: usize,
}

impl CheckState {
    /// Resolves the settings; renders the process-wide badges if nobody has yet (blocking).
    pub fn new(settings: &Settings) -> CheckState {
        let cache_control = if settings.check.cache_max_age.is_zero() {
            HeaderValue::from_static("no-cache")
        } else {
            // `private`: a shared cache (CDN, proxy) answering for us would swallow the
            // checks we exist to count; the browser may still keep the badge a while.
            HeaderValue::try_from(format!(
                "private, max-age={}",
                settings.check.cache_max_age.as_secs()
            ))
            .expect("digits are a valid header value")
        };
        CheckState {
            badges: BadgeCache::global(),
            cache_control,
            max_query_bytes: settings.check.max_query_bytes,
        }
    }
}
