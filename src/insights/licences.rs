//! The licences page's numbers (docs/insights.md, "Licences"): seat utilisation by tier per
//! period, and the customer-success lists (over their seat count, expiring soon, trials) over
//! each installation's latest submission in a window. Rules: `domain::insights::licence`.

use chrono::{NaiveDate, NaiveDateTime};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

use super::report::Range;
use super::window::LatestReports;
use crate::db::models::insights_fleet::{self as f, LicenceFields};
use crate::db::{AnyConnection, DbError};
use crate::domain::insights::licence::{
    active_users, expires_within, is_over_seats, seats, utilisation as ratio,
};
use crate::domain::insights::tier::Tier;

/// `licences/utilisation` rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct UtilisationRow {
    /// Period start.
    pub(crate) period: NaiveDate,
    /// Tier of the counted submission.
    pub(crate) tier: String,
    /// Installations whose counted submission has both a seat count and active users.
    pub(crate) installations: u64,
    /// Their active users, summed.
    pub(crate) active_users: i64,
    /// Their seats, summed.
    pub(crate) seats: i64,
    /// `active_users ÷ seats`.
    pub(crate) utilisation: f64,
    /// Of them, with more active users than seats.
    pub(crate) over_seats: u64,
    /// False for the current period.
    pub(crate) complete: bool,
}

fn by_id(rows: Vec<LicenceFields>) -> HashMap<i64, LicenceFields> {
    rows.into_iter().map(|r| (r.usage_data_id, r)).collect()
}

/// Seat utilisation per period and tier.
pub(crate) fn utilisation(
    conn: &mut AnyConnection,
    range: &Range,
) -> Result<Vec<UtilisationRow>, DbError> {
    let rows = f::list_seat_rows(
        conn,
        range.kind.as_str(),
        range.from,
        range.to,
        range.include_internal,
    )?;
    let mut groups: BTreeMap<(NaiveDate, String), (u64, i64, i64, u64)> = BTreeMap::new();
    for r in rows {
        let (Some(active), Some(seat_count)) = (
            active_users(Some(r.active_user_count)),
            seats(Some(r.license_user_count)),
        ) else {
            continue;
        };
        let slot = groups.entry((r.period_start, r.tier)).or_default();
        slot.0 += 1;
        slot.1 += active;
        slot.2 += seat_count;
        slot.3 += u64::from(active > seat_count);
    }
    Ok(groups
        .into_iter()
        .map(
            |((period, tier), (installations, active, seat_count, over))| UtilisationRow {
                period,
                tier,
                installations,
                active_users: active,
                seats: seat_count,
                utilisation: ratio(active, seat_count),
                over_seats: over,
                complete: range.kind.is_complete(period, range.today),
            },
        )
        .collect())
}

/// Which licence list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LicenceList {
    /// More active users than seats.
    OverSeats,
    /// Expiring from today to today + N days.
    Expiring(i64),
    /// On a trial licence.
    Trials,
}

/// One installation in a licence list (by its latest submission in the window).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LicenceRow {
    /// Instance UUID.
    pub(crate) uuid: String,
    /// Hostname (`""` when the payload had none).
    pub(crate) hostname: String,
    /// Tier of the latest submission.
    pub(crate) tier: &'static str,
    /// `license_plan`.
    pub(crate) plan: Option<String>,
    /// Seats (`license_user_count` above 0).
    pub(crate) seats: Option<i64>,
    /// `active_user_count` (not special).
    pub(crate) active_users: Option<i64>,
    /// `historical_max_users`.
    pub(crate) historical_max_users: Option<i64>,
    /// Active users above seats.
    pub(crate) over_by: Option<i64>,
    /// `license_starts_at`.
    pub(crate) starts_at: Option<NaiveDate>,
    /// `license_expires_at`.
    pub(crate) expires_at: Option<NaiveDate>,
    /// Days from today to the expiry (negative when expired).
    pub(crate) days_to_expiry: Option<i64>,
    /// `license_trial`.
    pub(crate) trial: bool,
    /// `license_add_ons` as `name=value` pairs, `; `-separated.
    pub(crate) add_ons: String,
    /// Effective recorded_at of the latest submission.
    pub(crate) recorded_at: NaiveDateTime,
    /// That submission (`usage_data.id`).
    pub(crate) usage_data_id: i64,
}

