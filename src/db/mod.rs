//! The store: one code base over SQLite (default) and PostgreSQL.
//!
//! diesel is synchronous, so every call goes through [`Db::run`], which takes a pooled
//! connection on actix's blocking thread pool and never on an async worker. Model code is
//! written once against [`AnyConnection`] with the [`with_conn!`](crate::with_conn) macro,
//! which compiles the same block for each backend.

pub mod guard;
mod json_text;
pub mod locks;
pub mod models;
pub mod schema;
mod write_priority;
pub mod write_tx;

pub use write_tx::WriteTransaction;

pub use json_text::JsonText;

use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::path::Path;

use crate::config::{Backend, StoreSettings};
use secrecy::ExposeSecret;

/// SQLite migrations, embedded at build time.
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
/// PostgreSQL migrations, embedded at build time; same names as the SQLite tree.
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A pooled connection to whichever store is configured.
pub enum AnyConnection {
    /// Embedded SQLite.
    Sqlite(PooledConnection<ConnectionManager<SqliteConnection>>),
    /// PostgreSQL.
    Postgres(PooledConnection<ConnectionManager<PgConnection>>),
}

/// Runs one block of diesel code against either backend: the block is compiled once per
/// backend with `$c` bound to the concrete connection type, so the query DSL (upserts
/// included) type-checks for each store.
#[macro_export]
macro_rules! with_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::AnyConnection::Sqlite($c) => {
                let $c: &mut diesel::SqliteConnection = &mut *$c;
                $body
            }
            $crate::db::AnyConnection::Postgres($c) => {
                let $c: &mut diesel::PgConnection = &mut *$c;
                $body
            }
        }
    };
}

impl AnyConnection {
    /// Runs `f` in one write transaction (committed when it returns `Ok`, rolled back
    /// otherwise), so model functions taking `&mut AnyConnection` compose into one atomic
    /// write. On SQLite it begins IMMEDIATE, like [`WriteTransaction`]: the write lock is
    /// taken up front, where `busy_timeout` applies, so processes queue instead of failing.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        // SQLite: BEGIN IMMEDIATE takes the write lock up front, where busy_timeout applies,
        // so writers of two processes queue instead of failing a lock upgrade (write_tx.rs).
        match self {
            AnyConnection::Sqlite(c) => {
                AnsiTransactionManager::begin_transaction_sql(&mut **c, "BEGIN IMMEDIATE")?;
            }
            AnyConnection::Postgres(c) => AnsiTransactionManager::begin_transaction(&mut **c)?,
        }
        match f(self) {
            Ok(value) => {
                with_conn!(&mut *self, |c| AnsiTransactionManager::commit_transaction(
                    c
                ))?;
                Ok(value)
            }
            Err(err) => {
                // The first error is the one worth reporting; a failed rollback also leaves
                // the connection broken, which the pool notices on its next checkout.
                let _ = with_conn!(&mut *self, |c| {
                    AnsiTransactionManager::rollback_transaction(c)
                });
                Err(err)
            }
        }
    }
}

