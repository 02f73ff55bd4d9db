//! One integration-test binary: every test talks to the real server over HTTP and to a
//! real database (SQLite by default, PostgreSQL with `TEST_DATABASE_URL`).

mod check;
mod check_operators;
mod check_recording;
mod cli;
mod console_auth;
mod console_releases;
mod console_support;
mod deployment;
mod fuzz;
mod hardening;
mod hardening_http;
mod hardening_input;
mod hardening_store;
mod health;
mod helpers;
mod ingest_kill;
mod insights;
mod insights_pages;
mod jobs;
mod privacy;
mod privacy_erase;
mod privacy_lifecycle;
mod read_replica;
mod release_history;
mod scale;
mod store_dump;
mod usage_analysts;
mod usage_data;
mod usage_export;
mod usage_metrics;
mod usage_ping;
mod usage_upload;
mod versions;
