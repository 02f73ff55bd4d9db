//! Loading settings: layers, names in errors, the flat-to-nested table, redaction.

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
        assert_eq!(settings.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.store.backend(), Backend::Sqlite);
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
        assert_eq!(settings.server.listen.to_string(), "127.0.0.1:9100");
        assert!(!settings.releases.seed);
        assert_eq!(settings.store.backend(), Backend::Postgres);
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
        assert_eq!(
            settings.retention.submission_days, None,
            "0 keeps submissions"
        );
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

#[test]
fn debug_output_hides_the_store_passwords() {
    Jail::expect_with(|jail| {
        jail.set_env("DATABASE_URL", "postgres://app:pw-primary-5432@db/va");
        jail.set_env(
            "VERSION_APP_DATABASE_READ_URL",
            "postgres://reader:pw-replica-5433@replica/va",
        );
        let settings = Settings::load(None).unwrap();
        let shown = format!("{settings:?}");
        assert!(!shown.contains("pw-primary-5432"), "{shown}");
        assert!(!shown.contains("pw-replica-5433"), "{shown}");
        assert_eq!(
            settings.store.url.expose_secret(),
            "postgres://app:pw-primary-5432@db/va"
        );
        assert_eq!(
            settings.store.read_url.as_ref().map(|u| u.expose_secret()),
            Some("postgres://reader:pw-replica-5433@replica/va")
        );
        Ok(())
    });
}