/// Why the store could not do what was asked. Every variant keeps its cause as its
/// `source()` (print the chain with [`crate::telemetry::Chain`]); [`DbError::is_unavailable`] is the
/// one place that decides whether the store is at fault (retry later: 503, readiness fails)
/// or the request or the code is (500).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No pooled connection within `database_timeout_secs` (store down, pool exhausted).
    #[error("no store connection could be had")]
    Pool(#[from] diesel::r2d2::PoolError),
    /// A dedicated connection (WAL setup, job locks) could not be opened.
    #[error("cannot connect to the store")]
    Connect(#[from] diesel::ConnectionError),
    /// The SQLite file was deleted or replaced under the running server.
    #[error(transparent)]
    StoreFile(#[from] guard::StoreFileError),
    /// A store fault noted within the last [`guard::FAULT_WINDOW`] (readiness); the original
    /// error was answered and logged when it happened, only its text is kept.
    #[error("recent store fault: {0}")]
    RecentFault(String),
    /// The SQLite file's folder could not be created.
    #[error("cannot create {}", .path.display())]
    CreateDir {
        /// The folder.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A query failed.
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    /// A migration failed.
    #[error("migration failed")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The blocking task running store work panicked or was cancelled.
    #[error("{what} failed")]
    Task {
        /// Which task.
        what: &'static str,
        /// The join error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored value cannot be read back (a corrupt or foreign row).
    #[error("{what} cannot be read")]
    Corrupt {
        /// Which row.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Rows contradict what the same transaction just wrote or read (a bug).
    #[error("{0}")]
    Inconsistent(String),
    /// The store has applied migrations this binary does not know (a newer release migrated
    /// it); the process refuses to start unless `allow_newer_schema` is set.
    #[error(
        "the store was migrated by a newer release of version-app: it has migration(s) {0} \
         that this binary does not know. Run the newer release, or set allow_newer_schema = true \
         (VERSION_APP_ALLOW_NEWER_SCHEMA=true) to roll back one release (migrations are \
         backward-compatible for one release; docs/scaling.md)"
    )]
    NewerSchema(String),
    /// The operation needs a backend this store is not (say, a read replica on SQLite).
    #[error("{0}")]
    Unsupported(&'static str),
}

/// SQLite result codes that mean the store, not the request, is at fault, with the message
/// SQLite gives each. diesel reports SQLite errors other than constraint violations as
/// `DatabaseErrorKind::Unknown` carrying only `sqlite3_errmsg()`, which for these codes is the
/// fixed text `sqlite3_errstr()` has for the primary code (extended codes share it). Matching
/// the whole message is therefore a lookup of the code, not a search in free text.
const SQLITE_STORE_FAULTS: &[(&str, &str)] = &[
    ("database is locked", "SQLITE_BUSY"),
    ("database table is locked", "SQLITE_LOCKED"),
    ("database or disk is full", "SQLITE_FULL"),
    ("disk I/O error", "SQLITE_IOERR"),
    ("attempt to write a readonly database", "SQLITE_READONLY"),
    ("unable to open database file", "SQLITE_CANTOPEN"),
];

impl DbError {
    /// True when the store, not the request, is at fault, so retrying later may succeed: no
    /// connection, a lost PostgreSQL connection (diesel maps SQLSTATE class 08 and a broken
    /// libpq connection to `ClosedConnection`; a command libpq could not send is
    /// `UnableToSendCommand`), a busy, full, failing, read-only or vanished SQLite file.
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            DbError::Pool(_)
            | DbError::Connect(_)
            | DbError::StoreFile(_)
            | DbError::RecentFault(_)
            | DbError::CreateDir { .. } => true,
            DbError::Query(Error::DatabaseError(kind, info)) => match kind {
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
                    true
                }
                DatabaseErrorKind::Unknown => sqlite_store_fault(info.message()).is_some(),
                _ => false,
            },
            DbError::Query(_)
            | DbError::Migration(_)
            | DbError::Task { .. }
            | DbError::Corrupt { .. }
            | DbError::Inconsistent(_)
            | DbError::NewerSchema(_)
            | DbError::Unsupported(_) => false,
        }
    }
}

/// The SQLite result code whose fixed message `message` is, among [`SQLITE_STORE_FAULTS`].
fn sqlite_store_fault(message: &str) -> Option<&'static str> {
    SQLITE_STORE_FAULTS
        .iter()
        .find(|(text, _)| *text == message)
        .map(|(_, code)| *code)
}

enum Pools {
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
    Postgres(Pool<ConnectionManager<PgConnection>>),
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pools: std::sync::Arc<Pools>,
    backend: Backend,
    guard: std::sync::Arc<guard::StoreGuard>,
    /// The configured URL, for connections that must not come from the pool (job locks).
    url: std::sync::Arc<str>,
    /// Ingest writers go first on SQLite's one write lock (`write_priority.rs`).
    priority: std::sync::Arc<write_priority::WritePriority>,
}

/// Longest a background job waits for announced ingest writers before its next write
/// transaction. Ingest groups commit in a few ms, so the bound only matters under constant
/// ingest, where the job still gets about ten transactions a second.
const YIELD_MAX: std::time::Duration = std::time::Duration::from_millis(100);

