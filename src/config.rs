//! Typed settings: defaults, then an optional TOML file, then `VERSION_APP_*` variables
//! (and `DATABASE_URL`). A wrong setting stops start-up with a message naming it.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::domain::pseudonym::SecretKey;

/// Prefix of every environment variable the application reads (besides `DATABASE_URL`).
pub const ENV_PREFIX: &str = "VERSION_APP_";

/// Everything the application can be told; field names are the TOML keys, and
/// `VERSION_APP_<NAME>` in upper case are the environment variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address to listen on (`VERSION_APP_LISTEN`); port 0 picks a free port.
    pub listen: String,
    /// `sqlite://PATH` (default, file created on first start) or `postgres://…`.
    pub database_url: String,
    /// Connections in the pool.
    pub database_pool_size: u32,
    /// Seconds to wait for a pooled connection before answering "store unavailable".
    pub database_timeout_secs: u64,
    /// Load the bundled GitLab release history into an empty store on start-up.
    pub seed_releases: bool,
    /// Seconds between checks for release changes made by other processes.
    pub release_refresh_secs: u64,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Seconds that graceful shutdown waits for in-flight requests.
    pub shutdown_timeout_secs: u64,
    /// Optional MaxMind-format country database; only the country code is ever kept.
    pub geoip_path: Option<PathBuf>,
    /// Milliseconds between flushes of recorded version checks to the store.
    pub check_flush_interval_ms: u64,
    /// Most distinct (day, host, version, country) keys held in memory between flushes.
    pub check_buffer_max_keys: usize,
    /// Longest query string accepted on the check routes, in bytes.
    pub check_max_query_bytes: usize,
    /// `max-age` of badge and `check.json` answers for readable versions; 0 sends `no-cache`.
    pub check_cache_max_age_secs: u64,
    /// Take the client address for the GeoIP lookup from the first `X-Forwarded-For` entry
    /// instead of the connection (only behind a proxy that sets it; otherwise clients could
    /// pick their country).
    pub trust_forwarded_for: bool,
    /// Largest Service Ping body accepted, as sent (compressed or not), in bytes.
    pub ingest_max_body_bytes: usize,
    /// Largest Service Ping body after gzip decompression, in bytes.
    pub ingest_max_decompressed_bytes: usize,
    /// Deepest JSON nesting accepted in a Service Ping payload.
    pub ingest_max_json_depth: usize,
    /// Service Ping bodies being processed at once before new ones get 503 + Retry-After.
    pub ingest_max_concurrent: usize,
    /// Seconds between background recomputations of the DevOps-score leaders.
    pub devops_leaders_refresh_secs: u64,
    /// Days raw Service Ping payloads are kept; 0 keeps them forever.
    pub raw_payload_retention_days: u32,
    /// Seconds between runs of the insights rollup job (new submissions are folded in).
    pub insights_refresh_secs: u64,
    /// Milliseconds a Service Ping waits for admission before getting 503 + Retry-After.
    pub ingest_admission_wait_ms: u64,
    /// Most payloads stored together in one group-commit transaction.
    pub ingest_batch_max: usize,
    /// Writer threads storing payloads; 0 picks 1 for SQLite and 2 for PostgreSQL.
    pub ingest_writers: usize,
    // --- privacy and data lifecycle (docs/privacy.md) ---
    /// Key of `export --pseudonymise`'s HMAC-SHA256 pseudonyms; never stored in the store.
    pub pseudonymise_key: Option<SecretKey>,
    /// Key of the HMAC-SHA256 hashes that erasure entries keep; never stored in the store.
    pub erasure_key: Option<SecretKey>,
    /// Days daily version-check counts are kept before being summed into monthly counts.
    pub version_check_daily_retention_days: u32,
    /// Days a host that sends no check stays in `hosts`.
    pub host_retention_days: u32,
    /// Days Service Ping submissions and their metric rows are kept; 0 keeps them forever.
    pub submission_retention_days: u32,
    /// Days `usage_ping_errors` reports are kept.
    pub usage_ping_error_retention_days: u32,
    /// Days `usage_ping_metadata` reports (and their timings) are kept.
    pub usage_ping_metadata_retention_days: u32,
    /// Rows the retention job removes per statement (one short transaction each).
    pub retention_batch_size: u32,
    /// Seconds a console session survives without a request.
    pub console_session_idle_secs: u64,
    /// Seconds a console session lasts at most, however active.
    pub console_session_max_secs: u64,
    /// Always mark the console's cookies `Secure` (they are also marked when a trusted proxy
    /// says the request came over https).
    pub console_cookie_secure: bool,
    /// Failed logins per client address or account name before a lockout.
    pub console_login_max_failures: u32,
    /// Seconds failed logins are remembered, and the length of a lockout.
    pub console_login_lockout_secs: u64,
    /// Milliseconds a request body may go without a byte before 408 (issue 8).
    pub request_body_idle_timeout_ms: u64,
    /// Seconds a whole request body may take before 408.
    pub request_body_timeout_secs: u64,
    /// Slowest average body rate accepted once the idle window has passed, bytes per second.
    pub request_body_min_bytes_per_sec: u64,
    /// Service Ping body bytes held in memory at once (all senders); beyond it 503.
    pub ingest_max_body_bytes_in_flight: usize,
    /// Seconds an idle keep-alive connection is kept open.
    pub http_keep_alive_secs: u64,
    /// Milliseconds a client has to send the request head.
    pub http_client_request_timeout_ms: u64,
    /// Milliseconds to wait for a client to close after the answer when shutting a
    /// connection.
    pub http_client_disconnect_timeout_ms: u64,
    /// Open connections at most (all workers); 0 picks from the file-descriptor limit.
    pub http_max_connections: usize,
    // --- release sync from an upstream version-app (README "Release sync") ---
    /// Upstream to follow (`https://host[/prefix]`; `/api/v1/versions` is appended unless
    /// given); unset: no sync job.
    pub release_sync_url: Option<String>,
    /// Seconds between syncs.
    pub release_sync_interval_secs: u64,
    /// Apply a security level the upstream lowers (default: refuse the sync and report it).
    pub release_sync_allow_downgrade: bool,
    /// Seconds one upstream request (connect, answer and body) may take.
    pub release_sync_timeout_secs: u64,
    /// Largest page body accepted from the upstream, in bytes.
    pub release_sync_max_page_bytes: usize,
    /// Most pages read in one sync.
    pub release_sync_max_pages: u32,
    /// Most versions accepted from the upstream in one sync.
    pub release_sync_max_versions: usize,
    // --- scale-out (docs/scaling.md) ---
    /// Seconds between runs of the retention job (once across processes).
    pub retention_interval_secs: u64,
    /// Start even when the store has migrations this binary does not know (a roll-back
    /// within one release; migrations stay backward-compatible for one release).
    pub allow_newer_schema: bool,
    /// Optional PostgreSQL read replica for read-only analyst queries (insights, export).
    pub database_read_url: Option<String>,
    /// Seconds the replica may lag behind the primary before analyst reads go to the primary.
    pub database_read_max_lag_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://data/version-app.db".into(),
            database_pool_size: 8,
            database_timeout_secs: 5,
            seed_releases: true,
            release_refresh_secs: 30,
            workers: 0,
            shutdown_timeout_secs: 30,
            geoip_path: None,
            check_flush_interval_ms: 5_000,
            check_buffer_max_keys: 100_000,
            check_max_query_bytes: 4096,
            check_cache_max_age_secs: 3600,
            trust_forwarded_for: false,
            ingest_max_body_bytes: 8 * 1024 * 1024,
            ingest_max_decompressed_bytes: 32 * 1024 * 1024,
            ingest_max_json_depth: 64,
            ingest_max_concurrent: 16,
            devops_leaders_refresh_secs: 300,
            raw_payload_retention_days: 0,
            insights_refresh_secs: 60,
            ingest_admission_wait_ms: 2_000,
            ingest_batch_max: 32,
            ingest_writers: 0,
            pseudonymise_key: None,
            erasure_key: None,
            version_check_daily_retention_days: 400,
            host_retention_days: 400,
            submission_retention_days: 0,
            usage_ping_error_retention_days: 90,
            usage_ping_metadata_retention_days: 90,
            retention_batch_size: 1000,
            console_session_idle_secs: 3600,
            console_session_max_secs: 12 * 3600,
            console_cookie_secure: false,
            console_login_max_failures: 5,
            console_login_lockout_secs: 900,
            request_body_idle_timeout_ms: 10_000,
            request_body_timeout_secs: 120,
            request_body_min_bytes_per_sec: 512,
            ingest_max_body_bytes_in_flight: 128 * 1024 * 1024,
            http_keep_alive_secs: 5,
            http_client_request_timeout_ms: 5_000,
            http_client_disconnect_timeout_ms: 1_000,
            http_max_connections: 0,
            release_sync_url: None,
            release_sync_interval_secs: 300,
            release_sync_allow_downgrade: false,
            release_sync_timeout_secs: 30,
            release_sync_max_page_bytes: 1024 * 1024,
            release_sync_max_pages: 200,
            release_sync_max_versions: 10_000,
            retention_interval_secs: 24 * 3600,
            allow_newer_schema: false,
            database_read_url: None,
            database_read_max_lag_secs: 30,
        }
    }
}

