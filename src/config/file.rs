//! The settings as they are written: one flat key per setting, the same in a TOML file and
//! (upper-cased, after `VERSION_APP_`) in the environment. These names are the public
//! interface (scripts, `docker-compose.yml`, `deploy/`, CI set them) and do not change; this
//! file is the one table that maps each of them to its place in the nested [`Settings`].
//!
//! Kept flat on purpose: `#[serde(deny_unknown_fields)]` does not work together with
//! `#[serde(flatten)]`, and serde's flatten also loses the key name in figment's errors, so a
//! misspelt or wrong setting would no longer stop start-up naming it. Zero is refused here by
//! the `NonZero*` types wherever it makes no sense (serde names the key); cross-field checks
//! are in [`FileSettings::into_settings`].

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use super::{
    Backend, CheckSettings, ConfigError, ConsoleSettings, GeoIpSettings, HttpSettings,
    IngestSettings, InsightsSettings, PrivacySettings, ReleaseSettings, ReleaseSyncSettings,
    RetentionSettings, ServerSettings, Settings, StoreSettings,
};
use crate::domain::pseudonym::SecretKey;

/// Every setting under its file and environment name (`VERSION_APP_<NAME>` upper-cased;
/// `DATABASE_URL` also sets `database_url`). `_secs`, `_ms` and `_days` are the units.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileSettings {
    // server
    listen: String,
    workers: usize,
    shutdown_timeout_secs: u64,
    trust_forwarded_for: bool,
    // http
    http_keep_alive_secs: u64,
    http_client_request_timeout_ms: u64,
    http_client_disconnect_timeout_ms: u64,
    http_max_connections: usize,
    request_body_idle_timeout_ms: u64,
    request_body_timeout_secs: u64,
    request_body_min_bytes_per_sec: u64,
    // store
    database_url: String,
    database_pool_size: NonZeroU32,
    database_timeout_secs: NonZeroU64,
    database_read_url: Option<String>,
    database_read_max_lag_secs: u64,
    allow_newer_schema: bool,
    // releases
    seed_releases: bool,
    release_refresh_secs: NonZeroU64,
    // release sync
    release_sync_url: Option<String>,
    release_sync_interval_secs: NonZeroU64,
    release_sync_allow_downgrade: bool,
    release_sync_timeout_secs: NonZeroU64,
    release_sync_max_page_bytes: NonZeroUsize,
    release_sync_max_pages: NonZeroU32,
    release_sync_max_versions: NonZeroUsize,
    // geoip
    geoip_path: Option<PathBuf>,
    // check
    check_flush_interval_ms: NonZeroU64,
    check_buffer_max_keys: NonZeroUsize,
    check_max_query_bytes: usize,
    check_cache_max_age_secs: u64,
    // ingest
    ingest_max_body_bytes: usize,
    ingest_max_decompressed_bytes: usize,
    ingest_max_json_depth: usize,
    ingest_max_concurrent: NonZeroUsize,
    ingest_admission_wait_ms: u64,
    ingest_batch_max: NonZeroUsize,
    ingest_writers: usize,
    ingest_max_body_bytes_in_flight: usize,
    devops_leaders_refresh_secs: NonZeroU64,
    metric_merge_interval_secs: NonZeroU64,
    metric_block_min: NonZeroUsize,
    metric_merge_max_wait_secs: u64,
    // insights
    insights_refresh_secs: NonZeroU64,
    insights_cache_rows: usize,
    // retention
    retention_interval_secs: NonZeroU64,
    retention_batch_size: NonZeroU32,
    version_check_daily_retention_days: NonZeroU32,
    host_retention_days: NonZeroU32,
    usage_ping_error_retention_days: NonZeroU32,
    usage_ping_metadata_retention_days: NonZeroU32,
    raw_payload_retention_days: u32,
    submission_retention_days: u32,
    // privacy
    pseudonymise_key: Option<SecretKey>,
    erasure_key: Option<SecretKey>,
    // console
    console_session_idle_secs: NonZeroU64,
    console_session_max_secs: NonZeroU64,
    console_cookie_secure: bool,
    console_login_max_failures: NonZeroU32,
    console_login_lockout_secs: NonZeroU64,
}

/// `NonZero*::new` for the defaults below, checked at compile time.
macro_rules! nz {
    ($ty:ident, $value:expr) => {{
        const N: std::num::$ty = std::num::$ty::new($value).unwrap();
        N
    }};
}