/// SQLite settings that are per connection, not per file, so every pooled connection needs
/// them: WAL lets readers run beside the writer, `busy_timeout` makes writers queue instead
/// of failing at once, and foreign keys are off by default in SQLite.
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        // journal_mode is not here: WAL is a property of the file, set once in
        // `Db::connect` before the pool opens its connections (issue 8, #15).
        conn.batch_execute(
            "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

impl Db {
    /// Opens a pool on the configured store (creating the SQLite file and its folder).
    pub fn connect(settings: &StoreSettings) -> Result<Db, DbError> {
        let timeout = settings.timeout;
        let backend = settings.backend();
        let url = settings.url.expose_secret();
        let mut store_guard = guard::StoreGuard::default();
        let pools = match backend {
            Backend::Sqlite => {
                let path = sqlite_path(url);
                if let Some(parent) = Path::new(&path).parent() {
                    if !parent.as_os_str().is_empty() {
                        std::fs::create_dir_all(parent).map_err(|source| DbError::CreateDir {
                            path: parent.to_path_buf(),
                            source,
                        })?;
                    }
                }
                set_wal_once(&path)?;
                store_guard = guard::StoreGuard::for_file(&path);
                let pool = Pool::builder()
                    .max_size(settings.pool_size.get())
                    .connection_timeout(timeout)
                    .connection_customizer(Box::new(SqlitePragmas))
                    .build(ConnectionManager::<SqliteConnection>::new(path))?;
                Pools::Sqlite(pool)
            }
            Backend::Postgres => {
                // build_unchecked: the app must start (and answer checks) while PostgreSQL
                // is still coming up; readiness reports the store's state instead.
                let pool = Pool::builder()
                    .max_size(settings.pool_size.get())
                    .min_idle(Some(1))
                    .connection_timeout(timeout)
                    .build_unchecked(ConnectionManager::<PgConnection>::new(url));
                Pools::Postgres(pool)
            }
        };
        Ok(Db {
            pools: std::sync::Arc::new(pools),
            backend,
            guard: std::sync::Arc::new(store_guard),
            url: url.into(),
            priority: Default::default(),
        })
    }

    /// Announces an ingest writer until the ticket is dropped: on SQLite, background jobs
    /// wait between their transactions while one is announced (`write_priority.rs`).
    pub(crate) fn announce_ingest_write(&self) -> write_priority::PriorityTicket<'_> {
        self.priority.announce()
    }

    /// Called by background jobs between write transactions: on SQLite, waits (at most
    /// `YIELD_MAX`) while an ingest writer is announced, so it gets the write lock next.
    /// Returns at once on PostgreSQL, which has no store-wide write lock.
    pub(crate) fn yield_to_ingest(&self) {
        if self.backend == Backend::Sqlite {
            self.priority.yield_to_writers(YIELD_MAX);
        }
    }

    /// The store's URL (for a dedicated connection; never log it: it may hold a password).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Which store this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Takes a connection, blocking the current thread: call only off the async workers.
    pub fn get(&self) -> Result<AnyConnection, DbError> {
        self.guard.check_file()?;
        Ok(match &*self.pools {
            Pools::Sqlite(pool) => pool.get().map(AnyConnection::Sqlite),
            Pools::Postgres(pool) => pool.get().map(AnyConnection::Postgres),
        }?)
    }

    /// Runs `f` with a connection on the blocking pool.
    pub async fn run<F, T>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        actix_web::web::block(move || {
            let mut conn = db.get()?;
            let outcome = f(&mut conn);
            if let Err(err) = &outcome {
                db.note_fault(err);
            }
            outcome
        })
        .await
        .map_err(|e| DbError::Task {
            what: "store task",
            source: Box::new(e),
        })?
    }

    /// Remembers `err` for readiness when it means the store, not the request, is at fault.
    pub fn note_fault(&self, err: &DbError) {
        if err.is_unavailable() {
            self.guard
                .note_fault(&crate::telemetry::Chain(err).to_string());
        }
    }

    /// Brings the schema up to date; returns the names of the migrations applied. Refuses
    /// a store that has migrations this binary does not know (see [`Db::migrate_with`]).
    pub fn migrate(&self) -> Result<Vec<String>, DbError> {
        self.migrate_with(false)
    }

    /// Brings the schema up to date. The migration rule (docs/scaling.md): migrations are
    /// backward-compatible for one release, and a process refuses to start on a store
    /// migrated by a newer release (an applied migration it does not know) unless
    /// `allow_newer_schema` is set, for rolling back one release. The whole step holds an
    /// advisory lock on PostgreSQL (the write lock on SQLite), so nodes starting at once
    /// migrate one after another instead of racing on the same DDL.
    pub fn migrate_with(&self, allow_newer_schema: bool) -> Result<Vec<String>, DbError> {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        let mut conn = self.get()?;
        match &mut conn {
            AnyConnection::Postgres(c) => {
                let lock_key = locks::migration_lock_key();
                c.batch_execute(&format!("SELECT pg_advisory_lock({lock_key})"))?;
                let outcome = migrate_on(&mut **c, POSTGRES_MIGRATIONS, allow_newer_schema);
                // A failure here leaves the lock on a pooled connection; the pool's next
                // validity check or the process's exit ends the session and releases it.
                let _ = c.batch_execute(&format!("SELECT pg_advisory_unlock({lock_key})"));
                outcome
            }
            AnyConnection::Sqlite(c) => {
                // SQLite: one IMMEDIATE transaction around it all (each migration becomes a
                // savepoint), so processes starting together take turns (busy_timeout).
                AnsiTransactionManager::begin_transaction_sql(&mut **c, "BEGIN IMMEDIATE")?;
                match migrate_on(&mut **c, SQLITE_MIGRATIONS, allow_newer_schema) {
                    Ok(applied) => {
                        AnsiTransactionManager::commit_transaction(&mut **c)?;
                        Ok(applied)
                    }
                    Err(err) => {
                        let _ = AnsiTransactionManager::rollback_transaction(&mut **c);
                        Err(err)
                    }
                }
            }
        }
    }

    /// True when the store answers a trivial query.
    pub fn ping(&self) -> Result<(), DbError> {
        if let Some(cause) = self.guard.recent_fault() {
            return Err(DbError::RecentFault(cause));
        }
        let mut conn = self.get()?;
        with_conn!(&mut conn, |c| c.batch_execute("SELECT 1"))?;
        Ok(())
    }
}

