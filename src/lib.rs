//! version-app: an open, self-hostable re-implementation of GitLab's Version Application.
//!
//! See `README.md` for the architecture; the module list below mirrors it.

pub mod auth;
pub mod cli;
pub(crate) mod cli_releases;
pub mod config;
pub mod console;
pub mod db;
pub mod domain;
pub(crate) mod error;
pub(crate) mod export;
pub(crate) mod geoip;
pub(crate) mod ingest;
pub mod insights;
pub mod jobs;
pub(crate) mod lifecycle;
pub mod metrics;
pub(crate) mod read_replica;
pub mod recorder;
pub(crate) mod release_ops;
pub(crate) mod release_sync;
pub(crate) mod render;
pub(crate) mod routes;
pub(crate) mod server_limits;
pub(crate) mod snapshot;
pub mod startup;
pub(crate) mod state;
pub mod telemetry;
