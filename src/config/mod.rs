//! Typed settings: defaults, then an optional TOML file, then `VERSION_APP_*` variables
//! (and `DATABASE_URL`). A wrong or unknown setting stops start-up with a message naming it.
//!
//! The settings are written flat, one key per setting (`check_flush_interval_ms`), as they
//! always were; in the program they are nested by concern (`settings.check.flush_interval`)
//! with typed durations and `NonZero*` counts. `file.rs` holds the flat names, their
//! defaults, and the table from each name to its nested field (also in the README).

mod file;
#[cfg(test)]
mod tests;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::domain::pseudonym::SecretKey;
use file::FileSettings;

/// Prefix of every environment variable the application reads (besides `DATABASE_URL`).
pub const ENV_PREFIX: &str = "VERSION_APP_";

/// Everything the application can be told, nested by concern. Each field's doc names the
/// flat key that sets it (the TOML key; `VERSION_APP_<KEY>` upper-cased in the environment).
/// `Debug` never shows the store URLs (they may hold a password) or the keys.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The listening server and the process.
    pub server: ServerSettings,
    /// Connection limits and timeouts of the HTTP server (issue 8).
    pub http: HttpSettings,
    /// The store (and its optional read replica).
    pub store: StoreSettings,
    /// The release table.
    pub releases: ReleaseSettings,
    /// Release sync from an upstream version-app (README "Release sync").
    pub release_sync: ReleaseSyncSettings,
    /// Country lookup for version checks.
    pub geoip: GeoIpSettings,
    /// Version checks and badges.
    pub check: CheckSettings,
    /// Service Ping ingest.
    pub ingest: IngestSettings,
    /// The insights rollup.
    pub insights: InsightsSettings,
    /// How long data is kept (docs/privacy.md).
    pub retention: RetentionSettings,
    /// Keys of pseudonyms and erasure entries (docs/privacy.md).
    pub privacy: PrivacySettings,
    /// The console's sessions and logins.
    pub console: ConsoleSettings,
}

/// The listening server and the process.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Address to listen on (`listen`); port 0 picks a free port.
    pub listen: SocketAddr,
    /// HTTP worker threads (`workers`); `None` (0) means one per CPU core.
    pub workers: Option<NonZeroUsize>,
    /// How long graceful shutdown waits for in-flight requests (`shutdown_timeout_secs`).
    pub shutdown_timeout: Duration,
    /// Take the client address for the GeoIP lookup (and https for cookies) from the
    /// first `X-Forwarded-For` entry (`X-Forwarded-Proto`) instead of the connection
    /// (`trust_forwarded_for`; only behind a proxy that sets them, otherwise clients could
    /// pick their country).
    pub trust_forwarded_for: bool,
}

/// Connection limits and timeouts of the HTTP server (issue 8).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// How long an idle keep-alive connection is kept open (`http_keep_alive_secs`).
    pub keep_alive: Duration,
    /// How long a client has to send the request head (`http_client_request_timeout_ms`).
    pub client_request_timeout: Duration,
    /// How long to wait for a client to close after the answer when shutting a connection
    /// (`http_client_disconnect_timeout_ms`).
    pub client_disconnect_timeout: Duration,
    /// Open connections at most, all workers (`http_max_connections`); `None` (0) picks
    /// from the file-descriptor limit.
    pub max_connections: Option<NonZeroUsize>,
    /// How long a request body may go without a byte before 408
    /// (`request_body_idle_timeout_ms`).
    pub body_idle_timeout: Duration,
    /// How long a whole request body may take before 408 (`request_body_timeout_secs`).
    pub body_timeout: Duration,
    /// Slowest average body rate accepted once the idle window has passed, bytes per second
    /// (`request_body_min_bytes_per_sec`).
    pub body_min_bytes_per_sec: u64,
}

