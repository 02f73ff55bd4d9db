//! The metric-key dictionary as the rollup job uses it: ids, paths and time frames. A module
//! of its own because the job (`refresh`), the catalogue and the value reader all read it, and
//! none of them should import another for it.

use std::collections::HashMap;

use crate::db::models::insights_catalogue as catalogue;
use crate::db::{AnyConnection, DbError};
use crate::domain::insights::time_frame::{effective, TimeFrame};

/// Every metric key with its path and time frame.
pub(super) struct Keys {
    pub(super) ids: Vec<i64>,
    pub(super) by_id: HashMap<i64, (String, TimeFrame)>,
    /// Key path → id, to read a submission's values from its payload.
    pub(super) by_path: HashMap<String, i64>,
}

impl Keys {
    pub(super) fn load(conn: &mut AnyConnection) -> Result<Keys, DbError> {
        // An imported definition's time frame decides over the key-path guess.
        let rows = catalogue::list_keys_with_definitions(conn)?;
        let ids = rows.iter().map(|(id, _, _)| *id).collect();
        let by_path = rows
            .iter()
            .map(|(id, path, _)| (path.clone(), *id))
            .collect();
        let by_id = rows
            .into_iter()
            .map(|(id, path, defined)| {
                let (frame, _) = effective(&path, defined.as_deref());
                (id, (path, frame))
            })
            .collect();
        Ok(Keys {
            ids,
            by_id,
            by_path,
        })
    }
}
