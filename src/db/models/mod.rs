//! One file per table: `find_*` / `list_*` reads, `New*` insertables, writes in transactions.

pub mod active_versions;
pub mod console;
pub mod erasure;
pub mod insights;
pub mod insights_catalogue;
pub(crate) mod insights_fleet;
pub(crate) mod insights_generations;
pub mod insights_queries;
pub mod job_schedule;
pub mod metric_values;
pub mod release_changes;
pub mod releases;
pub mod replica_state;
pub mod retention;
pub mod tokens;
pub mod usage_data;
pub mod usage_data_raw;
pub mod usage_ping;
pub mod version_checks;
