//! version-app: an open, self-hostable re-implementation of GitLab's Version Application.
//!
//! See `README.md` for the architecture; the module list below mirrors it.

pub mod auth;
pub mod cli;
pub mod cli_releases;
pub mod config;
pub mod console;
pub mod db;
pub mod domain;
pub mod error;
pub mod export;
pub mod geoip;
pub mod ingest;
pub mod insights;
pub mod jobs;
pub mod lifecycle;
pub mod metrics;
pub mod read_replica;
pub mod recorder;
pub mod release_ops;
pub mod release_sync;
pub mod render;
pub mod routes;
pub mod server_limits;
pub mod snapshot;
pub mod startup;
pub mod state;
pub mod telemetry;
