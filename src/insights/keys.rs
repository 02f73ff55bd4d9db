//! The metric-key dictionary as the rollup job uses it: ids and paths. A module
//! of its own because the job (`refresh`), the catalogue and the value reader all read it, and
//! none of them should import another for it.

use std::collections::HashMap;

use crate::db::models::insights_catalogue as catalogue;
use crate::db::{AnyConnection, DbError};

/// Every metric key with its path.
pub(super) struct Keys {
    pub(super) ids: Vec<i64>,
    /// Key path → id, to read a submission's values from its payload.
    pub(super) by_path: HashMap<String, i64>,
}

impl Keys {
    pub(super) fn load(conn: &mut AnyConnection) -> Result<Keys, DbError> {
        let rows = catalogue::list_keys_with_definitions(conn)?;
        let ids = rows.iter().map(|(id, _, _)| *id).collect();
        let by_path = rows.into_iter().map(|(id, path, _)| (path, id)).collect();
        Ok(Keys { ids, by_path })
    }
}