/// Refuses unknown applied migrations (unless allowed), then runs the pending ones.
fn migrate_on<B, C>(
    c: &mut C,
    migrations: EmbeddedMigrations,
    allow_newer_schema: bool,
) -> Result<Vec<String>, DbError>
where
    B: diesel::backend::Backend,
    C: MigrationHarness<B>,
    EmbeddedMigrations: MigrationSource<B>,
{
    let failed = DbError::Migration;
    let known: std::collections::HashSet<String> = MigrationSource::<B>::migrations(&migrations)
        .map_err(failed)?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    let unknown: Vec<String> = c
        .applied_migrations()
        .map_err(failed)?
        .iter()
        .map(ToString::to_string)
        .filter(|version| !known.contains(version))
        .collect();
    if !unknown.is_empty() {
        let list = unknown.join(", ");
        if !allow_newer_schema {
            return Err(DbError::NewerSchema(list));
        }
        tracing::warn!(
            migrations.unknown = %list,
            "the store has migrations this binary does not know; starting because allow_newer_schema is set"
        );
    }
    c.run_pending_migrations(migrations)
        .map(|versions| versions.iter().map(ToString::to_string).collect())
        .map_err(failed)
}

/// Switches the file to WAL once, from one connection, before the pool opens several at once:
/// eight connections each switching a fresh file raced and logged "database is locked".
/// WAL persists in the file, so every later connection is in WAL already.
fn set_wal_once(path: &str) -> Result<(), DbError> {
    use diesel::Connection;
    let mut conn = SqliteConnection::establish(path)?;
    // A failure here is the file's state (locked, read-only, unreadable): classified like any
    // query error.
    Ok(conn.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;")?)
}

/// The file path of a `sqlite://PATH` URL (`sqlite:PATH` too).
fn sqlite_path(url: &str) -> String {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_state_errors_are_unavailable() {
        use diesel::result::{DatabaseErrorKind, Error};
        let sqlite = |message: &str| {
            DbError::Query(Error::DatabaseError(
                DatabaseErrorKind::Unknown,
                Box::new(message.to_string()),
            ))
        };
        for message in [
            "database or disk is full",
            "disk I/O error",
            "attempt to write a readonly database",
            "database is locked",
        ] {
            assert!(sqlite(message).is_unavailable(), "{message}");
        }
        assert!(!sqlite("UNIQUE constraint failed: x").is_unavailable());
    }

    #[test]
    fn faults_are_classified_by_kind_and_code_not_by_words_in_the_message() {
        use diesel::result::{DatabaseErrorKind, Error};
        let query = |kind, message: &str| {
            DbError::Query(Error::DatabaseError(kind, Box::new(message.to_string())))
        };
        // PostgreSQL: lost connections are typed by diesel, whatever libpq's words.
        assert!(query(DatabaseErrorKind::ClosedConnection, "server closed it").is_unavailable());
        assert!(query(DatabaseErrorKind::UnableToSendCommand, "no connection").is_unavailable());
        // A message merely mentioning a word is not a code.
        for message in [
            "relation \"busy_connection_locked\" does not exist",
            "database is locked (extra words)",
        ] {
            assert!(
                !query(DatabaseErrorKind::Unknown, message).is_unavailable(),
                "{message}"
            );
        }
        assert!(!query(DatabaseErrorKind::UniqueViolation, "database is locked").is_unavailable());
        let corrupt = DbError::Corrupt {
            what: "row 1".into(),
            source: "bad".into(),
        };
        assert!(!corrupt.is_unavailable());
        assert_eq!(
            crate::telemetry::Chain(&corrupt).to_string(),
            "row 1 cannot be read: bad"
        );
    }

    #[test]
    fn sqlite_urls_map_to_paths() {
        assert_eq!(
            sqlite_path("sqlite://data/version-app.db"),
            "data/version-app.db"
        );
        assert_eq!(sqlite_path("sqlite:///var/lib/va.db"), "/var/lib/va.db");
        assert_eq!(sqlite_path("sqlite:va.db"), "va.db");
    }

    /// The first statement of `sql` that would break the previous release's code (the
    /// migration rule, docs/scaling.md), unless the file says why with a `-- contract:` line
    /// (what it removes, and which release stopped using it).
    fn contracting(sql: &str) -> Option<String> {
        if sql.contains("-- contract:") {
            return None;
        }
        let code: String = sql
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join(" ");
        code.split(';').map(str::trim).find_map(|statement| {
            let upper = statement.to_uppercase();
            let breaks = [
                "DROP TABLE",
                "DROP COLUMN",
                "RENAME",
                "ALTER COLUMN",
                "SET NOT NULL",
            ]
            .iter()
            .any(|word| upper.contains(word))
                || (upper.contains("ADD COLUMN")
                    && upper.contains("NOT NULL")
                    && !upper.contains("DEFAULT"));
            breaks.then(|| statement.to_string())
        })
    }

    #[test]
    fn migrations_are_backward_compatible_for_one_release() {
        assert!(contracting("ALTER TABLE t DROP COLUMN c;").is_some());
        assert!(contracting("ALTER TABLE t ADD COLUMN c TEXT NOT NULL;").is_some());
        assert!(
            contracting("-- contract: c unused since 1.2\nALTER TABLE t DROP COLUMN c;").is_none()
        );
        assert!(contracting("ALTER TABLE t ADD COLUMN c TEXT NOT NULL DEFAULT '';").is_none());
        let root = env!("CARGO_MANIFEST_DIR");
        for tree in ["sqlite", "postgres"] {
            for entry in std::fs::read_dir(format!("{root}/migrations/{tree}")).unwrap() {
                let path = entry.unwrap().path().join("up.sql");
                let sql = std::fs::read_to_string(&path).unwrap();
                if let Some(statement) = contracting(&sql) {
                    panic!(
                        "{} breaks the previous release: `{statement}`. Expand only, or add a \
                         `-- contract:` line naming the release that stopped using it \
                         (docs/scaling.md)",
                        path.display()
                    );
                }
            }
        }
    }

    #[test]
    fn migration_trees_have_the_same_names() {
        let names = |dir: &str| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let root = env!("CARGO_MANIFEST_DIR");
        let sqlite = names(&format!("{root}/migrations/sqlite"));
        let postgres = names(&format!("{root}/migrations/postgres"));
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, postgres, "every migration must exist in both trees");
        for name in &sqlite {
            for file in ["up.sql", "down.sql"] {
                for tree in ["sqlite", "postgres"] {
                    let path = format!("{root}/migrations/{tree}/{name}/{file}");
                    assert!(Path::new(&path).exists(), "{path} missing");
                }
            }
        }
    }
}