impl Default for FileSettings {
    fn default() -> Self {
        FileSettings {
            listen: "127.0.0.1:8080".into(),
            workers: 0,
            shutdown_timeout_secs: 30,
            trust_forwarded_for: false,
            http_keep_alive_secs: 5,
            http_client_request_timeout_ms: 5_000,
            http_client_disconnect_timeout_ms: 1_000,
            http_max_connections: 0,
            request_body_idle_timeout_ms: 10_000,
            request_body_timeout_secs: 120,
            request_body_min_bytes_per_sec: 512,
            database_url: "sqlite://data/version-app.db".into(),
            database_pool_size: nz!(NonZeroU32, 8),
            database_timeout_secs: nz!(NonZeroU64, 5),
            database_read_url: None,
            database_read_max_lag_secs: 30,
            allow_newer_schema: false,
            seed_releases: true,
            release_refresh_secs: nz!(NonZeroU64, 30),
            release_sync_url: None,
            release_sync_interval_secs: nz!(NonZeroU64, 300),
            release_sync_allow_downgrade: false,
            release_sync_timeout_secs: nz!(NonZeroU64, 30),
            release_sync_max_page_bytes: nz!(NonZeroUsize, 1024 * 1024),
            release_sync_max_pages: nz!(NonZeroU32, 200),
            release_sync_max_versions: nz!(NonZeroUsize, 10_000),
            geoip_path: None,
            check_flush_interval_ms: nz!(NonZeroU64, 5_000),
            check_buffer_max_keys: nz!(NonZeroUsize, 100_000),
            check_max_query_bytes: 4096,
            check_cache_max_age_secs: 3600,
            ingest_max_body_bytes: 8 * 1024 * 1024,
            ingest_max_decompressed_bytes: 32 * 1024 * 1024,
            ingest_max_json_depth: 64,
            ingest_max_concurrent: nz!(NonZeroUsize, 16),
            ingest_admission_wait_ms: 2_000,
            ingest_batch_max: nz!(NonZeroUsize, 32),
            ingest_writers: 0,
            ingest_max_body_bytes_in_flight: 128 * 1024 * 1024,
            devops_leaders_refresh_secs: nz!(NonZeroU64, 300),
            metric_merge_interval_secs: nz!(NonZeroU64, 5),
            metric_block_min: nz!(NonZeroUsize, 256),
            metric_merge_max_wait_secs: 600,
            insights_refresh_secs: nz!(NonZeroU64, 60),
            insights_cache_rows: 200_000,
            retention_interval_secs: nz!(NonZeroU64, 24 * 3600),
            retention_batch_size: nz!(NonZeroU32, 1000),
            version_check_daily_retention_days: nz!(NonZeroU32, 400),
            host_retention_days: nz!(NonZeroU32, 400),
            usage_ping_error_retention_days: nz!(NonZeroU32, 90),
            usage_ping_metadata_retention_days: nz!(NonZeroU32, 90),
            raw_payload_retention_days: 0,
            submission_retention_days: 0,
            pseudonymise_key: None,
            erasure_key: None,
            console_session_idle_secs: nz!(NonZeroU64, 3600),
            console_session_max_secs: nz!(NonZeroU64, 12 * 3600),
            console_cookie_secure: false,
            console_login_max_failures: nz!(NonZeroU32, 5),
            console_login_lockout_secs: nz!(NonZeroU64, 900),
        }
    }
}

fn invalid<T>(setting: &'static str, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid {
        setting,
        message: message.into(),
    })
}

fn secs(n: NonZeroU64) -> Duration {
    Duration::from_secs(n.get())
}

