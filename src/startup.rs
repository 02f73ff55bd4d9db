//! Wires settings, store, snapshot and routes into a running server.

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use std::net::TcpListener;
use std::sync::Arc;
use tracing_actix_web::TracingLogger;

use crate::config::Settings;
use crate::db::models::releases;
use crate::db::Db;
use crate::domain::csv_import::parse_releases_csv;
use crate::geoip::GeoIp;
use crate::ingest::Ingest;
use crate::jobs::{Jobs, RunScope};
use crate::metrics::Metrics;
use crate::recorder::Recorder;
use crate::routes;
use crate::routes::body::{BodyGuard, ConnectionCount};
use crate::snapshot::Releases;
use crate::state::{AppState, CheckState};
use crate::telemetry::PrivateRootSpan;

/// The release history bundled with the binary (GitLab's real table, see `assets/`).
pub const BUNDLED_RELEASES_CSV: &[u8] = include_bytes!("../assets/releases.csv");

/// A bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

/// Migrates the store and, on first start of an empty store, loads the bundled releases.
/// Blocking: run off the async workers.
pub fn prepare_store(db: &Db, settings: &Settings) -> anyhow::Result<()> {
    let applied = db.migrate_with(settings.store.allow_newer_schema)?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "schema migrated");
    }
    if settings.releases.seed {
        let bundled = parse_releases_csv(BUNDLED_RELEASES_CSV)?;
        let mut conn = db.get()?;
        let seeded = releases::seed_if_empty(&mut conn, &bundled)?;
        if seeded > 0 {
            tracing::info!(
                releases.count = seeded,
                "bundled release table loaded into the empty store"
            );
        }
    }
    Ok(())
}

impl Application {
    /// Connects, migrates, loads the snapshot, binds the listener and builds the server.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let settings = Arc::new(settings);
        let db = Db::connect(&settings.store)?;
        let releases = Releases::empty();
        {
            let (db, settings, releases) = (db.clone(), settings.clone(), releases.clone());
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                prepare_store(&db, &settings)?;
                releases.reload_blocking(&mut db.get()?, true)?;
                Ok(())
            })
            .await??;
        }

        let listener = TcpListener::bind(settings.server.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.server.listen))?;
        let port = listener.local_addr()?.port();
        // A missing or corrupt database only disables geo lookup (with a warning).
        let geoip = GeoIp::open_optional(settings.geoip.path.as_deref()).map(Arc::new);
        let check = {
            // Renders the process-wide badges the first time: CPU work, off the workers.
            let settings = settings.clone();
            tokio::task::spawn_blocking(move || CheckState::new(&settings)).await?
        };
        let metrics = Arc::new(Metrics::new());
        let jobs = Jobs::new(db.clone(), &metrics);
        {
            // Other processes (and the CLI) edit releases too: notice it. The first run finds
            // the marker unchanged and reloads nothing.
            let releases = releases.clone();
            jobs.every(
                "release_refresh",
                settings.releases.refresh_interval,
                RunScope::EveryProcess,
                move |ctx| {
                    releases.reload_blocking(&mut ctx.db.get()?, false)?;
                    Ok(())
                },
            );
        }
        let body = Arc::new(BodyGuard::new(&settings, metrics.registry()));
        let recorder = Arc::new(Recorder::start(
            db.clone(),
            releases.clone(),
            metrics.clone(),
            &jobs,
            settings.check.buffer_max_keys.get(),
            settings.check.flush_interval,
        ));
        let ingest = Ingest::start(
            db.clone(),
            releases.clone(),
            &settings,
            metrics.registry(),
            &jobs,
        );
        ingest.register_jobs(&jobs, &settings);
        crate::lifecycle::retention::register_job(&jobs, &metrics, settings.clone());
        crate::insights::register_job(&jobs, &settings);
        crate::release_sync::register_job(&jobs, &metrics, &settings, releases.clone());
        let read_db = crate::read_replica::ReadDb::new(db.clone(), &settings, metrics.registry())?;
        read_db.register_job(&jobs);
        let console = crate::console::ConsoleState::new(&settings, &metrics);
        let insights_cache = Arc::new(crate::insights::period_cache::PeriodCache::new(
            settings.insights.cache_rows,
            metrics.registry(),
        ));
        let state = web::Data::new(AppState {
            db,
            read_db,
            releases,
            settings: settings.clone(),
            geoip,
            metrics,
            recorder,
            check,
            ingest,
            jobs,
            console,
            body: body.clone(),
            insights_cache,
        });

        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .wrap(actix_web::middleware::from_fn(
                    routes::security_headers::add,
                ))
                .configure(routes::configure_hot)
                .service(
                    web::scope("")
                        .wrap(TracingLogger::<PrivateRootSpan>::new())
                        .configure(routes::configure)
                        .default_service(web::to(routes::fallback::not_found)),
                )
        })
        // Issue 8: every wait capped and the connection count kept below the fd limit, so
        // idle, stalled or trickling clients are shed and the checks keep being answered.
        .on_connect(move |_, ext| {
            ext.insert(ConnectionCount::accept(&body));
        })
        .keep_alive(settings.http.keep_alive)
        .client_request_timeout(settings.http.client_request_timeout)
        .client_disconnect_timeout(settings.http.client_disconnect_timeout)
        .max_connections(crate::server_limits::max_connections_per_worker(
            &settings,
            crate::server_limits::worker_count(&settings),
            crate::server_limits::raise_nofile_limit(),
        ))
        .listen(listener)?
        .shutdown_timeout(settings.server.shutdown_timeout.as_secs());
        if let Some(workers) = settings.server.workers {
            server = server.workers(workers.get());
        }
        let server = server.run();
        tracing::info!(listen.port = port, store = ?settings.store.backend(), "version-app listening");
        Ok(Application {
            port,
            server,
            state,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server gracefully (what SIGTERM does).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGINT/SIGTERM or [`ServerHandle::stop`]), then finishes the
    /// shutdown work that must not be lost.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application { server, state, .. } = self;
        let served = server.await;
        // In-flight requests are done: stop the background jobs; the check flusher writes
        // what the requests recorded, even if serving failed.
        state
            .jobs
            .shutdown(state.settings.server.shutdown_timeout)
            .await;
        served?;
        drop(state);
        tracing::info!("version-app stopped");
        Ok(())
    }
}