/// The store (and its optional read replica).
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `sqlite://PATH` (default, file created on first start) or `postgres://…`
    /// (`database_url`, also `DATABASE_URL`). Secret: it may hold a password.
    pub url: SecretString,
    /// Connections in the pool (`database_pool_size`).
    pub pool_size: NonZeroU32,
    /// How long to wait for a pooled connection before answering "store unavailable"
    /// (`database_timeout_secs`).
    pub timeout: Duration,
    /// Optional PostgreSQL read replica for read-only analyst queries (insights, export)
    /// (`database_read_url`). Secret, like `url`.
    pub read_url: Option<SecretString>,
    /// How far the replica may lag behind the primary before analyst reads go to the primary
    /// (`database_read_max_lag_secs`).
    pub read_max_lag: Duration,
    /// Start even when the store has migrations this binary does not know, a roll-back
    /// within one release (`allow_newer_schema`; migrations stay backward-compatible for one
    /// release).
    pub allow_newer_schema: bool,
}

/// The release table.
#[derive(Debug, Clone)]
pub struct ReleaseSettings {
    /// Load the bundled GitLab release history into an empty store on start-up
    /// (`seed_releases`).
    pub seed: bool,
    /// How often to look for release changes made by other processes
    /// (`release_refresh_secs`).
    pub refresh_interval: Duration,
}

/// Release sync from an upstream version-app (README "Release sync").
#[derive(Debug, Clone)]
pub struct ReleaseSyncSettings {
    /// Upstream to follow (`release_sync_url`: `https://host[/prefix]`; `/api/v1/versions`
    /// is appended unless given); `None`: no sync job.
    pub url: Option<String>,
    /// Time between syncs (`release_sync_interval_secs`).
    pub interval: Duration,
    /// Apply a security level the upstream lowers (`release_sync_allow_downgrade`; default:
    /// refuse the sync and report it).
    pub allow_downgrade: bool,
    /// How long one upstream request (connect, answer and body) may take
    /// (`release_sync_timeout_secs`).
    pub timeout: Duration,
    /// Largest page body accepted from the upstream, in bytes (`release_sync_max_page_bytes`).
    pub max_page_bytes: NonZeroUsize,
    /// Most pages read in one sync (`release_sync_max_pages`).
    pub max_pages: NonZeroU32,
    /// Most versions accepted from the upstream in one sync (`release_sync_max_versions`).
    pub max_versions: NonZeroUsize,
}

/// Country lookup for version checks.
#[derive(Debug, Clone)]
pub struct GeoIpSettings {
    /// Optional MaxMind-format country database (`geoip_path`); only the country code is
    /// ever kept.
    pub path: Option<PathBuf>,
}

/// Version checks and badges.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    /// Time between flushes of recorded version checks to the store
    /// (`check_flush_interval_ms`).
    pub flush_interval: Duration,
    /// Most distinct (day, host, version, country) keys held in memory between flushes
    /// (`check_buffer_max_keys`).
    pub buffer_max_keys: NonZeroUsize,
    /// Longest query string accepted on the check routes, in bytes (`check_max_query_bytes`).
    pub max_query_bytes: usize,
    /// `max-age` of badge and `check.json` answers for readable versions
    /// (`check_cache_max_age_secs`); zero sends `no-cache`.
    pub cache_max_age: Duration,
}

