//! One file per table: `find_*` / `list_*` reads, `New*` insertables, writes in transactions.

pub mod console;
pub mod insights;
pub mod insights_queries;
pub mod releases;
pub mod tokens;
pub mod usage_data;
pub mod usage_ping;
pub mod version_checks;
