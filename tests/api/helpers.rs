//! Test harness: the real server on port 0 against a fresh database per test.
//!
//! The store is SQLite in a temporary folder, or, when `TEST_DATABASE_URL` is set, a new
//! PostgreSQL database created on that server for this test alone and dropped afterwards.
//! An unreachable `TEST_DATABASE_URL` fails the test: it never silently falls back.

use actix_web::dev::ServerHandle;
use diesel::{Connection, PgConnection, RunQueryDsl};
use std::sync::atomic::{AtomicU64, Ordering};
use version_app::auth::{self, Scope};
use version_app::config::{Backend, Settings};
use version_app::db::Db;
use version_app::startup::Application;

/// A database made for one test.
pub struct TestDb {
    /// URL the app should use.
    pub url: String,
    cleanup: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestDb {
    /// Creates a fresh, empty database on the backend under test.
    pub fn new() -> TestDb {
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            Some(admin_url) => {
                assert_eq!(
                    Backend::from_url(&admin_url),
                    Some(Backend::Postgres),
                    "TEST_DATABASE_URL must be postgres://"
                );
                let name = format!(
                    "va_test_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    rand_suffix()
                );
                let mut admin = PgConnection::establish(&admin_url).unwrap_or_else(|e| {
                    panic!("TEST_DATABASE_URL is set but PostgreSQL is unreachable: {e}")
                });
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .expect("create test database");
                let url = replace_db_name(&admin_url, &name);
                TestDb {
                    url,
                    cleanup: Some((admin_url, name)),
                    _dir: None,
                }
            }
            None => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("version-app.db").display());
                TestDb {
                    url,
                    cleanup: None,
                    _dir: Some(dir),
                }
            }
        }
    }

    /// True when this run tests PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.cleanup.is_some()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.cleanup.take() {
            // A thread of its own: Drop may run inside the async runtime.
            let _ = std::thread::spawn(move || {
                if let Ok(mut admin) = PgConnection::establish(&admin_url) {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut admin);
                }
            })
            .join();
        }
    }
}

fn rand_suffix() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// Swaps the database name in a postgres URL (keeping any query string).
pub fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let host_part = match path_start {
        Some(i) => &base[..i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

/// Settings for a test: port 0, the given database, quick background intervals.
pub fn test_settings(db: &TestDb) -> Settings {
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.store.url = db.url.clone().into();
    settings.store.pool_size = std::num::NonZeroU32::new(4).unwrap();
    settings.releases.refresh_interval = std::time::Duration::from_secs(1);
    settings.server.shutdown_timeout = std::time::Duration::from_secs(5);
    settings.server.workers = std::num::NonZeroUsize::new(2);
    // Merge staged metric values into blocks every second, whatever is staged, so every test
    // also reads values while and after they move (metric_values.rs).
    settings.ingest.metric_merge_interval = std::time::Duration::from_secs(1);
    settings.ingest.metric_block_min = std::num::NonZeroUsize::new(1).unwrap();
    settings.ingest.metric_merge_max_wait = std::time::Duration::ZERO;
    settings
}

/// A running server for one test.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// HTTP client (no redirects followed, so tests see what the server answers).
    pub client: reqwest::Client,
    /// The settings the server runs with.
    pub settings: Settings,
    /// Server handle for graceful shutdown.
    pub handle: ServerHandle,
    /// Resolves when the server (and its shutdown work) has finished.
    pub stopped: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The database, dropped (and removed) with the app.
    pub db: TestDb,
}

impl TestApp {
    /// Starts the app with default test settings.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the app after letting the test adjust its settings.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
        Self::spawn_on(TestDb::new(), adjust).await
    }

    /// Starts the app on a given database.
    pub async fn spawn_on(db: TestDb, adjust: impl FnOnce(&mut Settings)) -> TestApp {
        if std::env::var("TEST_LOG").is_ok() {
            version_app::telemetry::init();
        }
        let mut settings = test_settings(&db);
        adjust(&mut settings);
        let app = Application::build(settings.clone())
            .await
            .expect("app builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        let stopped = tokio::spawn(app.run_until_stopped());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Below the server's keep-alive (5 s): a pooled connection idle for longer may be
            // closed by the server just as it is reused, and the request then fails to send
            // (seen once in insights_cache under load, after a multi-second rollup refresh).
            .pool_idle_timeout(std::time::Duration::from_secs(2))
            .build()
            .unwrap();
        TestApp {
            address,
            client,
            settings,
            handle,
            stopped,
            db,
        }
    }

    /// Full URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// GET a path.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// POSTs a release as release CI does (form fields, token in `private_token`) to
    /// `/api/v1/versions`.
    pub async fn post_release(&self, token: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut form = vec![("private_token", token)];
        form.extend_from_slice(fields);
        self.client
            .post(self.url("/api/v1/versions"))
            .form(&form)
            .send()
            .await
            .expect("request sent")
    }

    /// POSTs a Service Ping JSON body to `/usage_data`, as an instance does.
    pub async fn post_usage_data(&self, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url("/usage_data"))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Uploads a payload file through the manual upload form (multipart field `file`).
    pub async fn upload(&self, file_name: &str, bytes: Vec<u8>) -> reqwest::Response {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(file_name.to_string())
            .mime_str("application/json")
            .expect("valid mime type");
        self.client
            .post(self.url("/usage_data"))
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .expect("request sent")
    }

    /// A store handle on the app's database (for arranging and asserting).
    pub fn store(&self) -> Db {
        Db::connect(&self.settings.store).expect("store")
    }

    /// Issues an API token with a scope directly in the store.
    pub fn token(&self, scope: Scope) -> String {
        let db = self.store();
        let mut conn = db.get().unwrap();
        auth::issue(&mut conn, "test", scope).unwrap().secret
    }

    /// Stops the server gracefully and waits for its shutdown work.
    pub async fn stop(self) -> TestDb {
        self.handle.stop(true).await;
        self.stopped
            .await
            .expect("server task")
            .expect("server ran");
        self.db
    }
}

/// Runs the built binary with the given database and extra environment.
pub fn run_cli(db_url: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_version-app"));
    command
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "warn");
    for (key, _) in std::env::vars() {
        if key.starts_with("VERSION_APP_") {
            command.env_remove(key);
        }
    }
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("binary runs")
}