/// Service Ping ingest.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Largest Service Ping body accepted, as sent (compressed or not), in bytes
    /// (`ingest_max_body_bytes`).
    pub max_body_bytes: usize,
    /// Largest Service Ping body after gzip decompression, in bytes
    /// (`ingest_max_decompressed_bytes`).
    pub max_decompressed_bytes: usize,
    /// Deepest JSON nesting accepted in a Service Ping payload (`ingest_max_json_depth`).
    pub max_json_depth: usize,
    /// Service Ping bodies being processed at once before new ones get 503 + Retry-After
    /// (`ingest_max_concurrent`).
    pub max_concurrent: NonZeroUsize,
    /// How long a Service Ping waits for admission before getting 503 + Retry-After
    /// (`ingest_admission_wait_ms`; zero: not at all).
    pub admission_wait: Duration,
    /// Most payloads stored together in one group-commit transaction (`ingest_batch_max`).
    pub batch_max: NonZeroUsize,
    /// Writer threads storing payloads (`ingest_writers`); `None` (0) picks 1 for SQLite
    /// and 2 for PostgreSQL.
    pub writers: Option<NonZeroUsize>,
    /// Service Ping body bytes held in memory at once, all senders; beyond it 503
    /// (`ingest_max_body_bytes_in_flight`).
    pub max_body_bytes_in_flight: usize,
    /// Time between background recomputations of the DevOps-score leaders
    /// (`devops_leaders_refresh_secs`).
    pub devops_leaders_refresh: Duration,
    /// Time between runs of the job that merges staged metric values into blocks
    /// (`metric_merge_interval_secs`).
    pub metric_merge_interval: Duration,
    /// Staged submissions that make a block at once (`metric_block_min`).
    pub metric_block_min: NonZeroUsize,
    /// Fewer are merged once the oldest has waited this long (`metric_merge_max_wait_secs`).
    pub metric_merge_max_wait: Duration,
}

/// The insights rollup.
#[derive(Debug, Clone)]
pub struct InsightsSettings {
    /// Time between runs of the insights rollup job, which folds in new submissions
    /// (`insights_refresh_secs`).
    pub refresh_interval: Duration,
    /// Rows of computed insights series each process keeps (`insights_cache_rows`; 0 turns
    /// the cache off).
    pub cache_rows: usize,
}

/// How long data is kept (docs/privacy.md); periods are in whole days.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// Time between runs of the retention job, once across processes
    /// (`retention_interval_secs`).
    pub interval: Duration,
    /// Rows the retention job removes per statement, one short transaction each
    /// (`retention_batch_size`).
    pub batch_size: NonZeroU32,
    /// Days daily version-check counts are kept before being summed into monthly counts
    /// (`version_check_daily_retention_days`).
    pub version_check_daily_days: NonZeroU32,
    /// Days a host that sends no check stays in `hosts` (`host_retention_days`).
    pub host_days: NonZeroU32,
    /// Days `usage_ping_errors` reports are kept (`usage_ping_error_retention_days`).
    pub usage_ping_error_days: NonZeroU32,
    /// Days `usage_ping_metadata` reports (and their timings) are kept
    /// (`usage_ping_metadata_retention_days`).
    pub usage_ping_metadata_days: NonZeroU32,
    /// Days raw Service Ping payloads are kept (`raw_payload_retention_days`); `None` (0)
    /// keeps them forever.
    pub raw_payload_days: Option<NonZeroU32>,
    /// Days Service Ping submissions and their metric rows are kept
    /// (`submission_retention_days`); `None` (0) keeps them forever.
    pub submission_days: Option<NonZeroU32>,
}

/// Keys of pseudonyms and erasure entries (docs/privacy.md); never stored in the store.
#[derive(Debug, Clone)]
pub struct PrivacySettings {
    /// Key of `export --pseudonymise`'s HMAC-SHA256 pseudonyms (`pseudonymise_key`).
    pub pseudonymise_key: Option<SecretKey>,
    /// Key of the HMAC-SHA256 hashes that erasure entries keep (`erasure_key`).
    pub erasure_key: Option<SecretKey>,
}

/// The console's sessions and logins.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// How long a console session survives without a request (`console_session_idle_secs`).
    pub session_idle: Duration,
    /// How long a console session lasts at most, however active (`console_session_max_secs`).
    pub session_max: Duration,
    /// Always mark the console's cookies `Secure` (`console_cookie_secure`; they are also
    /// marked when a trusted proxy says the request came over https).
    pub cookie_secure: bool,
    /// Failed logins per client address or account name before a lockout
    /// (`console_login_max_failures`).
    pub login_max_failures: NonZeroU32,
    /// How long failed logins are remembered, and the length of a lockout
    /// (`console_login_lockout_secs`).
    pub login_lockout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        FileSettings::default()
            .into_settings()
            .expect("the default settings are valid")
    }
}

