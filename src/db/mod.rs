//! The store: one code base over SQLite (default) and PostgreSQL.
//!
//! diesel is synchronous, so every call goes through [`Db::run`], which takes a pooled
//! connection on actix's blocking thread pool and never on an async worker. Model code is
//! written once against [`AnyConnection`] with the [`with_conn!`](crate::with_conn) macro,
//! which compiles the same block for each backend.

pub mod locks;
pub mod models;
pub mod schema;
pub mod write_tx;

pub use write_tx::WriteTransaction;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::path::Path;
use std::time::Duration;

use crate::config::{Backend, Settings};

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

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had (store down, pool exhausted past the timeout).
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A query failed.
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    /// Anything else in a model function (e.g. a migration failure).
    #[error("{0}")]
    Other(String),
}

impl DbError {
    /// True when retrying later may succeed (the store, not the request, is at fault).
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            DbError::Unavailable(_) => true,
            DbError::Query(Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)) => true,
            DbError::Query(Error::DatabaseError(DatabaseErrorKind::Unknown, info)) => {
                let msg = info.message();
                // SQLite says "database is locked" once busy_timeout has passed; PostgreSQL
                // reports lost connections as unknown errors.
                msg.contains("locked") || msg.contains("busy") || msg.contains("connection")
            }
            _ => false,
        }
    }
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
    /// The configured URL, for connections that must not come from the pool (job locks).
    url: std::sync::Arc<str>,
}

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
    pub fn connect(settings: &Settings) -> Result<Db, DbError> {
        let timeout = Duration::from_secs(settings.database_timeout_secs);
        let backend = settings.backend();
        let pools = match backend {
            Backend::Sqlite => {
                let path = sqlite_path(&settings.database_url);
                if let Some(parent) = Path::new(&path).parent() {
                    if !parent.as_os_str().is_empty() {
                        std::fs::create_dir_all(parent).map_err(|e| {
                            DbError::Unavailable(format!("cannot create {}: {e}", parent.display()))
                        })?;
                    }
                }
                set_wal_once(&path)?;
                let pool = Pool::builder()
                    .max_size(settings.database_pool_size)
                    .connection_timeout(timeout)
                    .connection_customizer(Box::new(SqlitePragmas))
                    .build(ConnectionManager::<SqliteConnection>::new(path))
                    .map_err(|e| DbError::Unavailable(e.to_string()))?;
                Pools::Sqlite(pool)
            }
            Backend::Postgres => {
                // build_unchecked: the app must start (and answer checks) while PostgreSQL
                // is still coming up; readiness reports the store's state instead.
                let pool = Pool::builder()
                    .max_size(settings.database_pool_size)
                    .min_idle(Some(1))
                    .connection_timeout(timeout)
                    .build_unchecked(ConnectionManager::<PgConnection>::new(
                        &settings.database_url,
                    ));
                Pools::Postgres(pool)
            }
        };
        Ok(Db {
            pools: std::sync::Arc::new(pools),
            backend,
            url: settings.database_url.as_str().into(),
        })
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
        match &*self.pools {
            Pools::Sqlite(pool) => pool.get().map(AnyConnection::Sqlite),
            Pools::Postgres(pool) => pool.get().map(AnyConnection::Postgres),
        }
        .map_err(|e| DbError::Unavailable(e.to_string()))
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
            f(&mut conn)
        })
        .await
        .map_err(|e| DbError::Other(format!("blocking task failed: {e}")))?
    }

    /// Brings the schema up to date; returns the names of the migrations applied.
    pub fn migrate(&self) -> Result<Vec<String>, DbError> {
        let mut conn = self.get()?;
        let applied = with_conn!(&mut conn, |c| {
            let migrations = match self.backend {
                Backend::Sqlite => SQLITE_MIGRATIONS,
                Backend::Postgres => POSTGRES_MIGRATIONS,
            };
            c.run_pending_migrations(migrations)
                .map(|versions| versions.iter().map(|v| v.to_string()).collect::<Vec<_>>())
        });
        applied.map_err(|e| DbError::Other(format!("migration failed: {e}")))
    }

    /// True when the store answers a trivial query.
    pub fn ping(&self) -> Result<(), DbError> {
        let mut conn = self.get()?;
        with_conn!(&mut conn, |c| c.batch_execute("SELECT 1"))?;
        Ok(())
    }
}

/// Switches the file to WAL once, from one connection, before the pool opens several at once:
/// eight connections each switching a fresh file raced and logged "database is locked".
/// WAL persists in the file, so every later connection is in WAL already.
fn set_wal_once(path: &str) -> Result<(), DbError> {
    use diesel::Connection;
    let mut conn = SqliteConnection::establish(path)
        .map_err(|e| DbError::Unavailable(format!("cannot open {path}: {e}")))?;
    conn.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;")
        .map_err(|e| DbError::Unavailable(format!("cannot switch {path} to WAL: {e}")))
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
    fn sqlite_urls_map_to_paths() {
        assert_eq!(
            sqlite_path("sqlite://data/version-app.db"),
            "data/version-app.db"
        );
        assert_eq!(sqlite_path("sqlite:///var/lib/va.db"), "/var/lib/va.db");
        assert_eq!(sqlite_path("sqlite:va.db"), "va.db");
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
