//! Who is active on which version: the population a release change's impact is counted on.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use std::collections::HashMap;

use crate::db::schema::{hosts, usage_data};
use crate::db::{AnyConnection, DbError};
use crate::with_conn;

/// Per active instance (deduplicated by hostname over both sources, or by uuid for a
/// Service Ping without a hostname) the version of its most recent report since `since`.
/// Returns `(instance key, version, from_service_ping)`.
pub fn active_since(
    conn: &mut AnyConnection,
    since: NaiveDateTime,
) -> Result<Vec<(String, String, bool)>, DbError> {
    type Ping = (String, Option<String>, Option<String>, NaiveDateTime);
    let (pings, checks): (Vec<Ping>, Vec<(String, String, NaiveDateTime)>) =
        with_conn!(conn, |c| {
            let pings = usage_data::table
                .filter(usage_data::received_at.ge(since))
                .filter(usage_data::version.is_not_null())
                .select((
                    usage_data::uuid,
                    usage_data::hostname,
                    usage_data::version,
                    usage_data::recorded_at,
                ))
                .load::<Ping>(c)?;
            let checks = hosts::table
                .filter(hosts::last_seen.ge(since))
                .select((hosts::hostname, hosts::last_version, hosts::last_seen))
                .load(c)?;
            diesel::QueryResult::Ok((pings, checks))
        })?;
    let mut latest: HashMap<String, (NaiveDateTime, String, bool)> = HashMap::new();
    let mut offer = |key: String, at: NaiveDateTime, version: String, ping: bool| {
        let entry = latest.entry(key).or_insert((at, version.clone(), ping));
        if at > entry.0 {
            *entry = (at, version, ping || entry.2);
        } else {
            entry.2 |= ping;
        }
    };
    for (uuid, hostname, version, at) in pings {
        let key = match hostname.filter(|h| !h.is_empty()) {
            Some(h) => h.to_ascii_lowercase(),
            None => format!("uuid:{uuid}"),
        };
        offer(key, at, version.unwrap_or_default(), true);
    }
    for (hostname, version, at) in checks {
        if !hostname.is_empty() {
            offer(hostname, at, version, false);
        }
    }
    Ok(latest
        .into_iter()
        .map(|(key, (_, version, ping))| (key, version, ping))
        .collect())
}