/// `Default` for each group: the group of [`Settings::default`].
macro_rules! group_defaults {
    ($($group:ident: $ty:ty),* $(,)?) => {
        $(impl Default for $ty {
            fn default() -> Self {
                Settings::default().$group
            }
        })*
    };
}

group_defaults!(
    server: ServerSettings,
    http: HttpSettings,
    store: StoreSettings,
    releases: ReleaseSettings,
    release_sync: ReleaseSyncSettings,
    geoip: GeoIpSettings,
    check: CheckSettings,
    ingest: IngestSettings,
    insights: InsightsSettings,
    retention: RetentionSettings,
    privacy: PrivacySettings,
    console: ConsoleSettings,
);

/// A setting that could not be read or makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file or an environment variable did not fit the settings' types (or set
    /// zero where zero makes no sense). The message starts with the setting's file name:
    /// figment names an environment variable's key upper-cased, without the prefix.
    #[error("invalid configuration: {}", load_message(.0))]
    Load(#[from] Box<figment::Error>),
    /// A value had the right type but an unusable value.
    #[error("invalid configuration: `{setting}`: {message}")]
    Invalid {
        /// The setting's name (TOML key).
        setting: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn load_message(error: &figment::Error) -> String {
    if error.path.is_empty() {
        error.to_string()
    } else {
        format!("`{}`: {error}", error.path.join("."))
    }
}

/// Which store a database URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Backend {
    /// Picks the backend from a URL's scheme; anything but SQLite or PostgreSQL is refused.
    pub fn from_url(url: &str) -> Option<Backend> {
        let scheme = url
            .split_once("://")
            .map(|(s, _)| s)
            .or_else(|| url.split_once(':').map(|(s, _)| s))?;
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            _ => None,
        }
    }
}

impl Settings {
    /// Reads settings: defaults, then `config_file` (if given), then the environment.
    pub fn load(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::from_figment(Self::figment(config_file))
    }

    /// The layered configuration source, with the flat keys; exposed so tests can add their
    /// own layers.
    pub fn figment(config_file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(FileSettings::default()));
        if let Some(path) = config_file {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database_url".into()),
            )
            // VERSION_APP_CONFIG names the file itself; it is not a setting.
            .merge(Env::prefixed(ENV_PREFIX).ignore(&["CONFIG"]))
    }

    /// Extracts and validates settings from a figment: an unknown key, a value of the wrong
    /// type, a zero where zero makes no sense or an unusable value is an error naming it.
    pub fn from_figment(figment: Figment) -> Result<Settings, ConfigError> {
        let file: FileSettings = figment.extract().map_err(Box::new)?;
        file.into_settings()
    }

    /// The environment variable names the application reads, for checking deployment files.
    pub fn env_var_names() -> Vec<String> {
        let defaults = serde_json::to_value(FileSettings::default()).expect("settings serialise");
        let mut names: Vec<String> = defaults
            .as_object()
            .expect("settings are a struct")
            .keys()
            .map(|k| format!("{ENV_PREFIX}{}", k.to_ascii_uppercase()))
            .collect();
        names.push("DATABASE_URL".into());
        names.push(format!("{ENV_PREFIX}CONFIG"));
        names.push("RUST_LOG".into());
        names
    }
}

impl StoreSettings {
    /// The store the database URL points at.
    pub fn backend(&self) -> Backend {
        Backend::from_url(self.url.expose_secret()).expect("validated at load")
    }
}

/// A settings duration as a `chrono` one for timestamp arithmetic, capped at 100 years so
/// that adding it to a date cannot overflow.
pub(crate) fn chrono_duration(duration: Duration) -> chrono::Duration {
    const CAP: chrono::TimeDelta = chrono::TimeDelta::days(36_525);
    chrono::Duration::from_std(duration).map_or(CAP, |d| d.min(CAP))
}