impl FileSettings {
    /// The nested settings: each flat key goes to the field named on its line. Checks what
    /// the types alone cannot (addresses, URLs, ranges, one setting against another), naming
    /// the flat key.
    pub(super) fn into_settings(self) -> Result<Settings, ConfigError> {
        let Ok(listen) = self.listen.parse::<SocketAddr>() else {
            return invalid(
                "listen",
                format!("`{}` is not an address like 127.0.0.1:8080", self.listen),
            );
        };
        if Backend::from_url(&self.database_url).is_none() {
            return invalid(
                "database_url",
                "must start with sqlite:// or postgres:// (other stores are not supported)",
            );
        }
        if self
            .database_read_url
            .as_deref()
            .is_some_and(|url| Backend::from_url(url) != Some(Backend::Postgres))
        {
            return invalid(
                "database_read_url",
                "must be a postgres:// URL (a read replica of a PostgreSQL store)",
            );
        }
        if let Some(url) = &self.release_sync_url {
            if let Err(e) = crate::domain::release_sync::upstream_url(url) {
                return invalid("release_sync_url", e);
            }
        }
        if self.check_max_query_bytes < 64 {
            return invalid("check_max_query_bytes", "must be at least 64");
        }
        if self.ingest_max_body_bytes < 1024 {
            return invalid("ingest_max_body_bytes", "must be at least 1024");
        }
        if self.ingest_max_decompressed_bytes < self.ingest_max_body_bytes {
            return invalid(
                "ingest_max_decompressed_bytes",
                "must be at least ingest_max_body_bytes",
            );
        }
        if !(2..=512).contains(&self.ingest_max_json_depth) {
            return invalid("ingest_max_json_depth", "must be between 2 and 512");
        }
        for (setting, key) in [
            ("pseudonymise_key", &self.pseudonymise_key),
            ("erasure_key", &self.erasure_key),
        ] {
            if key.as_ref().is_some_and(|k| k.len() < SecretKey::MIN_LEN) {
                return invalid(
                    setting,
                    format!("must be at least {} bytes long", SecretKey::MIN_LEN),
                );
            }
        }
        Ok(Settings {
            server: ServerSettings {
                listen,
                workers: NonZeroUsize::new(self.workers),
                shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
                trust_forwarded_for: self.trust_forwarded_for,
            },
            http: HttpSettings {
                keep_alive: Duration::from_secs(self.http_keep_alive_secs),
                client_request_timeout: Duration::from_millis(self.http_client_request_timeout_ms),
                client_disconnect_timeout: Duration::from_millis(
                    self.http_client_disconnect_timeout_ms,
                ),
                max_connections: NonZeroUsize::new(self.http_max_connections),
                body_idle_timeout: Duration::from_millis(self.request_body_idle_timeout_ms),
                body_timeout: Duration::from_secs(self.request_body_timeout_secs),
                body_min_bytes_per_sec: self.request_body_min_bytes_per_sec,
            },
            store: StoreSettings {
                url: self.database_url.into(),
                pool_size: self.database_pool_size,
                timeout: secs(self.database_timeout_secs),
                read_url: self.database_read_url.map(Into::into),
                read_max_lag: Duration::from_secs(self.database_read_max_lag_secs),
                allow_newer_schema: self.allow_newer_schema,
            },
            releases: ReleaseSettings {
                seed: self.seed_releases,
                refresh_interval: secs(self.release_refresh_secs),
            },
            release_sync: ReleaseSyncSettings {
                url: self.release_sync_url,
                interval: secs(self.release_sync_interval_secs),
                allow_downgrade: self.release_sync_allow_downgrade,
                timeout: secs(self.release_sync_timeout_secs),
                max_page_bytes: self.release_sync_max_page_bytes,
                max_pages: self.release_sync_max_pages,
                max_versions: self.release_sync_max_versions,
            },
            geoip: GeoIpSettings {
                path: self.geoip_path,
            },
            check: CheckSettings {
                flush_interval: Duration::from_millis(self.check_flush_interval_ms.get()),
                buffer_max_keys: self.check_buffer_max_keys,
                max_query_bytes: self.check_max_query_bytes,
                cache_max_age: Duration::from_secs(self.check_cache_max_age_secs),
            },
            ingest: IngestSettings {
                max_body_bytes: self.ingest_max_body_bytes,
                max_decompressed_bytes: self.ingest_max_decompressed_bytes,
                max_json_depth: self.ingest_max_json_depth,
                max_concurrent: self.ingest_max_concurrent,
                admission_wait: Duration::from_millis(self.ingest_admission_wait_ms),
                batch_max: self.ingest_batch_max,
                writers: NonZeroUsize::new(self.ingest_writers),
                max_body_bytes_in_flight: self.ingest_max_body_bytes_in_flight,
                devops_leaders_refresh: secs(self.devops_leaders_refresh_secs),
                metric_merge_interval: secs(self.metric_merge_interval_secs),
                metric_block_min: self.metric_block_min,
                metric_merge_max_wait: Duration::from_secs(self.metric_merge_max_wait_secs),
            },
            insights: InsightsSettings {
                refresh_interval: secs(self.insights_refresh_secs),
                cache_rows: self.insights_cache_rows,
            },
            retention: RetentionSettings {
                interval: secs(self.retention_interval_secs),
                batch_size: self.retention_batch_size,
                version_check_daily_days: self.version_check_daily_retention_days,
                host_days: self.host_retention_days,
                usage_ping_error_days: self.usage_ping_error_retention_days,
                usage_ping_metadata_days: self.usage_ping_metadata_retention_days,
                raw_payload_days: NonZeroU32::new(self.raw_payload_retention_days),
                submission_days: NonZeroU32::new(self.submission_retention_days),
            },
            privacy: PrivacySettings {
                pseudonymise_key: self.pseudonymise_key,
                erasure_key: self.erasure_key,
            },
            console: ConsoleSettings {
                session_idle: secs(self.console_session_idle_secs),
                session_max: secs(self.console_session_max_secs),
                cookie_secure: self.console_cookie_secure,
                login_max_failures: self.console_login_max_failures,
                login_lockout: secs(self.console_login_lockout_secs),
            },
        })
    }
}