/// The licence lists `which` over the latest submission of each installation in `reports`
/// (one window's), as of `today`. Sorted: over seats by most over, expiring by soonest,
/// trials by hostname. The licence fields are read once for all the lists asked.
pub(crate) fn lists(
    conn: &mut AnyConnection,
    reports: &LatestReports,
    today: NaiveDate,
    which: &[LicenceList],
) -> Result<Vec<Vec<LicenceRow>>, DbError> {
    let latest = &reports.pings;
    let ids: Vec<i64> = latest.values().map(|p| p.usage_data_id).collect();
    let fields = by_id(f::list_licence_fields(conn, &ids)?);
    let mut out: Vec<Vec<LicenceRow>> = which.iter().map(|_| Vec::new()).collect();
    for p in latest.values() {
        let (uuid, host, at, id) = (&p.uuid, &p.hostname, p.at, p.usage_data_id);
        let Some(l) = fields.get(&id) else { continue };
        let trial = l.license_trial == Some(true);
        for (rows, list) in out.iter_mut().zip(which) {
            let keep = match list {
                LicenceList::OverSeats => is_over_seats(l.active_user_count, l.license_user_count),
                LicenceList::Expiring(within) => {
                    expires_within(l.license_expires_at, today, *within)
                }
                LicenceList::Trials => trial,
            };
            if keep {
                rows.push(row_of(l, uuid, host, at, id, today));
            }
        }
    }
    let ids: Vec<i64> = out
        .iter()
        .flatten()
        .map(|r| r.usage_data_id)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut add_ons: HashMap<i64, Vec<String>> = HashMap::new();
    for (id, name, value) in f::list_add_ons(conn, &ids)? {
        add_ons
            .entry(id)
            .or_default()
            .push(format!("{name}={value}"));
    }
    let key = |r: &LicenceRow| (r.hostname.clone(), r.uuid.clone());
    for (rows, list) in out.iter_mut().zip(which) {
        for r in rows.iter_mut() {
            if let Some(names) = add_ons.get(&r.usage_data_id) {
                r.add_ons = names.join("; ");
            }
        }
        match list {
            LicenceList::OverSeats => {
                rows.sort_by(|a, b| b.over_by.cmp(&a.over_by).then(key(a).cmp(&key(b))));
            }
            LicenceList::Expiring(_) => {
                rows.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then(key(a).cmp(&key(b))));
            }
            LicenceList::Trials => rows.sort_by_key(key),
        }
    }
    Ok(out)
}

/// One installation's row of a licence list, from its latest submission's licence fields.
fn row_of(
    l: &LicenceFields,
    uuid: &str,
    host: &str,
    at: NaiveDateTime,
    id: i64,
    today: NaiveDate,
) -> LicenceRow {
    let (active, seat_count) = (
        active_users(l.active_user_count),
        seats(l.license_user_count),
    );
    LicenceRow {
        uuid: uuid.to_owned(),
        hostname: host.to_owned(),
        tier: Tier::of(l.edition.as_deref(), l.license_expires_at, at).as_str(),
        plan: l.license_plan.clone(),
        seats: seat_count,
        active_users: active,
        historical_max_users: l.historical_max_users,
        over_by: match (active, seat_count) {
            (Some(a), Some(s)) if a > s => Some(a - s),
            _ => None,
        },
        starts_at: l.license_starts_at,
        expires_at: l.license_expires_at,
        days_to_expiry: l.license_expires_at.map(|e| (e - today).num_days()),
        trial: l.license_trial == Some(true),
        add_ons: String::new(),
        recorded_at: at,
        usage_data_id: id,
    }
}
