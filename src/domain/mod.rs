//! Pure types and rules: no I/O, exhaustively unit-tested.

pub mod check;
pub mod country;
pub mod csv_import;
pub mod csv_safe;
pub mod devops;
pub mod input_rules;
pub mod insights;
pub mod payload;
pub mod pseudonym;
pub mod release;
pub mod release_edit;
pub mod release_sync;
pub mod submission_score;
pub mod verdict;
pub mod version;
pub mod version_status;
