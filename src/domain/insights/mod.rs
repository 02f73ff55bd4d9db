//! The analysts' rules behind the insights rollups, API and pages (issue 13), each in a file
//! named by what it decides. Pure functions only: the store and HTTP layers call them, so the
//! incremental rollup job, `insights rebuild` and the tests all apply the very same rules.

pub(crate) mod activity;
pub mod aggregate;
pub mod definitions;
pub mod dimension;
pub(crate) mod generations;
pub mod installation;
pub(crate) mod licence;
pub mod period_value;
pub mod periods;
pub mod special;
pub mod tier;
pub mod time_frame;
pub mod versions_behind;
