//! Insights (issue 13): the rollup refresh job and the reports the API and pages share.
//!
//! [`refresh`] folds submissions newer than a stored watermark into the `insights_*` tables
//! (work per new submission: a few index look-ups and row writes, whatever the store's
//! size; metric period values are computed when asked, in `period_values`);
//! [`refresh::rebuild`] empties them and folds everything again, which must give
//! the same tables. [`report`] turns the tables into the numbers every endpoint and page shows.

mod catalogue;
pub mod definitions;
mod keys;
pub mod metric_lists;
pub(crate) mod period_cache;
mod period_values;
pub mod refresh;
pub mod report;
pub(crate) mod series;
pub mod values;
pub(crate) mod window;
pub(crate) mod window_cache;

pub use refresh::{rebuild, refresh, register_job, with_job_lock, JOB_NAME};
pub(crate) mod fleet;
pub(crate) mod licences;
pub(crate) mod lists;