/// A setting that could not be read or makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file or an environment variable did not fit the settings' types.
    #[error("invalid configuration: {0}")]
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

    /// The layered configuration source; exposed so tests can add their own layers.
    pub fn figment(config_file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
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

    /// Extracts and validates settings from a figment.
    pub fn from_figment(figment: Figment) -> Result<Settings, ConfigError> {
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// The environment variable names the application reads, for checking deployment files.
    pub fn env_var_names() -> Vec<String> {
        let defaults = serde_json::to_value(Settings::default()).expect("settings serialise");
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

    /// The parsed listen address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("validated at load")
    }

    /// The store the database URL points at.
    pub fn backend(&self) -> Backend {
        Backend::from_url(&self.database_url).expect("validated at load")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |setting: &'static str, message: String| Err(ConfigError::Invalid { setting, message });
        if self.listen.parse::<SocketAddr>().is_err() {
            return invalid(
                "listen",
                format!("`{}` is not an address like 127.0.0.1:8080", self.listen),
            );
        }
        if Backend::from_url(&self.database_url).is_none() {
            return invalid(
                "database_url",
                "must start with sqlite:// or postgres:// (other stores are not supported)".into(),
            );
        }
        if self.database_pool_size == 0 {
            return invalid("database_pool_size", "must be at least 1".into());
        }
        if self
            .database_read_url
            .as_deref()
            .is_some_and(|url| Backend::from_url(url) != Some(Backend::Postgres))
        {
            return invalid(
                "database_read_url",
                "must be a postgres:// URL (a read replica of a PostgreSQL store)".into(),
            );
        }
        let positive: [(&'static str, u64); 11] = [
            ("retention_interval_secs", self.retention_interval_secs),
            ("console_session_idle_secs", self.console_session_idle_secs),
            ("console_session_max_secs", self.console_session_max_secs),
            (
                "console_login_max_failures",
                u64::from(self.console_login_max_failures),
            ),
            (
                "console_login_lockout_secs",
                self.console_login_lockout_secs,
            ),
            ("insights_refresh_secs", self.insights_refresh_secs),
            ("database_timeout_secs", self.database_timeout_secs),
            ("release_refresh_secs", self.release_refresh_secs),
            ("check_flush_interval_ms", self.check_flush_interval_ms),
            (
                "devops_leaders_refresh_secs",
                self.devops_leaders_refresh_secs,
            ),
            ("check_buffer_max_keys", self.check_buffer_max_keys as u64),
        ];
        for (setting, value) in positive {
            if value == 0 {
                return invalid(setting, "must be greater than 0".into());
            }
        }
        if self.check_max_query_bytes < 64 {
            return invalid("check_max_query_bytes", "must be at least 64".into());
        }
        if self.ingest_max_body_bytes < 1024 {
            return invalid("ingest_max_body_bytes", "must be at least 1024".into());
        }
        if self.ingest_max_decompressed_bytes < self.ingest_max_body_bytes {
            return invalid(
                "ingest_max_decompressed_bytes",
                "must be at least ingest_max_body_bytes".into(),
            );
        }
        if !(2..=512).contains(&self.ingest_max_json_depth) {
            return invalid("ingest_max_json_depth", "must be between 2 and 512".into());
        }
        if self.ingest_batch_max == 0 {
            return invalid("ingest_batch_max", "must be at least 1".into());
        }
        if self.ingest_max_concurrent == 0 {
            return invalid("ingest_max_concurrent", "must be at least 1".into());
        }
        self.validate_privacy()?;
        self.validate_sync()
    }
}

impl Settings {
    /// The sync URL must be http(s); intervals, timeouts and caps must be positive.
    fn validate_sync(&self) -> Result<(), ConfigError> {
        let invalid =
            |setting: &'static str, message: String| Err(ConfigError::Invalid { setting, message });
        if let Some(url) = &self.release_sync_url {
            if let Err(e) = crate::domain::release_sync::upstream_url(url) {
                return invalid("release_sync_url", e);
            }
        }
        let positive: [(&'static str, u64); 5] = [
            (
                "release_sync_interval_secs",
                self.release_sync_interval_secs,
            ),
            ("release_sync_timeout_secs", self.release_sync_timeout_secs),
            (
                "release_sync_max_page_bytes",
                self.release_sync_max_page_bytes as u64,
            ),
            (
                "release_sync_max_pages",
                u64::from(self.release_sync_max_pages),
            ),
            (
                "release_sync_max_versions",
                self.release_sync_max_versions as u64,
            ),
        ];
        for (setting, value) in positive {
            if value == 0 {
                return invalid(setting, "must be greater than 0".into());
            }
        }
        Ok(())
    }
}

impl Settings {
    /// Retention periods where 0 would mean "keep forever" are refused unless documented so
    /// (`raw_payload_retention_days`, `submission_retention_days`); keys must be long enough.
    fn validate_privacy(&self) -> Result<(), ConfigError> {
        if self.retention_batch_size == 0 {
            return Err(ConfigError::Invalid {
                setting: "retention_batch_size",
                message: "must be at least 1".into(),
            });
        }
        let days: [(&'static str, u32); 4] = [
            (
                "version_check_daily_retention_days",
                self.version_check_daily_retention_days,
            ),
            ("host_retention_days", self.host_retention_days),
            (
                "usage_ping_error_retention_days",
                self.usage_ping_error_retention_days,
            ),
            (
                "usage_ping_metadata_retention_days",
                self.usage_ping_metadata_retention_days,
            ),
        ];
        for (setting, value) in days {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    setting,
                    message: "must be a whole number of at least 1 (0 does not mean keep here)"
                        .into(),
                });
            }
        }
        let keys = [
            ("pseudonymise_key", &self.pseudonymise_key),
            ("erasure_key", &self.erasure_key),
        ];
        for (setting, key) in keys {
            if key.as_ref().is_some_and(|k| k.len() < SecretKey::MIN_LEN) {
                return Err(ConfigError::Invalid {
                    setting,
                    message: format!("must be at least {} bytes long", SecretKey::MIN_LEN),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![expect(
        clippy::result_large_err,
        reason = "Jail's closures return figment's own (large) error type; that is its API, not ours"
    )]
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_are_valid() {
        Jail::expect_with(|_| {
            let settings = Settings::load(None).unwrap();
            assert_eq!(settings.listen, "127.0.0.1:8080");
            assert_eq!(settings.backend(), Backend::Sqlite);
            Ok(())
        });
    }

    #[test]
    fn file_then_environment_override_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "va.toml",
                "listen = \"0.0.0.0:9000\"\nseed_releases = false\n",
            )?;
            jail.set_env("VERSION_APP_LISTEN", "127.0.0.1:9100");
            jail.set_env("DATABASE_URL", "postgres://u@h/db");
            let settings = Settings::load(Some(Path::new("va.toml"))).unwrap();
            assert_eq!(settings.listen, "127.0.0.1:9100");
            assert!(!settings.seed_releases);
            assert_eq!(settings.backend(), Backend::Postgres);
            Ok(())
        });
    }

    #[test]
    fn wrong_settings_name_the_setting() {
        Jail::expect_with(|jail| {
            jail.set_env("VERSION_APP_DATABASE_POOL_SIZE", "many");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("database_pool_size"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("VERSION_APP_LISTEN_ADRESS", "x");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("listen_adress"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("DATABASE_URL", "mysql://x");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("database_url"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("VERSION_APP_LISTEN", "localhost");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("listen"), "{err}");
            Ok(())
        });
    }

    /// A body cap under 1 KiB was reported as `ingest_max_decompressed_bytes`, a setting
    /// that was fine; each of the two is now named only when it is the wrong one.
    #[test]
    fn ingest_body_caps_name_the_setting_that_is_wrong() {
        Jail::expect_with(|jail| {
            jail.set_env("VERSION_APP_INGEST_MAX_BODY_BYTES", "512");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("`ingest_max_body_bytes`"), "{err}");
            assert!(!err.contains("ingest_max_decompressed_bytes"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("VERSION_APP_INGEST_MAX_BODY_BYTES", "4096");
            jail.set_env("VERSION_APP_INGEST_MAX_DECOMPRESSED_BYTES", "2048");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("`ingest_max_decompressed_bytes`"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_retention_settings_name_the_setting() {
        for (var, value, setting) in [
            (
                "VERSION_APP_HOST_RETENTION_DAYS",
                "0",
                "host_retention_days",
            ),
            (
                "VERSION_APP_USAGE_PING_ERROR_RETENTION_DAYS",
                "-5",
                "usage_ping_error_retention_days",
            ),
            (
                "VERSION_APP_VERSION_CHECK_DAILY_RETENTION_DAYS",
                "a year",
                "version_check_daily_retention_days",
            ),
            (
                "VERSION_APP_RAW_PAYLOAD_RETENTION_DAYS",
                "-1",
                "raw_payload_retention_days",
            ),
            (
                "VERSION_APP_SUBMISSION_RETENTION_DAYS",
                "x",
                "submission_retention_days",
            ),
            ("VERSION_APP_PSEUDONYMISE_KEY", "short", "pseudonymise_key"),
        ] {
            Jail::expect_with(|jail| {
                jail.set_env(var, value);
                let err = Settings::load(None).unwrap_err().to_string();
                assert!(err.to_lowercase().contains(setting), "{var}={value}: {err}");
                Ok(())
            });
        }
        Jail::expect_with(|jail| {
            jail.set_env("VERSION_APP_SUBMISSION_RETENTION_DAYS", "0");
            jail.set_env("VERSION_APP_PSEUDONYMISE_KEY", "0123456789abcdef");
            let settings = Settings::load(None).unwrap();
            assert_eq!(settings.submission_retention_days, 0, "0 keeps submissions");
            assert!(!format!("{settings:?}").contains("0123456789abcdef"));
            Ok(())
        });
    }

    #[test]
    fn env_names_cover_every_setting() {
        let names = Settings::env_var_names();
        assert!(names.contains(&"VERSION_APP_SEED_RELEASES".to_string()));
        assert!(names.contains(&"VERSION_APP_LISTEN".to_string()));
        assert!(names.contains(&"DATABASE_URL".to_string()));
    }
}