#[test]
fn unknown_keys_stop_start_up_naming_them() {
    Jail::expect_with(|jail| {
        jail.create_file("va.toml", "chek_flush_interval_ms = 100\n")?;
        let err = Settings::load(Some(Path::new("va.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("chek_flush_interval_ms"), "{err}");
        Ok(())
    });
    // The nesting is the program's, not the file's: the flat keys are the only names.
    Jail::expect_with(|jail| {
        jail.create_file("va.toml", "[check]\nflush_interval_ms = 100\n")?;
        let err = Settings::load(Some(Path::new("va.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("check"), "{err}");
        Ok(())
    });
}

#[test]
fn zero_is_refused_where_it_makes_no_sense_and_means_none_where_documented() {
    for (var, setting) in [
        ("VERSION_APP_CHECK_BUFFER_MAX_KEYS", "check_buffer_max_keys"),
        ("VERSION_APP_DATABASE_POOL_SIZE", "database_pool_size"),
        (
            "VERSION_APP_CHECK_FLUSH_INTERVAL_MS",
            "check_flush_interval_ms",
        ),
        (
            "VERSION_APP_RELEASE_SYNC_MAX_PAGES",
            "release_sync_max_pages",
        ),
        ("VERSION_APP_RETENTION_BATCH_SIZE", "retention_batch_size"),
        (
            "VERSION_APP_CONSOLE_LOGIN_MAX_FAILURES",
            "console_login_max_failures",
        ),
    ] {
        Jail::expect_with(|jail| {
            jail.set_env(var, "0");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains(&format!("`{setting}`")), "{var}=0: {err}");
            Ok(())
        });
    }
    Jail::expect_with(|jail| {
        for var in ["WORKERS", "HTTP_MAX_CONNECTIONS", "INGEST_WRITERS"] {
            jail.set_env(format!("{ENV_PREFIX}{var}"), "0");
        }
        let settings = Settings::load(None).unwrap();
        assert_eq!(settings.server.workers, None);
        assert_eq!(settings.http.max_connections, None);
        assert_eq!(settings.ingest.writers, None);
        assert_eq!(
            settings.retention.raw_payload_days, None,
            "default keeps raw"
        );
        Ok(())
    });
}

/// Every flat key lands in the nested field the README's table names, in its unit.
#[test]
fn every_flat_key_reaches_its_nested_field() {
    const FILE: &str = r#"
listen = "127.0.0.2:9001"
workers = 3
shutdown_timeout_secs = 7
trust_forwarded_for = true
http_keep_alive_secs = 11
http_client_request_timeout_ms = 1500
http_client_disconnect_timeout_ms = 250
http_max_connections = 900
request_body_idle_timeout_ms = 1200
request_body_timeout_secs = 13
request_body_min_bytes_per_sec = 64
database_url = "postgres://u@h/db"
database_pool_size = 3
database_timeout_secs = 2
database_read_url = "postgres://r@h/db"
database_read_max_lag_secs = 17
allow_newer_schema = true
seed_releases = false
release_refresh_secs = 19
release_sync_url = "https://version.example.com"
release_sync_interval_secs = 23
release_sync_allow_downgrade = true
release_sync_timeout_secs = 29
release_sync_max_page_bytes = 65536
release_sync_max_pages = 31
release_sync_max_versions = 37
geoip_path = "/srv/geo.mmdb"
check_flush_interval_ms = 100
check_buffer_max_keys = 41
check_max_query_bytes = 128
check_cache_max_age_secs = 0
ingest_max_body_bytes = 2048
ingest_max_decompressed_bytes = 4096
ingest_max_json_depth = 8
ingest_max_concurrent = 43
ingest_admission_wait_ms = 0
ingest_batch_max = 47
ingest_writers = 2
ingest_max_body_bytes_in_flight = 1000000
devops_leaders_refresh_secs = 53
metric_merge_interval_secs = 137
metric_block_min = 139
metric_merge_max_wait_secs = 149
insights_refresh_secs = 59
insights_cache_rows = 113
retention_interval_secs = 61
retention_batch_size = 67
version_check_daily_retention_days = 71
host_retention_days = 73
usage_ping_error_retention_days = 79
usage_ping_metadata_retention_days = 83
raw_payload_retention_days = 89
submission_retention_days = 97
pseudonymise_key = "pseudonymise-key-0123"
erasure_key = "erasure-key-0123456789"
console_session_idle_secs = 101
console_session_max_secs = 103
console_cookie_secure = true
console_login_max_failures = 107
console_login_lockout_secs = 109
"#;
    Jail::expect_with(|jail| {
        jail.create_file("va.toml", FILE)?;
        let s = Settings::load(Some(Path::new("va.toml"))).unwrap();
        let secs = Duration::from_secs;
        let ms = Duration::from_millis;
        let nz = |n: usize| NonZeroUsize::new(n);
        let nz32 = |n: u32| NonZeroU32::new(n).unwrap();
        assert_eq!(s.server.listen, "127.0.0.2:9001".parse().unwrap());
        assert_eq!(s.server.workers, nz(3));
        assert_eq!(s.server.shutdown_timeout, secs(7));
        assert!(s.server.trust_forwarded_for);
        assert_eq!(s.http.keep_alive, secs(11));
        assert_eq!(s.http.client_request_timeout, ms(1500));
        assert_eq!(s.http.client_disconnect_timeout, ms(250));
        assert_eq!(s.http.max_connections, nz(900));
        assert_eq!(s.http.body_idle_timeout, ms(1200));
        assert_eq!(s.http.body_timeout, secs(13));
        assert_eq!(s.http.body_min_bytes_per_sec, 64);
        assert_eq!(s.store.url.expose_secret(), "postgres://u@h/db");
        assert_eq!(s.store.pool_size, nz32(3));
        assert_eq!(s.store.timeout, secs(2));
        assert_eq!(
            s.store.read_url.as_ref().map(|u| u.expose_secret()),
            Some("postgres://r@h/db")
        );
        assert_eq!(s.store.read_max_lag, secs(17));
        assert!(s.store.allow_newer_schema);
        assert!(!s.releases.seed);
        assert_eq!(s.releases.refresh_interval, secs(19));
        assert_eq!(
            s.release_sync.url.as_deref(),
            Some("https://version.example.com")
        );
        assert_eq!(s.release_sync.interval, secs(23));
        assert!(s.release_sync.allow_downgrade);
        assert_eq!(s.release_sync.timeout, secs(29));
        assert_eq!(Some(s.release_sync.max_page_bytes), nz(65536));
        assert_eq!(s.release_sync.max_pages, nz32(31));
        assert_eq!(Some(s.release_sync.max_versions), nz(37));
        assert_eq!(s.geoip.path.as_deref(), Some(Path::new("/srv/geo.mmdb")));
        assert_eq!(s.check.flush_interval, ms(100));
        assert_eq!(Some(s.check.buffer_max_keys), nz(41));
        assert_eq!(s.check.max_query_bytes, 128);
        assert_eq!(s.check.cache_max_age, Duration::ZERO);
        assert_eq!(s.ingest.max_body_bytes, 2048);
        assert_eq!(s.ingest.max_decompressed_bytes, 4096);
        assert_eq!(s.ingest.max_json_depth, 8);
        assert_eq!(Some(s.ingest.max_concurrent), nz(43));
        assert_eq!(s.ingest.admission_wait, Duration::ZERO);
        assert_eq!(Some(s.ingest.batch_max), nz(47));
        assert_eq!(s.ingest.writers, nz(2));
        assert_eq!(s.ingest.max_body_bytes_in_flight, 1_000_000);
        assert_eq!(s.ingest.devops_leaders_refresh, secs(53));
        assert_eq!(s.ingest.metric_merge_interval, secs(137));
        assert_eq!(s.ingest.metric_block_min.get(), 139);
        assert_eq!(s.ingest.metric_merge_max_wait, secs(149));
        assert_eq!(s.insights.refresh_interval, secs(59));
        assert_eq!(s.insights.cache_rows, 113);
        assert_eq!(s.retention.interval, secs(61));
        assert_eq!(s.retention.batch_size, nz32(67));
        assert_eq!(s.retention.version_check_daily_days, nz32(71));
        assert_eq!(s.retention.host_days, nz32(73));
        assert_eq!(s.retention.usage_ping_error_days, nz32(79));
        assert_eq!(s.retention.usage_ping_metadata_days, nz32(83));
        assert_eq!(s.retention.raw_payload_days, Some(nz32(89)));
        assert_eq!(s.retention.submission_days, Some(nz32(97)));
        let key = |k: &Option<SecretKey>| k.as_ref().map(|k| k.pseudonym("x"));
        assert_eq!(
            key(&s.privacy.pseudonymise_key),
            Some(SecretKey::new("pseudonymise-key-0123").pseudonym("x"))
        );
        assert_eq!(
            key(&s.privacy.erasure_key),
            Some(SecretKey::new("erasure-key-0123456789").pseudonym("x"))
        );
        assert_eq!(s.console.session_idle, secs(101));
        assert_eq!(s.console.session_max, secs(103));
        assert!(s.console.cookie_secure);
        assert_eq!(s.console.login_max_failures, nz32(107));
        assert_eq!(s.console.login_lockout, secs(109));
        // The file sets every key the environment can: the two lists are the same.
        let mut from_file: Vec<String> = FILE
            .lines()
            .filter_map(|l| l.split_once(" = "))
            .map(|(k, _)| format!("{ENV_PREFIX}{}", k.to_ascii_uppercase()))
            .collect();
        from_file.extend(["DATABASE_URL", "VERSION_APP_CONFIG", "RUST_LOG"].map(String::from));
        from_file.sort();
        let mut names = Settings::env_var_names();
        names.sort();
        assert_eq!(from_file, names);
        Ok(())
    });
}

#[test]
fn chrono_durations_are_capped_so_date_arithmetic_cannot_overflow() {
    assert_eq!(
        chrono_duration(Duration::from_secs(3600)),
        chrono::Duration::seconds(3600)
    );
    let capped = chrono_duration(Duration::from_secs(u64::MAX));
    assert_eq!(capped, chrono::Duration::days(36_525));
    let now = chrono::Utc::now().naive_utc();
    assert!(now - capped < now);
}
